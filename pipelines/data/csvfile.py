"""Reading the user's CSV files cell by cell, with errors that name file, row and column.

Cells are returned exactly as written (no stripping, no type guessing); a
UTF-8 byte-order mark is skipped; a row's number is the CSV line it starts on
(the header is row 1). No TensorFlow.
"""
from __future__ import annotations

import csv
import datetime
import math
from typing import Iterator, List, Tuple


class DataError(ValueError):
    """The data does not fit the config; the message names file, row and column."""


def read_rows(path: str, columns: List[str]) -> Iterator[Tuple[int, dict]]:
    """Yields ``(row number, {column: cell})`` for the named columns of every data row.

    Raises:
      DataError: the file is missing, empty or not UTF-8, a column is absent,
        or a row has a different number of cells than the header.
    """
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        line = 1
        try:
            header = next(reader, None)
            if not header:
                raise DataError(f"{path} is empty: a CSV with a header row is needed")
            absent = [c for c in columns if c not in header]
            if absent:
                raise DataError(f"{path}: no column(s) {absent} (columns: {header})")
            positions = [(c, header.index(c)) for c in columns]
            line = reader.line_num + 1
            for cells in reader:
                start, line = line, reader.line_num + 1
                if not cells:
                    continue  # a blank line
                if len(cells) != len(header):
                    raise DataError(f"{path} row {start}: {len(cells)} cells but the header has "
                                    f"{len(header)}; quote cells that contain the separator")
                yield start, {c: cells[i] for c, i in positions}
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} near row {line}: not UTF-8 text ({exc.reason} at byte "
                            f"{exc.start} of a block); save the file as UTF-8") from None
        except csv.Error as exc:
            raise DataError(f"{path} row {line}: not readable as CSV: {exc}") from None


UNIT_SECONDS = {"s": 1.0, "ms": 1e3, "us": 1e6}  # data.timestamp_unit


def parse_time(text: str, where: str, unit: str = "s") -> float:
    """Epoch seconds from a number in ``unit`` (``s``, ``ms``, ``us``) or ISO 8601 (naive
    times are UTC)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is not None:
        if not math.isfinite(value):
            raise DataError(f"{where}: timestamp {text!r} is not a finite number")
        return value / UNIT_SECONDS[unit]
    iso = text.strip()
    if iso.endswith(("Z", "z")):  # Python 3.10's fromisoformat doesn't read 'Z'
        iso = iso[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(iso)
    except ValueError:
        raise DataError(f"{where}: cannot read timestamp {text!r}: use epoch seconds or "
                        "ISO 8601 (2024-05-01T10:00:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()
