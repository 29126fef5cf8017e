"""A run's temporary files in its own pipeline folder, removed when it ends.

TFX packages each generated module as a wheel in a fresh ``tempfile.mkdtemp()`` folder
(``tfx/components/util/udf_utils.py``) and never removes it, nor the folder it installs
the wheel into for the Trainer: every run left a dozen ``tmpXXXXXXXX/`` folders in the
system temp folder, holding the modules (with their absolute data paths). While a run
lasts, temporary files go to ``<pipeline folder>/.tmp-<pid>/`` instead (Python's
``tempfile`` and ``TMPDIR`` for child processes: pip, Beam workers); the folder is removed
when the run ends, and a folder whose process is gone (a run killed with SIGKILL) is
removed by the next run.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile

from pipelines.data.written import left_by_gone_processes

PREFIX = ".tmp-"
_ENV = ("TMPDIR", "TEMP", "TMP")


def remove_stale(folder: str) -> None:
    """Removes ``.tmp-<pid>`` folders of processes that no longer run."""
    for name in left_by_gone_processes(folder, re.compile(rf"{re.escape(PREFIX)}(\d+)")):
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


@contextlib.contextmanager
def private_tmp(folder: str):
    """Points temporary files at ``<folder>/.tmp-<pid>`` while the block runs; removes it."""
    os.makedirs(folder, exist_ok=True)
    remove_stale(folder)
    path = os.path.join(folder, f"{PREFIX}{os.getpid()}")
    os.makedirs(path, exist_ok=True)
    saved_env = {k: os.environ.get(k) for k in _ENV}
    saved_dir = tempfile.tempdir
    for key in _ENV:
        os.environ[key] = path
    tempfile.tempdir = path
    try:
        yield path
    finally:
        tempfile.tempdir = saved_dir
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(path, ignore_errors=True)
