"""Every run under a pipeline root, one line each: `twotower runs ROOT`.

`twotower run`/`demo` append one JSON line to ``<root>/logs/runs.jsonl`` when
a run ends, however it ends: its start time, config fingerprint, status
(``pushed``, ``not pushed``, ``stopped``, ``failed``), held-out recall beside
popularity's, the serving version it pushed, and its log file.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, List, Optional

RUNS_FILE = "runs.jsonl"


def entry(started: float, fingerprint: str, res: Optional[dict], status: str, log_path: str,
          error: str = "") -> Dict[str, object]:
    """A run's line, from :func:`pipelines.runners.local.results` (None if it never got there)."""
    res = res or {}
    evaluation = (res.get("metrics") or {}).get("evaluation") or {}
    recall = sorted((int(k.rsplit("_", 1)[1]), k) for k in evaluation.get("model", {})
                    if k.startswith("recall_at_"))
    out = {"started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
           "seconds": round(time.time() - started, 1), "config_fingerprint": fingerprint,
           "status": status, "log": log_path,
           "serving_version": os.path.basename(res["serving_model"]) if res.get("pushed") else None}
    if recall:
        k, key = recall[0]
        out.update(metric=f"recall@{k}", model=evaluation["model"][key],
                   popularity=evaluation.get("popularity", {}).get(key),
                   split=evaluation.get("split", "eval"))
    if error:
        out["error"] = error
    return out


def record(log_dir: str, line: Dict[str, object]) -> None:
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, RUNS_FILE), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")


def read(log_dir: str) -> List[Dict[str, object]]:
    """The recorded runs, newest first (a damaged line is skipped, not fatal)."""
    path = os.path.join(log_dir, RUNS_FILE)
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out[::-1]


def table(runs: List[Dict[str, object]]) -> str:
    """The runs as an aligned text table."""
    if not runs:
        return "no runs recorded"
    rows = [("started", "status", "config", "held-out", "model", "popularity", "serving")]
    for r in runs:
        rows.append((str(r["started"]), str(r["status"]), str(r["config_fingerprint"])[:12],
                     f"{r.get('metric', '-')} ({r.get('split', '-')})",
                     "-" if r.get("model") is None else f"{r['model']:.4f}",
                     "-" if r.get("popularity") is None else f"{r['popularity']:.4f}",
                     str(r.get("serving_version") or "-")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)
