"""The prepared input directory: owned by a marker file, replaced whole or not at all."""
from __future__ import annotations

import os
import shutil

from pipelines.data.csvfile import DataError

MARKER = ".twotower-prepared"
REPORT = "prepare_report.json"
SQL_FILE = "prepare.sql"  # the data preparation program, beside the splits it wrote


def claim(out_dir: str) -> None:
    """Raises DataError if ``out_dir`` exists but was not written by twotower."""
    if os.path.exists(out_dir) and not os.path.exists(os.path.join(out_dir, MARKER)):
        raise DataError(f"{out_dir} exists but was not written by twotower (no {MARKER} in it); "
                        "it is left untouched: move it away or set another pipeline.root")


def swap_in(tmp: str, out_dir: str) -> None:
    """Renames the complete ``tmp`` to ``out_dir``, replacing an earlier one."""
    claim(out_dir)
    old = None
    if os.path.exists(out_dir):
        old = tmp + ".old"
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old:
        shutil.rmtree(old)
