"""Every CSV twotower writes, safe to open in a spreadsheet, and still exact for a program.

Spreadsheets (Excel, LibreOffice Calc, Google Sheets) run a cell that starts with ``=``,
``+``, ``-`` or ``@`` (or a tab, a carriage return, a NUL) as a formula: an id such as
``=HYPERLINK("http://evil", "x")`` or ``=cmd|' /C calc'!A0`` in a file opened there runs.
OWASP's guidance on CSV injection is to make such a cell text by prefixing it with a single
quote, and to quote cells by RFC 4180 (the ``csv`` module does).

The rule, applied to every cell by :func:`escape` (and undone by :func:`unescape`):

- a cell that starts with one of ``= + - @``, a tab, a carriage return or a NUL gets a
  leading ``'``, except a plain number (``-1``, ``+44``, ``-0.5e3``), which a spreadsheet
  reads as a number, never as a formula, and which is written as it is;
- a cell that already starts with ``'`` gets one more, so the rule is reversible;
- every other cell is written as it is.

So ``=SUM(A1)`` is written ``'=SUM(A1)``, ``-A12`` ``'-A12``, ``'x`` ``''x``, and ``-7``,
``C00042`` and ``Ünïcode`` unchanged. A program gets the exact ids back by removing one
leading ``'`` from every cell that has one (:func:`unescape`, or in SQL
``CASE WHEN id LIKE '''%' THEN substr(id, 2) ELSE id END``). ``twotower recommend
--no-escape-formulas`` writes the ids exactly instead, for files that only programs read.
"""
from __future__ import annotations

import csv
import re
from typing import Iterable

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\0")
QUOTE = "'"
PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")


def escape(cell: str) -> str:
    """The cell as written: ``'`` prefixed when a spreadsheet would run it (see above)."""
    if not cell:
        return cell
    if cell.startswith(QUOTE) or (cell.startswith(TRIGGERS) and not PLAIN_NUMBER.match(cell)):
        return QUOTE + cell
    return cell


def unescape(cell: str) -> str:
    """The value :func:`escape` was given."""
    return cell[1:] if cell.startswith(QUOTE) else cell


class Writer:
    """``csv.writer`` whose string cells go through :func:`escape` (numbers as they are)."""

    def __init__(self, handle, escape_formulas: bool = True):
        self.writer = csv.writer(handle)
        self.escape_formulas = escape_formulas

    def writerow(self, row: Iterable) -> None:
        if self.escape_formulas:
            row = [escape(c) if isinstance(c, str) else c for c in row]
        self.writer.writerow(row)

    def writerows(self, rows: Iterable[Iterable]) -> None:
        for row in rows:
            self.writerow(row)
