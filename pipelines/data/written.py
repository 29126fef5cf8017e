"""Files twotower writes where the user says (``--out``): never over an input, never over a
file it did not write (unless ``--force``), whole or not at all.

How a file is known to be twotower's: each folder twotower writes a user-named file into
gets a manifest, ``.twotower-written``, listing each such file with the SHA-256 and size of
the bytes twotower wrote. A file is twotower's while its bytes are still exactly those: a
file the user edited since (or a file of the same name put there by hand or by another
program) is the user's, and is refused without ``--force``.

An output is refused whatever ``--force`` says when it is one of the command's inputs (or
the training data of the model it serves): compared by file identity (``st_dev``,
``st_ino``, so hard links and symbolic links count) and by resolved path, never by the
string given; and when it would land inside a folder only the pipeline writes
(:data:`PROTECTED`: a SavedModel, pushed or exported, or a prepared input folder), at any
depth. Outputs go to a temporary file beside the target, renamed over it only when
complete (:func:`atomic`).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
from typing import Dict, Iterable, Iterator, List, Optional

from pipelines.config.schema import ConfigError
from pipelines.data.output import MARKER as PREPARED_MARKER
from pipelines.data.output import digest

MANIFEST = ".twotower-written"
# (the file that marks a folder, what the folder is): no command writes a user-named output
# into such a folder or under it, whatever --force says
PROTECTED = (("saved_model.pb", "a SavedModel's folder (a pushed or exported model)"),
             (PREPARED_MARKER, "a prepared input folder (twotower prepare; ExampleGen reads it)"))


def _identity(path: str) -> Optional[tuple]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same inode, or the same resolved path."""
    ia, ib = _identity(a), _identity(b)
    if ia is not None and ia == ib:
        return True
    return os.path.realpath(a) == os.path.realpath(b)


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` resolves to ``folder`` or to something under it."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def protected(path: str) -> str:
    """'<folder> is <what>' when ``path`` resolves into a :data:`PROTECTED` folder, else ''."""
    folder = os.path.dirname(os.path.realpath(path))
    while True:
        for marker, what in PROTECTED:
            if os.path.exists(os.path.join(folder, marker)):
                return f"{folder} is {what}"
        if os.path.dirname(folder) == folder:
            return ""
        folder = os.path.dirname(folder)


def _manifest(folder: str) -> Dict[str, dict]:
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as handle:
            found = json.load(handle).get("files", {})
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def ours(path: str) -> bool:
    """Whether ``path`` holds exactly the bytes twotower last wrote there (its manifest)."""
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    entry = _manifest(os.path.dirname(os.path.abspath(path))).get(os.path.basename(path))
    if not isinstance(entry, dict) or entry.get("bytes") != os.path.getsize(path):
        return False
    return entry.get("sha256") == digest(path)


def check(outputs: Dict[str, str], inputs: Dict[str, str] = None, force: bool = False,
          folders: Dict[str, str] = None, make_dirs: bool = False) -> None:
    """Refuses (ConfigError naming the option) before any work is done.

    Args:
      outputs: ``{option: path}`` the command will write (``--out``, ...).
      inputs: ``{what: path}`` it reads: an output naming one of them is always refused.
      force: replace an existing file twotower did not write.
      folders: ``{what: folder}`` it reads from (a model): an output inside is refused.
      make_dirs: the command creates the output's missing folders (``--out DIR``).
    """
    inputs, folders = inputs or {}, folders or {}
    seen: Dict[str, str] = {}
    for key, path in outputs.items():
        if not path:
            continue
        for other, earlier in seen.items():
            if same_file(path, earlier):
                raise ConfigError([(key, f"{path} is also given as {other}: give each output "
                                    "its own file")])
        seen[key] = path
        for what, source in inputs.items():
            if source and os.path.exists(source) and same_file(path, source):
                raise ConfigError([(key, f"{path} is {what} ({source}), which this command "
                                    "reads: writing it would destroy it; choose another file")])
        for what, folder in folders.items():
            if folder and inside(path, folder):
                raise ConfigError([(key, f"{path} is inside {what} ({folder}), which this "
                                    "command reads; choose a file elsewhere")])
        where = protected(path)
        if where:
            raise ConfigError([(key, f"{path}: {where}, which twotower never writes into; "
                                "choose a folder elsewhere")])
        parent = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise ConfigError([(key, f"{path} is a folder; give a file name")])
        while make_dirs and not os.path.lexists(parent) and parent != os.path.dirname(parent):
            parent = os.path.dirname(parent)  # the folder it will be created in
        if not os.path.isdir(parent):
            raise ConfigError([(key, f"{parent} does not exist (or is not a folder); create it "
                                "or choose another path")])
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError([(key, f"{parent} is not writable; choose another folder")])
        if (os.path.lexists(path) and not force) and not ours(path):
            raise ConfigError([(key, f"{path} exists and twotower did not write it (or it was "
                                f"changed since; see {MANIFEST} in docs/outputs.md): it is left "
                                "untouched; choose another path, or add --force to replace it")])


@contextlib.contextmanager
def _locked(folder: str) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # writers of one folder's manifest take turns
        yield
    finally:
        os.close(fd)


def record(paths: Iterable[str], command: str) -> None:
    """Adds each written file (with its digest and size) to its folder's manifest."""
    by_folder: Dict[str, list] = {}
    for path in paths:
        by_folder.setdefault(os.path.dirname(os.path.abspath(path)), []).append(path)
    for folder, written in by_folder.items():
        with _locked(folder):
            files = _manifest(folder)
            for path in written:
                files[os.path.basename(path)] = {
                    "sha256": digest(path), "bytes": os.path.getsize(path), "command": command}
            files = {name: entry for name, entry in files.items()
                     if os.path.exists(os.path.join(folder, name))}
            text = json.dumps({"about": "files written by twotower, with the SHA-256 of their "
                               "bytes: a file listed here whose bytes still match may be "
                               "replaced by twotower; see docs/outputs.md",
                               "files": files}, indent=1, sort_keys=True)
            with atomic(os.path.join(folder, MANIFEST), "w") as handle:
                handle.write(text + "\n")


def _partial(name: str, pid: int, attempt: int) -> str:
    return f".{name}.{pid}-{attempt}.partial"


def left_by_gone_processes(folder: str, pattern: re.Pattern) -> List[str]:
    """The entries of ``folder`` that ``pattern`` matches whole (its group 1: the id of the
    process that made each) whose process is gone, sorted: what a killed process left
    (SIGKILL runs no cleanup); never this process's, nor a live one's (another user's)."""
    out = []
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        found = pattern.fullmatch(entry)
        if not found or int(found.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(found.group(1)), 0)
        except ProcessLookupError:
            out.append(entry)
        except OSError:
            pass  # alive (another user's process)
    return out


def remove_stale_partials(folder: str, name: str) -> None:
    """Removes the temporary files :func:`atomic` left beside ``name`` in processes that are
    gone (killed before they could remove them). Another live process's are left alone."""
    pattern = re.compile(rf"\.{re.escape(name)}\.(\d+)-\d+\.partial")
    for entry in left_by_gone_processes(folder, pattern):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, entry))


@contextlib.contextmanager
def terminated_is_an_exit() -> Iterator[None]:
    """SIGTERM (``kill``, a job scheduler's stop) ends the block as SystemExit(143) does, so
    the ``finally`` clauses that remove temporary files run; the previous handler after."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: signals stay as they are
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def atomic(path: str, mode: str = "w", **kwargs):
    """An open handle on a new file beside ``path``, renamed over it only if the block ends
    without an error (else removed): a reader sees the old file or the whole new one. The
    temporary files of earlier, killed attempts at ``path`` are removed first."""
    folder, name = os.path.split(os.path.abspath(path))
    remove_stale_partials(folder, name)
    for attempt in range(100):
        tmp = os.path.join(folder, _partial(name, os.getpid(), attempt))
        try:  # created here, exclusively, with the usual permissions (umask applies)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"{folder}: cannot create a temporary file beside {name}")
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def new_folders(path: str) -> list:
    """The folders ``path`` needs that do not exist yet, deepest first (to remove them again
    with :func:`remove_new_folders` if the command that creates them fails)."""
    out, path = [], os.path.abspath(path)
    while not os.path.lexists(path) and path != os.path.dirname(path):
        out.append(path)
        path = os.path.dirname(path)
    return out


def remove_new_folders(folders: list) -> None:
    """Removes each folder of :func:`new_folders` that is empty, deepest first."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            return  # not empty (or gone): it and its parents stay
