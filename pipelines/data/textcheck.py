"""A CSV file's bytes, checked before an engine reads them: UTF-8, no NUL, no huge line.

DuckDB, given bytes that are not UTF-8, may read them silently or stop with an internal
error; given a line of tens of megabytes it says "The Parallel CSV Reader currently does
not support a full read on this file", with no row. So the bytes are read once here, in
blocks (memory stays bounded whatever the line lengths), while they are hashed anyway
(:func:`pipelines.data.sql.duck.source_fingerprint`), and the first problem is one
DataError naming the file and the row: ``purchases.csv row 42: not UTF-8 text (byte 0xe9
...)``. A row is a record of the CSV (the header is row 1); when no quote came before the
problem, records and lines are the same thing and the line count is the row.

:func:`header` reads only the header record's bytes, so a bad byte further down is never
reported as the header's.
"""
from __future__ import annotations

import codecs
import csv
from typing import List, Optional

from pipelines.data.csvfile import DataError

MAX_LINE = 2_000_000  # bytes: DuckDB's read_csv max_line_size; a longer line is refused
BOM = codecs.BOM_UTF8
BLOCK = 1 << 20


def scan(path: str, digest=None) -> None:
    """Reads ``path`` once (updating ``digest`` with its bytes, if given).

    Raises:
      DataError: a byte that is not UTF-8, a NUL byte, or a line over :data:`MAX_LINE`
        bytes, naming the file and the row.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    at, lines, since_newline, quoted = 0, 0, 0, False
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror}") from None
    with handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            if digest is not None:
                digest.update(block)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                offset = max(0, exc.start - pending)
                bad = block[offset:offset + 1].hex() or "end"
                _raise(path, handle, at + offset, lines + block.count(b"\n", 0, offset),
                       quoted or b'"' in block[:offset],
                       f"not UTF-8 text (byte 0x{bad}: {exc.reason}); save the file as UTF-8")
            nul = block.find(b"\0")
            if nul >= 0:
                _raise(path, handle, at + nul, lines + block.count(b"\n", 0, nul),
                       quoted or b'"' in block[:nul], "holds a NUL byte (0x00): this is not "
                       "a text CSV file (a binary or UTF-16 file?); save it as UTF-8 CSV")
            first = block.find(b"\n")
            if since_newline + (len(block) if first < 0 else first) > MAX_LINE:
                _raise(path, handle, at - since_newline, lines, quoted,
                       f"a line longer than {MAX_LINE:,} "
                       "bytes (the most a CSV line may hold here): is it a CSV file, or is a "
                       "closing quote missing?")
            last = block.rfind(b"\n")
            since_newline = since_newline + len(block) if last < 0 else len(block) - last - 1
            lines += block.count(b"\n")
            quoted = quoted or b'"' in block
            at += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            _raise(path, handle, at, lines, quoted, "not UTF-8 text (the file ends inside a "
                   "character); save the file as UTF-8")


def _raise(path: str, handle, offset: int, newlines: int, quoted: bool, what: str) -> None:
    row = _record_at(handle, offset) if quoted else newlines + 1
    raise DataError(f"{path} row {row}: {what}")


def _record_at(handle, offset: int) -> int:
    """The number of the CSV record holding byte ``offset`` (header = 1): one more than the
    line breaks before it outside quoted cells (a doubled quote inside a cell opens and closes
    again, so counting quotes keeps the parity). Read in blocks: bounded memory."""
    handle.seek(0)
    left, inside, breaks = offset, False, 0
    while left > 0:
        block = handle.read(min(left, BLOCK))
        if not block:
            break
        left -= len(block)
        parts = block.split(b'"')
        outside = parts[1::2] if inside else parts[0::2]
        breaks += sum(part.count(b"\n") for part in outside)
        inside = inside != (len(parts) % 2 == 0)  # an odd number of quotes flips it
    return breaks + 1


def header(path: str) -> Optional[List[str]]:
    """The header record's cells (None for an empty file), reading only its bytes.

    Raises:
      DataError: the header itself is not UTF-8, holds a NUL byte or is not CSV.
    """
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror}") from None
    with handle:
        def lines():
            first = True
            while True:
                raw = handle.readline(MAX_LINE + 1)
                if not raw:
                    return
                if len(raw) > MAX_LINE:
                    raise DataError(f"{path} row 1: a header line longer than {MAX_LINE:,} "
                                    "bytes: is it a CSV file?")
                if first and raw.startswith(BOM):
                    raw = raw[len(BOM):]
                first = False
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{path} row 1: the header is not UTF-8 text ({exc.reason});"
                                    " save the file as UTF-8") from None

        try:
            return next(csv.reader(lines()), None)
        except csv.Error as exc:
            raise DataError(f"{path} row 1: the header is not readable as CSV ({exc}); is it "
                            "a CSV file?") from None
