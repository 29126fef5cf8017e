"""What a run shows on the terminal, and the full log it writes to disk.

While a pipeline runs, everything the libraries print (TFX, Beam, TensorFlow,
pip building the module wheels, warnings) goes to ``<root>/logs/run-<time>.log``
(``logs/run.log`` points at the newest), at the file-descriptor level, so the
output of child processes is caught too. The terminal gets a few lines: which
component is running (n of N, elapsed time), one line per Trainer epoch, the
result, or an error in one line with the log's path.

Modes: ``normal``; ``verbose`` (the log is also streamed to the terminal,
tracebacks shown); ``quiet`` (only the result and errors).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from typing import List, Optional

from pipelines.inspect import verdict
from pipelines.runners.trials import SLICE_MIN_QUERIES, search_lines
from pipelines.terminal.progress import STEPS_LOGGER, StepBar, StepHandler, Ticker

PROGRESS_LOGGER = "twotower.progress"  # the Trainer's per-epoch lines (trainer/monitoring.py)
MODES = ("normal", "verbose", "quiet")


class _Progress(logging.Handler):
    """Turns TFX's "Component X is running/finished." and the Trainer's epoch lines into
    terminal lines."""

    def __init__(self, console: "Console", components: List[str]):
        super().__init__(logging.INFO)
        self.console, self.components, self.started = console, components, {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.name == PROGRESS_LOGGER:
                self.console.say("    " + record.getMessage())
                return
            if record.msg not in ("Component %s is running.", "Component %s is finished."):
                return
            name = str(record.args[0]) if record.args else ""
            if record.msg.endswith("running."):  # numbered in the order they run
                self.started[name] = (len(self.started) + 1, time.time())
                head = f"[{len(self.started)}/{len(self.components)}] {name}"
                self.console.say(f"{head} ...", end="")
                self.console.tick()
                return
            n, began = self.started.get(name, ("?", time.time()))
            done = f"done in {time.time() - began:.0f} s"
            if self.console.line_open:  # nothing printed since "... X ..."
                self.console.say(" " + done, continued=True)
            else:
                self.console.say(f"[{n}/{len(self.components)}] {name} {done}")
        except Exception:  # a progress line must never break the run
            pass


class Console:
    """A run's terminal and log. Use ``with console.capture(components):`` around the run.

    Args:
      log_dir: where run logs go (``<root>/logs``).
      mode: ``normal``, ``verbose`` or ``quiet``.
    """

    def __init__(self, log_dir: str, mode: str = "normal", stream=None, name: str = "run"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.log_dir, self.name = mode, log_dir, name
        self.log_path = ""
        self.stream = stream or sys.stdout
        self.own_stream = stream is None  # else (a notebook's output) kept during capture
        self.line_open = False
        self.open_text = ""  # the open line's text (written again after a ticker clears it)
        self.live = None  # the ticker or step bar now drawn (pipelines/terminal/progress.py)

    def live_allowed(self) -> bool:
        """Tickers and bars only on a terminal, in the normal mode (never in a log or pipe)."""
        isatty = getattr(self.stream, "isatty", None)
        return self.mode == "normal" and bool(isatty and isatty())

    def tick(self) -> None:
        """An elapsed-time ticker on the open line until the next line is written."""
        self._settle()
        if self.line_open and self.live_allowed():
            self.live = Ticker(self.stream, self.open_text)

    def show_step(self, record) -> None:
        """A Trainer step (``record.step``: epoch, epochs, step, steps) on the step bar."""
        if not self.live_allowed():
            return
        if isinstance(self.live, StepBar) and self.live.step(record):
            return
        self._settle()
        if self.line_open:  # "[5/9] Trainer ..." stays above the bar
            self.stream.write("\n")
            self.line_open = False
        epoch, epochs, _, steps = record.step
        self.live = StepBar(self.stream, epoch, epochs, steps)
        self.live.step(record)

    def _settle(self) -> None:
        """Clears the ticker or bar; the open line a ticker drew over is written again."""
        live, self.live = self.live, None
        if live is None:
            return
        live.close()
        if isinstance(live, Ticker) and self.line_open:
            self.stream.write(self.open_text)
        self.stream.flush()

    def say(self, text: str, end: str = "\n", continued: bool = False) -> None:
        """A line for the terminal (not in quiet mode); also written to the log."""
        if self._log is not None:
            self._log.write((text if continued else "\n" + text).lstrip("\n") + "\n")
        if self.mode == "quiet":
            return
        self._settle()
        if self.line_open and not continued:
            self.stream.write("\n")
        self.stream.write(text + end)
        self.stream.flush()
        self.open_text = (self.open_text if continued else "") + text if end == "" else ""
        self.line_open = end == ""

    def result(self, text: str) -> None:
        """A result line: shown in every mode."""
        self._settle()
        if self.line_open:
            self.stream.write("\n")
            self.line_open = False
        self.stream.write(text + "\n")
        self.stream.flush()
        if self._log is not None:
            self._log.write(text + "\n")
        elif self.log_path:  # after the run: appended to its log
            with open(self.log_path, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")

    _log = None

    def restart_count(self) -> None:
        """Numbers the next components from 1 again (one pipeline after another)."""
        if self._capture is not None:
            self._capture.handler.started = {}

    _capture = None

    def failed(self, command: str, exc: BaseException) -> int:
        """An unexpected failure of ``command``: the traceback goes to the log (and to the
        terminal with ``--verbose``), one line naming the root cause and the log to stderr.
        Returns the exit status, 1."""
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(traceback.format_exc())
        if self.mode == "verbose":
            traceback.print_exc()
        print(f"{command} failed: {root_cause(exc)} (full log: {self.log_path})",
              file=sys.stderr)
        return 1

    def capture(self, components: List[str]):
        """Context manager: the process's stdout/stderr into the log while it is open."""
        return _Capture(self, components)


