"""A CSV file's bytes, checked before an engine reads them: UTF-8, no NUL, no huge line,
one kind of line ending.

DuckDB, given bytes that are not UTF-8, may read them silently or stop with an internal
error; given a line of tens of megabytes it says "The Parallel CSV Reader currently does
not support a full read on this file", with no row. So the bytes are read once here, in
blocks (memory stays bounded whatever the line lengths), while they are hashed anyway
(:func:`pipelines.data.sql.duck.source_fingerprint`), and the first problem is one
DataError naming the file and the row: ``purchases.csv row 42: not UTF-8 text (byte 0xe9
...)``. A row is a record of the CSV (the header is row 1); when no quote came before the
problem, records and lines are the same thing and the line count is the row.

DuckDB reads a file's records with the line ending it finds first: a CRLF file with one
LF line appended (``echo ... >> file``), or the reverse, stops it with "The CSV Parser state
machine reached an invalid state", with no row. So the line breaks outside quoted cells
must all be CRLF or all LF; the first that differs is named by its row. (A line break
inside a quoted cell is the cell's own text: either kind is read as written.)

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


ENDINGS = {True: "CRLF (\\r\\n, Windows)", False: "LF (\\n)"}  # by "ends with a CR"


def scan(path: str, digest=None, one_ending: bool = True) -> None:
    """Reads ``path`` once (updating ``digest`` with its bytes, if given).

    ``one_ending``: refuse a file whose lines (outside quoted cells) end in both CRLF and LF,
    as DuckDB can't read it (a reader that can, Python's ``csv``, passes False).

    Raises:
      DataError: a byte that is not UTF-8, a NUL byte, a line over :data:`MAX_LINE`
        bytes, or a line ending that differs from the first line's, naming the file and
        the row.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    at, lines, since_newline, quoted = 0, 0, 0, False
    endings = _Endings() if one_ending else None
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
            if endings is not None:
                off = endings.first_other(block)
                if off is not None:
                    _raise(path, handle, at + off, lines + block.count(b"\n", 0, off),
                           quoted or b'"' in block[:off],
                           f"ends with {ENDINGS[endings.crlf is False]} where the lines before "
                           f"end with {ENDINGS[endings.crlf]} (a line added by another "
                           "program?): save the file with one kind of line ending (e.g. "
                           "dos2unix, or save it again from the spreadsheet)")
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


class _Endings:
    """The line endings outside quoted cells, block by block: the first one's kind
    (``crlf``), and where a line first ends otherwise."""

    def __init__(self):
        self.crlf = None  # unknown until the first line break
        self.inside = False  # within a quoted cell at the block's start
        self.after_cr = False  # the previous block ended with a CR outside quotes

    def first_other(self, block: bytes):
        """The offset in ``block`` of the first line break of the other kind, or None."""
        found, offset = None, 0
        parts = block.split(b'"')
        for j, part in enumerate(parts):
            outside = (j % 2 == 0) != self.inside
            if outside and found is None and b"\n" in part:
                n, crlf = part.count(b"\n"), part.count(b"\r\n")
                if j == 0 and self.after_cr and part.startswith(b"\n"):
                    crlf += 1
                if self.crlf is None:
                    self.crlf = self._is_crlf(part, part.index(b"\n"), j)
                if crlf != (n if self.crlf else 0):  # a line break of the other kind
                    found = offset + self._other(part, j)
            offset += len(part) + 1
        self.inside = self.inside != (len(parts) % 2 == 0)
        self.after_cr = block.endswith(b"\r") and not self.inside
        return found

    def _is_crlf(self, part: bytes, i: int, j: int) -> bool:
        return part[i - 1:i] == b"\r" if i > 0 else (j == 0 and self.after_cr)

    def _other(self, part: bytes, j: int) -> int:
        i = part.index(b"\n")
        while self._is_crlf(part, i, j) == self.crlf:
            i = part.index(b"\n", i + 1)
        return i


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


def _ascii_lower(name: str) -> str:
    return "".join(ch.lower() if ch.isascii() else ch for ch in name)


def repeated_columns(names: List[str], ignore_case: bool = True) -> List[str]:
    """The header's names that name one column twice, sorted; ``ignore_case``: names that
    differ only in ASCII upper/lower case count as one, as they do to DuckDB (``segment``
    and ``Segment``: "Duplicate struct entry name"; ``Ä`` and ``ä`` are two columns there)."""
    groups: dict = {}
    for name in names:
        groups.setdefault(_ascii_lower(name) if ignore_case else name, []).append(name)
    return sorted({name for group in groups.values() if len(group) > 1 for name in group})


def repeated_message(path: str, names: List[str], ignore_case: bool = True) -> str:
    """The one message for a header that repeats a column ('' when it does not)."""
    dupes = repeated_columns(names, ignore_case)
    if not dupes:
        return ""
    by_case = len({_ascii_lower(n) for n in dupes}) < len(dupes)
    return (f"{path}: the header repeats column(s) {dupes}"
            + (" (names that differ only in upper/lower case are one column to the SQL "
               "engine): rename one" if by_case else ": rename one"))


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
