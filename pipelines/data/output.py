"""The prepared input directory: owned by a marker file, replaced whole or not at all.

The marker, ``.twotower-prepared``, lists every file the preparation wrote there with the
SHA-256 and size of its bytes. The folder is replaced whole on the next preparation only
while it holds nothing else: a file the user put in it (``my_analysis.txt``,
``notebooks/a.ipynb``) or changed since is never deleted; the preparation is refused,
naming it, before anything runs. (A marker from before the list existed, plain text, vouches
for the files a preparation has always written: ``<split>/data.parquet``, ``prepare.sql``,
``prepare_report.json``.)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Dict, List

from pipelines.data.csvfile import DataError

MARKER = ".twotower-prepared"
REPORT = "prepare_report.json"
SQL_FILE = "prepare.sql"  # the data preparation program, beside the splits it wrote
SPLIT_FILE = "data.parquet"  # each split folder's one file


def claim(out_dir: str) -> None:
    """Raises DataError if ``out_dir`` exists but was not written by twotower."""
    if os.path.exists(out_dir) and not os.path.exists(os.path.join(out_dir, MARKER)):
        raise DataError(f"{out_dir} exists but was not written by twotower (no {MARKER} in it); "
                        "it is left untouched: move it away or set another pipeline.root")


def digest(path: str) -> str:
    """The file's sha256, hex (read in 1 MiB blocks); :mod:`pipelines.data.written` uses it too."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(folder: str) -> List[str]:
    """Every file and folder under ``folder`` (relative, '/'-separated), the marker aside."""
    found = []
    for where, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            relative = os.path.relpath(os.path.join(where, name), folder).replace(os.sep, "/")
            if relative != MARKER:
                found.append(relative)
    return found


def write_marker(folder: str) -> None:
    """Writes the marker listing every file now under ``folder`` (what the preparation wrote)."""
    files = {name: {"sha256": digest(os.path.join(folder, name)),
                    "bytes": os.path.getsize(os.path.join(folder, name))}
             for name in _files(folder) if os.path.isfile(os.path.join(folder, name))}
    with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as handle:
        json.dump({"about": "written by twotower prepare: the folder is replaced on each "
                   "preparation while it holds only these files (with these bytes)",
                   "files": files}, handle, indent=1, sort_keys=True)
        handle.write("\n")


def _listed(out_dir: str) -> Dict[str, dict]:
    """The marker's ``{relative path: {'sha256', 'bytes'}}``; None for a plain-text marker."""
    try:
        with open(os.path.join(out_dir, MARKER), encoding="utf-8") as handle:
            found = json.load(handle)
    except ValueError:
        return None  # the marker from before the list: the layout vouches for the files
    files = found.get("files") if isinstance(found, dict) else None
    return files if isinstance(files, dict) else {}


def _ours(out_dir: str, relative: str, listed) -> bool:
    path = os.path.join(out_dir, relative)
    if os.path.islink(path):
        return False
    if os.path.isdir(path):  # a folder holding only what the preparation wrote
        return listed is None or any(name.startswith(relative + "/") for name in listed)
    if listed is None:
        parts = relative.split("/")
        return relative in (REPORT, SQL_FILE) or (len(parts) == 2 and parts[1] == SPLIT_FILE)
    entry = listed.get(relative)
    return (isinstance(entry, dict) and entry.get("bytes") == os.path.getsize(path)
            and entry.get("sha256") == digest(path))


def check_replaceable(out_dir: str) -> None:
    """Raises DataError naming the files in ``out_dir`` the preparation did not write (or
    that changed since): replacing the folder would delete them."""
    if not os.path.exists(os.path.join(out_dir, MARKER)):
        return  # no folder yet (claim() refuses a folder without the marker)
    listed = _listed(out_dir)
    foreign = [name for name in _files(out_dir) if not _ours(out_dir, name, listed)]
    # a folder of the user's is named once, not with each file in it
    foreign = [n for n in foreign if not any(n.startswith(f + "/") for f in foreign)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise DataError(f"{out_dir} holds {shown}, which twotower prepare did not write (or "
                        "which changed since): the folder is replaced whole on each "
                        "preparation, so nothing was done; move them out of it (or set "
                        "another pipeline.root / --out)")


def swap_in(tmp: str, out_dir: str) -> None:
    """Renames the complete ``tmp`` to ``out_dir``, replacing an earlier one (only while it
    holds nothing but what a preparation wrote: :func:`check_replaceable`)."""
    claim(out_dir)
    check_replaceable(out_dir)
    old = None
    if os.path.exists(out_dir):
        old = tmp + ".old"
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old:
        shutil.rmtree(old)
