"""Every error through the command line: one line on stderr, never a traceback.

What an exception becomes (the exit code and the line), as a table:

| raised | exit | line |
|---|---|---|
| ConfigError (a config key, an option) | 2 | ``error: key: message`` (several: joined by ``;``) |
| DataError (a file, row, column) | 2 | ``error: message`` |
| OSError (a path: missing, read-only, not a folder, disk full) | 2 | ``error: path: reason`` |
| KeyboardInterrupt (Ctrl-C) | 130 | ``interrupted`` |
| anything else (a bug, or a library failing) | 1 | ``error: twotower CMD failed: Type: message (traceback: LOG)`` |

A failed pipeline run is reported by the run itself (exit 1, one line with its log's
path: :mod:`pipelines.cli.commands.local`). The traceback of an unexpected error goes to a
log file under ``$XDG_STATE_HOME/twotower`` (``~/.local/state/twotower``), or to the
terminal with ``TWOTOWER_TRACEBACK=1``.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Callable, Tuple

from pipelines.config.schema import ConfigError
from pipelines.data.csvfile import DataError


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe(exc: BaseException) -> Tuple[int, str]:
    """``(exit code, line)`` for an exception the table above knows; (1, '') otherwise."""
    if isinstance(exc, ConfigError):
        return 2, "error: " + "; ".join(one_line(f"{k}: {m}" if k else m) for k, m in exc.problems)
    if isinstance(exc, DataError):
        return 2, f"error: {one_line(exc)}"
    if isinstance(exc, OSError):
        where = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p)
        what = exc.strerror or str(exc)
        return 2, f"error: {where + ': ' if where else ''}{one_line(what)}"
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted"
    return 1, ""


def crash_log(command: str, text: str) -> str:
    """Writes ``text`` (a traceback) to a new log file; returns its path ('' if it can't)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                             "state")
    path = os.path.join(state, "twotower", f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-"
                        f"{os.getpid()}.log")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        return ""
    return path


def handled(command: str, run: Callable[[], int]) -> int:
    """Runs a command; an exception becomes its one line and exit code (see the table)."""
    try:
        return run()
    except BaseException as exc:  # noqa: B902 (every error is one line: that is the point)
        if isinstance(exc, SystemExit):
            raise
        code, line = describe(exc)
        if os.environ.get("TWOTOWER_TRACEBACK"):
            traceback.print_exc()
        if not line:
            log = crash_log(command, traceback.format_exc())
            where = f"traceback: {log}" if log else "set TWOTOWER_TRACEBACK=1 for the traceback"
            line = (f"error: twotower {command} failed: {type(exc).__name__}: "
                    f"{one_line(exc)[:500]} ({where})")
        print(line, file=sys.stderr)
        return code