class _Capture:
    def __init__(self, console: Console, components: List[str]):
        self.console, self.components = console, components

    def __enter__(self) -> Console:
        c = self.console
        os.makedirs(c.log_dir, exist_ok=True)
        c.log_path = os.path.join(c.log_dir, time.strftime(f"{c.name}-%Y%m%d-%H%M%S.log"))
        self.file = open(c.log_path, "a", encoding="utf-8", buffering=1)
        latest = os.path.join(c.log_dir, f"{c.name}.log")
        if os.path.islink(latest):  # the pointer to the newest log; a file of that name is
            os.remove(latest)       # not twotower's (inspect --out DIR): it is left as it is
        if not os.path.lexists(latest):
            os.symlink(os.path.basename(c.log_path), latest)
        sys.stdout.flush()
        sys.stderr.flush()
        # the terminal, kept aside; fds 1 and 2 now feed a pipe that a thread copies to the log
        self.saved = [os.dup(1), os.dup(2)]
        if c.own_stream:
            c.stream = os.fdopen(os.dup(self.saved[0]), "w", buffering=1, encoding="utf-8",
                                 errors="replace")
        read, write = os.pipe()
        self.thread = threading.Thread(target=self._copy, args=(read,), daemon=True)
        self.thread.start()
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        # Python-level writers too (sys.stdout may be an object that doesn't write to fd 1)
        self.streams = (sys.stdout, sys.stderr)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        c._log = self.file
        # TFX reports "Component X is running." at INFO through absl's logger, whose level
        # the libraries lower and raise as they load (absl.logging.set_verbosity): hold the
        # root and absl loggers at INFO while the run lasts (the records go to the log).
        self.pinned = []
        for logger in (logging.getLogger(), logging.getLogger("absl")):
            self.pinned.append((logger, logger.level))
            logger.setLevel(logging.INFO)
            logger.setLevel = lambda level: None
        self.handler = _Progress(c, self.components)
        c._capture = self
        logging.getLogger().addHandler(self.handler)

        # the Trainer's steps reach the live bar only: not the log, not the root logger
        self.steps = logging.getLogger(STEPS_LOGGER)
        self.steps_handler = StepHandler(c)
        self.steps.addHandler(self.steps_handler)
        self.steps.propagate = False
        # every INFO record in the log, whatever the libraries' own handlers do with it
        self.to_log = logging.StreamHandler(self.file)
        self.to_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s"))
        logging.getLogger().addHandler(self.to_log)
        return c

    def _copy(self, read: int) -> None:
        with os.fdopen(read, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    return
                text = chunk.decode("utf-8", errors="replace")
                self.file.write(text)
                if self.console.mode == "verbose":
                    self.console.stream.write(text)
                    self.console.stream.flush()

    def __exit__(self, *exc) -> Optional[bool]:
        self.console._settle()
        self.steps.removeHandler(self.steps_handler)
        self.steps.propagate = True
        logging.getLogger().removeHandler(self.handler)
        logging.getLogger().removeHandler(self.to_log)
        for logger, level in self.pinned:
            del logger.setLevel  # the class's method again
            logger.setLevel(level)
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = self.streams
        os.dup2(self.saved[0], 1)  # closes the pipe's write ends: the copier reaches its end
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)
        self.thread.join(timeout=30)
        self.console._log = None
        self.file.close()
        return None


