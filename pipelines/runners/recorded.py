"""Reading what a run recorded in its pipeline folder, when the folder was damaged or moved.

Three accidents, each a reader's to survive or to name in one line:

- a record that is not JSON any more (``training_metrics.json`` cut off or edited):
  :func:`read_record` returns None and the problem, so a command that does not need the
  record (``recommend``, ``tensorboard``: the SavedModel and the logs are intact) goes on
  with one warning, and one that does says which file;
- ML Metadata's SQLite file damaged (``metadata.sqlite``): its library raises a
  RuntimeError quoting the SQL it ran; :func:`metadata_errors` makes it one DataError
  naming the file;
- a pipeline folder copied or moved: ML Metadata holds absolute paths (the Pusher's
  destination, the artifacts' URIs) into the folder where the run ran. :func:`relocated`
  reads such a path as the same path inside this folder (``<folder>/serving/<version>``,
  ``<folder>/tfx/...``), so a copy serves its own files, never the original's.

No TensorFlow.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Iterator, Optional, Tuple

from pipelines.data.csvfile import DataError
from pipelines.data.written import inside

ANCHORS = ("tfx", "serving")  # the folders under a pipeline folder ML Metadata points into


def read_record(path: str) -> Tuple[Optional[dict], str]:
    """``(the JSON document at path, '')``; ``(None, '')`` when there is no file; ``(None,
    problem)`` when it can't be read (the problem names the file and what is wrong)."""
    if not path or not os.path.exists(path):
        return None, ""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle), ""
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError too
        return None, (f"{path}: not readable as JSON ({' '.join(str(exc).split())[:120]}); "
                      "the run's record is damaged, so it is left out")


@contextlib.contextmanager
def metadata_errors(metadata_path: str) -> Iterator[None]:
    """ML Metadata's failure on a damaged store becomes one DataError naming the file.

    The library raises a bare RuntimeError such as ``Error when executing query: file is
    not a database query: CREATE TABLE IF NOT EXISTS `Type` (...``: the reason is kept,
    the SQL is not.
    """
    try:
        yield
    except RuntimeError as exc:
        text = " ".join(str(exc).split())
        found = re.search(r"Error when executing query: (.*?)(?: query:|$)", text)
        reason = found.group(1) if found else text[:120]
        raise DataError(f"{metadata_path}: ML Metadata cannot read it ({reason}): the "
                        "pipeline's record of its runs is damaged; restore the file, or run "
                        "the pipeline in a new folder (a pushed model can still be given "
                        "itself: --model <folder>/serving/<version>)") from None


def relocated(root: str, path: str) -> str:
    """``path`` (as ML Metadata recorded it) inside the pipeline folder ``root``.

    A path already inside ``root`` (symbolic links resolved) is returned as it is; one
    outside, recorded before the folder was copied or moved, is read from its last
    ``tfx``/``serving`` part on, under ``root``: ``/old/p/serving/17`` in folder ``/new/p``
    is ``/new/p/serving/17`` (whether it exists there is the caller's to check). A path with
    no such part is returned as it is.

    >>> relocated("/new/p", "/old/p/serving/17")
    '/new/p/serving/17'
    """
    if not path:
        return path
    root = os.path.abspath(root)
    if inside(path, root):
        return path
    parts = os.path.normpath(path).split(os.sep)
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in ANCHORS:
            return os.path.join(root, *parts[i:])
    return path
