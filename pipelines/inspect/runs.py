"""Every run under a pipeline root, one line each: `twotower runs ROOT`.

`twotower run`/`demo` append one JSON line to ``<root>/logs/runs.jsonl`` when
a run starts (status ``running``, with its process id) and one when it ends,
however it ends: its start time, config fingerprint, status (``pushed``, ``cached``,
``not pushed``, ``not served``, ``stopped``, ``failed``, ``interrupted``), held-out recall
beside popularity's, the serving version its model is served from (pushed by it, or reused
from the cache; all read from this run's own executions), and its log file. Both lines carry
the run's id; the last line of a run is its state. A run whose process is gone
without an end line (killed with SIGKILL, out of memory, the machine lost) is
shown as ``killed``.

A damaged file is read as far as it can be: a line that is not UTF-8 or not JSON is
skipped with a note naming it; a last line cut off mid-write (a full disk) gives the
fields it holds whole, and each line starts with the run's id, status and serving version,
so a cut line still says how its run ended (one cut before its status: ``unknown``, never
``killed``).
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, List, Optional

from pipelines.inspect.verdict import LABELS, summary_cells

RUNS_FILE = "runs.jsonl"


def entry(began: float, fingerprint: str, res: Optional[dict], status: str, log_path: str,
          error: str = "", run_id: str = "") -> Dict[str, object]:
    """A run's line, from :func:`pipelines.runners.local.results` (None if it never got there)."""
    res = res or {}
    evaluation = (res.get("metrics") or {}).get("evaluation") or {}
    recall = [k for k in evaluation.get("model", {}) if k.startswith("recall_at_")]
    out = {"started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(began)),
           "seconds": round(time.time() - began, 1), "config_fingerprint": fingerprint,
           "status": status, "log": log_path,
           "serving_version": _served(res)}
    if recall:
        out.update(summary_cells(evaluation), split=evaluation.get("split", "eval"))
        again = verdict_buy_again(evaluation)
        if again:
            out["buy_again"] = again
    if error:
        out["error"] = error
    if run_id:
        out["run"] = run_id
    return out


def verdict_buy_again(evaluation: dict) -> Optional[Dict[str, float]]:
    """Buy-again's first recall for the model and own counts, if the run measured it."""
    again = evaluation.get("buy_again") or {}
    keys = sorted((int(k.rsplit("_", 1)[1]), k) for k in (again.get("model") or {})
                  if k.startswith("recall_at_"))
    if not keys:
        return None
    key = keys[0][1]
    return {"metric": key.replace("recall_at_", "recall@"), "model": again["model"][key],
            "own_counts": (again.get("frequency") or {}).get(key)}


def _served(res: dict) -> Optional[str]:
    """The serving version THIS run's model is served from: the one its Pusher pushed, or
    the earlier push its cached Pusher reused (None: no push, or that folder is gone)."""
    push = res.get("run_push") or (res.get("serving_model") if res.get("pushed") else "")
    if not push or not (res.get("pushed") or res.get("reused_push")):
        return None
    return os.path.basename(push) if res.get("serving_model") == push else None


FIRST_KEYS = ("run", "status", "serving_version")  # written first: a cut-off line keeps them


def record(log_dir: str, line: Dict[str, object]) -> None:
    """Appends ``line`` to ``runs.jsonl`` as one write (after a line break, if a cut-off
    line ends the file: the new line stays whole and readable)."""
    os.makedirs(log_dir, exist_ok=True)
    ordered = {k: line[k] for k in FIRST_KEYS if k in line}
    ordered.update((k, line[k]) for k in sorted(line) if k not in ordered)
    data = (json.dumps(ordered) + "\n").encode("utf-8")
    fd = os.open(os.path.join(log_dir, RUNS_FILE), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def _process_start(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def started(log_dir: str, began: float, fingerprint: str, log_path: str) -> str:
    """Records a run as ``running`` (with this process's id); returns the run's id."""
    run_id = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(began))}-{os.getpid()}"
    record(log_dir, {"run": run_id, "status": "running", "pid": os.getpid(),
                     "process_start": _process_start(os.getpid()),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(began)),
                     "config_fingerprint": fingerprint, "log": log_path})
    return run_id


