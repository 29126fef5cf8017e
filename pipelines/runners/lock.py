"""One run at a time of a pipeline: an exclusive lock on ``<pipeline folder>/.twotower.lock``.

Two runs writing one pipeline's folder would mix their prepared data, modules
and ML Metadata; the second is refused at once with who holds the folder.
Pipelines with other names under the same ``pipeline.root`` have folders of
their own (:func:`pipelines.runners.local.pipeline_dir`) and run beside it. The lock is
the operating system's (``flock``): a killed run releases it, so there is no
stale lock to clean up; the file keeps the holder's pid, pipeline and start.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time

from pipelines.config.schema import ConfigError

LOCK_FILE = ".twotower.lock"
_HELD = {}  # lock path -> depth: this process already holds it (a nested hold is free)


@contextlib.contextmanager
def holding(root: str, pipeline: str):
    """Holds ``root`` for this process while the block runs.

    Raises:
      ConfigError: another process holds it (the message names it).
    """
    os.makedirs(root, exist_ok=True)
    path = os.path.realpath(os.path.join(root, LOCK_FILE))
    if path in _HELD:  # the CLI holds it before its log opens; run_local holds it again
        _HELD[path] += 1
        try:
            yield path
        finally:
            _HELD[path] -= 1
        return
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except ValueError:
                holder = {}
            raise ConfigError([("pipeline.name", f"{root} is in use by another run (pipeline "
                                f"{holder.get('pipeline', '?')!r}, pid {holder.get('pid', '?')}, "
                                f"since {holder.get('started', '?')}): wait for it to finish, or "
                                "give this run another pipeline.name or pipeline.root")]) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "pipeline": pipeline,
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        _HELD[path] = 1
        try:
            yield path
        finally:
            del _HELD[path]
    finally:
        handle.close()  # releases the lock
