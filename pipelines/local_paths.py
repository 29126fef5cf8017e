"""The config's local paths: no shell syntax, and a pipeline root that can be written.

A config is data, not a shell script: twotower does not expand ``~`` or environment
variables in it. ``pipeline.root: '~/runs'`` used to create a folder literally named
``~`` in the working directory (where a later ``rm -rf ~`` is a disaster), and
``'$HOME/runs'`` one named ``$HOME``. So a local path that starts with ``~`` or holds a
``$NAME``, ``${`` or ``$(`` is refused, naming the key: write the full path, or let the shell expand it
(``--set pipeline.root=$HOME/runs``, unquoted). Expanding instead would make one config
mean different folders for different users, machines and Vertex AI. The same rule applies
to every local path key below.
"""
from __future__ import annotations

import os
import re
from typing import List, Tuple

from pipelines.config.schema import DEFAULT_ROOT, Config, ConfigError
from pipelines.runners.local import pipeline_dir

# (dotted key, how to read it from a config): the keys that name files or folders here
LOCAL_PATH_KEYS = (
    ("pipeline.root", lambda cfg: cfg.pipeline.root),
    ("data.path", lambda cfg: cfg.data.path),
    ("data.candidates.path", lambda cfg: cfg.data.candidates and cfg.data.candidates.path),
)


def shell_syntax(value: str) -> str:
    """Why ``value`` reads as shell syntax twotower would not expand, or ''."""
    if value.startswith("~"):
        return "starts with '~'"
    if re.search(r"\$(\{|\(|[A-Za-z_])", value):
        return "holds '$' and a name (an environment variable?)"
    return ""


def path_problems(cfg: Config) -> List[Tuple[str, str]]:
    """``(key, message)`` for each local path a shell would have expanded."""
    out = []
    for key, read in LOCAL_PATH_KEYS:
        value = read(cfg)
        why = shell_syntax(value) if isinstance(value, str) else ""
        if why:
            out.append((key, f"{value!r} {why}, which twotower does not expand (it would "
                        "name a folder literally called that): write the full path, e.g. "
                        f"{os.path.expanduser('~')}/runs, or let the shell expand it "
                        f"(--set {key}=$HOME/...)"))
    return out


def check_root(cfg: Config) -> None:
    """Raises ConfigError (``pipeline.root``) if the pipeline's folder can't be made here:
    the root or a folder above it is a file, or the nearest existing folder is not writable."""
    root = cfg.pipeline.root or DEFAULT_ROOT
    path = pipeline_dir(cfg)
    while not os.path.lexists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise ConfigError([("pipeline.root", f"{root!r}: {path} is a file, not a folder; set "
                            "pipeline.root to a folder")])
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError([("pipeline.root", f"{root!r}: {path} is not writable (read-only?); "
                            "set pipeline.root to a folder you can write")])