def root_cause(exc: BaseException) -> str:
    """'Type: message' of the innermost exception (Beam and TFX wrap the real one)."""
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    inner = seen[-1]
    outer = f" (reported as {type(seen[0]).__name__}: {seen[0]})" if len(seen) > 1 else ""
    return f"{type(inner).__name__}: {inner}{outer}".splitlines()[0]


def served_model_gone(res: dict) -> str:
    """Why the model this run pushed (or reused from the cache) is not served, or ''.

    Its folder was moved or deleted: an older version is never reported (or served) in
    its place (:func:`pipelines.runners.local.results`).
    """
    push = res.get("run_push")
    if not push or res.get("serving_model") == push or not (
            res.get("pushed") or res.get("reused_push")):
        return ""
    how = "reused from ML Metadata's cache" if res.get("reused_push") else "pushed"
    return (f"this run's model was {how} as {push}, which is gone (moved or deleted): "
            "restore that folder, or run again with --set pipeline.enable_cache=false to "
            "train and push it anew")


def result_lines(res: dict) -> List[str]:
    """A finished run on one screen: the held-out evaluation beside every baseline, the
    strongest named with the ratio, buy-again, how training ended, coverage, the gate, the
    serving model and where the details are."""
    metrics = res.get("metrics") or {}
    lines = ["", f"== result: training {metrics.get('status')}"]
    if metrics.get("stopped"):
        lines.append(f"stopped: {metrics['stopped'].get('message')}")
    evaluation = metrics.get("evaluation")
    if evaluation:
        left_out = evaluation.get("cold_queries", 0) + evaluation.get(
            "queries_without_new_items", 0)
        when = verdict.period(evaluation)
        lines.append(f"held-out {evaluation.get('split', 'eval')} split"
                     + (f" ({when})" if when else "") + f": {evaluation['queries']} "
                     f"queries ranked against the whole catalog, without the items each already "
                     f"had ({left_out} left out: no earlier interaction, or nothing new)")
        if evaluation["queries"] < SLICE_MIN_QUERIES:
            lines.append(f"warning: the {evaluation.get('split', 'eval')} split scores only "
                         f"{evaluation['queries']} queries (fewer than {SLICE_MIN_QUERIES}): "
                         "these figures and the gate's verdict are mostly noise; for a log "
                         "whose users were active at different times (ratings) set "
                         "data.split.method: user_time, else raise data.split.eval_fraction")
        # recall at every cut-off, NDCG at the first (the rest: training_metrics.json)
        recalls = sorted((n for n in evaluation["model"] if n.startswith("recall_at_")),
                         key=lambda n: int(n.rsplit("_", 1)[1]))
        ndcg = "ndcg_at_" + recalls[0].rsplit("_", 1)[1] if recalls else ""
        lines += verdict.table(evaluation, recalls + ([ndcg] if ndcg in evaluation["model"]
                                                      else []))
        about = evaluation.get("baselines_about") or {}
        lines.append("model vs baselines: " + verdict.headline(evaluation) + (
            f" (EASE over the {about['ease_items']:,} most-bought of {about['catalog']:,} "
            f"candidates, {about['ease_memory_mb']:g} MiB)" if "ease_items" in about else ""))
        lines += verdict.buy_again(evaluation)
        if verdict.coverage(evaluation):
            lines.append(verdict.coverage(evaluation))
    if metrics.get("epochs") or (res.get("refit") or {}).get("refit"):
        lines.append(verdict.early_stop(metrics, res.get("refit")))
    lines += search_lines(res.get("tuner_results") or "", metrics.get("tuned"))
    gate = res.get("gate") or {}
    if gate:
        lines.append(f"push gate: {'blessed' if gate['blessed'] else 'NOT blessed'}: "
                     f"{gate['reason']}")
    refit = (res.get("refit") or {}).get("refit")  # this run's RefitTrainer record, if any
    served = res.get("run_push") or res.get("serving_model")
    gone = served_model_gone(res)
    if gone:
        lines.append(f"serving model: NONE: {gone}")
    elif res.get("pushed"):
        lines.append(f"serving model: {served}" + (" (the refit on train + eval)"
                                                    if refit else ""))
    elif res.get("reused_push"):
        lines.append(f"serving model: {served} (unchanged input and config: "
                     "the run was served from ML Metadata's cache, pipeline.enable_cache)")
    else:
        lines.append(f"serving model: none pushed by this run (newest earlier one: "
                     f"{res.get('serving_model') or 'none'})")
    line = f"training metrics: {res.get('metrics_file')}"
    if res.get("metrics_file"):  # its TensorBoard logs are beside it, in logs/
        logs = os.path.join(os.path.dirname(res["metrics_file"]), "logs")
        line += f" (TensorBoard: twotower tensorboard {res.get('root') or logs})"
    lines.append(line)
    return lines