def _alive(line: Dict[str, object]) -> bool:
    """Whether the process that recorded ``line`` still runs (the same process: its start
    time is compared where the system gives it, so a reused pid is not taken for it)."""
    pid = line.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    recorded, now = line.get("process_start"), _process_start(pid)
    return recorded is None or now is None or recorded == now


def _salvage(text: str) -> Dict[str, object]:
    """The ``"key": value`` pairs that a cut-off JSON object line holds whole, in order."""
    decoder, out, at = json.JSONDecoder(), {}, text.find("{") + 1
    while 0 < at < len(text):
        while at < len(text) and text[at] in " ,\t":
            at += 1
        try:
            key, at = decoder.raw_decode(text, at)
            while at < len(text) and text[at] in " :":
                at += 1
            value, at = decoder.raw_decode(text, at)
        except ValueError:
            break
        if isinstance(key, str):
            out[key] = value
    return out


def _lines(path: str, notes: List[str]):
    """``(number, mapping, cut)`` for each readable line; a line that is not UTF-8 or not a
    JSON object is skipped with a note; a line cut off by a write that did not finish gives
    the pairs it holds whole (``cut``)."""
    with open(path, "rb") as handle:
        data = handle.read()
    raw_lines = data.split(b"\n")
    for number, raw in enumerate(raw_lines, 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            notes.append(f"{path} line {number}: not UTF-8 text ({exc.reason}); skipped")
            continue
        cut = False
        try:
            found = json.loads(text)
        except ValueError:  # cut off mid-write (the last line, or one another run wrote after)
            cut, found = True, _salvage(text)
            if "run" not in found:
                notes.append(f"{path} line {number}: not a JSON record; skipped")
                continue
            notes.append(f"{path} line {number}: cut off (a write that did not finish); "
                         "read as far as it goes")
        if isinstance(found, dict):
            yield number, found, cut
        else:
            notes.append(f"{path} line {number}: not a JSON record; skipped")


def read(log_dir: str, notes: Optional[List[str]] = None) -> List[Dict[str, object]]:
    """The recorded runs, newest first (a damaged line is skipped, not fatal: ``notes``
    gets a line naming it).

    A run's lines are merged (its last line wins); a ``running`` run whose process is
    gone is ``killed``, or ``unknown`` when its last line is cut off before its status (it
    ended: its log says how).
    """
    notes = [] if notes is None else notes
    path = os.path.join(log_dir, RUNS_FILE)
    if not os.path.exists(path):
        return []
    out: List[Dict[str, object]] = []
    by_id: Dict[str, Dict[str, object]] = {}
    cut_off = set()
    for _, found, cut in _lines(path, notes):
        run_id = found.get("run")
        if cut:
            cut_off.add(run_id)
        if run_id in by_id:
            by_id[run_id].update(found)
            continue
        if run_id:
            by_id[run_id] = found
        out.append(found)
    for found in out:
        if found.get("status") == "running" and not _alive(found):
            if found.get("run") in cut_off:
                found["status"] = "unknown"
                found["error"] = ("the run ended, but its last line in runs.jsonl is cut off "
                                  "before its status (a full disk?); its log says how it ended")
                continue
            found["status"] = "killed"
            found["error"] = ("the run ended without recording how (killed: SIGKILL, out of "
                              "memory, or the machine stopped); its log may say how far it got")
    return out[::-1]


def table(runs: List[Dict[str, object]]) -> str:
    """The runs as an aligned text table."""
    if not runs:
        return "no runs recorded"

    def number(value):
        return "-" if value is None else f"{value:.4f}"

    rows = [("started", "status", "config", "held-out", "model", "popularity", "best baseline",
             "model / best", "buy again (model / own counts)", "serving")]
    for r in runs:
        best = r.get("best_baseline")
        again = r.get("buy_again") or {}
        rows.append((str(r.get("started", "-")), str(r.get("status", "-")),
                     str(r.get("config_fingerprint", "-"))[:12],
                     f"{r.get('metric', '-')} ({r.get('split', '-')})",
                     number(r.get("model")), number(r.get("popularity")),
                     f"{LABELS.get(best, best)} {number(r.get('best_baseline_value'))}"
                     if best else "-",
                     "-" if r.get("ratio") is None else f"{r['ratio']:.2f}x",
                     f"{number(again.get('model'))} / {number(again.get('own_counts'))}"
                     if again else "-",
                     str(r.get("serving_version") or "-")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)
