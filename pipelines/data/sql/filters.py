"""``data.filter``: the conditions a kept interaction row meets, as SQL trees, and their rules.

Each condition compares one cell of the interaction file with literals from the
config. The cell is read as one of three kinds, decided by the config, never
guessed from the data:

- ``number``: ``TRY_CAST(cell AS DOUBLE)``: a numeric feature's column, the
  ``data.weight`` column, or a column the config reads nowhere else that is
  compared with numbers;
- ``time``: epoch seconds (:func:`pipelines.data.sql.cells.parse_time`):
  ``data.timestamp`` or a timestamp feature's column; a value is ISO 8601 text
  (``2024-01-01``, naive = UTC) or a number in ``data.timestamp_unit``;
- ``text``: the cell as written (never stripped), NULL when empty: ids and the
  string kinds' columns, or an otherwise unread column compared with text.

An empty cell is NULL and meets ``is_null`` only (every other operator,
``!=`` and ``not_in`` included, is false on it). A non-empty cell that is not
a number (or a time) where the condition compares numbers (times) is refused
by :func:`pipelines.data.sql.checks.filter_checks`, never silently dropped.
Values reach SQL only as literals (:func:`pipelines.data.sql.template.lit`).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple

from sqlglot import exp

from pipelines.config.schema import FILTER_OPS, Config
from pipelines.data.columns import column_types
from pipelines.data.csvfile import DataError, parse_time as parse_literal_time
from pipelines.data.sql.cells import UNIT_SECONDS, as_double, parse_time
from pipelines.data.sql.template import fill, lit
from transform.kinds import FLOAT, INT

NUMBER, TIME, TEXT = "number", "time", "text"
ORDERED = ("<", "<=", ">", ">=")
LISTS = ("in", "not_in")
NO_VALUE = ("is_null", "not_null")
COMPARE = {"=": exp.EQ, "!=": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}
_READ_AS = {FLOAT: NUMBER, INT: TIME}  # a configured column's kind; anything else is text


def columns(cfg: Config) -> List[str]:
    """The filtered columns, each once, in the config's order."""
    return list(dict.fromkeys(f.column for f in cfg.data.filter))


def _values(value) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _literal_kind(values: list) -> Optional[str]:
    kinds = {TEXT if isinstance(v, str) else NUMBER for v in values}
    return kinds.pop() if len(kinds) == 1 else None


def kinds(cfg: Config) -> Tuple[Dict[str, str], List[Tuple[str, str]]]:
    """``({column: number | time | text}, [(key, problem)])`` for ``data.filter``."""
    d = cfg.data
    configured = {col: _READ_AS.get(kind, TEXT) for col, kind in column_types(cfg).items()}
    if d.weight:
        configured[d.weight] = NUMBER
    found: Dict[str, str] = {}
    first: Dict[str, str] = {}
    problems = []
    for i, f in enumerate(d.filter):
        key = f"data.filter.{i}"
        values = _values(f.value)
        if not isinstance(f.column, str) or not f.column:
            problems.append((f"{key}.column", "required: the interaction file's column to test"))
            continue
        if f.op not in FILTER_OPS:
            problems.append((f"{key}.op", f"{f.op!r} is not one of {', '.join(FILTER_OPS)}"))
            continue
        if f.op in NO_VALUE:
            if f.value is not None:
                problems.append((f"{key}.value", f"{f.op} takes no value: remove it"))
            continue
        if f.op in LISTS and (not isinstance(f.value, list) or not f.value):
            problems.append((f"{key}.value", f"{f.op} needs a list of values, e.g. "
                             "value: [A, B]"))
            continue
        if f.op not in LISTS and (f.value is None or isinstance(f.value, list)):
            problems.append((f"{key}.value", f"{f.op} needs one value (a string or a number); "
                             "a list goes with in or not_in"))
            continue
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            problems.append((f"{key}.value", "must be a finite number"))
            continue
        given = _literal_kind(values)
        if given is None:
            problems.append((f"{key}.value", "mixes text and numbers: one column is compared "
                             "with one kind of value"))
            continue
        kind = configured.get(f.column)
        if kind is None:  # read nowhere else: the values say how
            kind = found.get(f.column, given)
            if kind != given:
                problems.append((f"{key}.value", f"column {f.column!r} is compared with "
                                 f"{'numbers' if kind == NUMBER else 'text'} by {first[f.column]}"
                                 ": compare it with one kind of value"))
                continue
        problem = _mismatch(cfg, f.column, kind, given, f.op, values)
        if problem:
            problems.append((f"{key}.value", problem))
            continue
        found[f.column] = kind
        first.setdefault(f.column, key)
    for f in d.filter:  # is_null / not_null only: read as the config reads the column
        if isinstance(f.column, str) and f.column:
            found.setdefault(f.column, configured.get(f.column, TEXT))
    return found, problems


def _mismatch(cfg: Config, column: str, kind: str, given: str, op: str, values: list) -> str:
    if kind == NUMBER and given != NUMBER:
        return (f"column {column!r} is read as a number (a numeric feature or data.weight): "
                f"write the value as a number, e.g. {op} 0, not in quotes")
    if kind == TEXT and given != TEXT:
        return (f"column {column!r} is read as text (an id or a string feature): write the "
                f"value as text in quotes, e.g. '{values[0]:g}'")
    if kind == TEXT and op in ORDERED:
        return (f"{op} orders numbers and times, but column {column!r} is text: use =, !=, in "
                "or not_in")
    if kind == TIME:
        for value in values:
            if isinstance(value, str):
                try:
                    parse_literal_time(value, f"column {column!r}", cfg.data.timestamp_unit)
                except DataError as exc:
                    return str(exc)
    return ""


def _operand(cell: exp.Expression, kind: str, unit: str) -> exp.Expression:
    if kind == NUMBER:
        return fill("TRY_CAST(P_x AS DOUBLE)", P_x=cell)
    if kind == TIME:
        return parse_time(cell, unit)
    return fill("NULLIF(P_x, '')", P_x=cell)


def _literal(value, kind: str, unit: str) -> exp.Expression:
    if kind == TEXT:
        return lit(value)
    if kind == TIME:  # epoch seconds, as the operand
        seconds = (parse_literal_time(value, "data.filter", unit) if isinstance(value, str)
                   else value / UNIT_SECONDS[unit])
        return as_double(seconds)
    return as_double(value)


def condition(cfg: Config, cell_of: Callable[[str], exp.Expression]) -> Optional[exp.Expression]:
    """The conjunction of the conditions over ``cell_of(column)`` (a text cell), or None.

    Each condition is ``COALESCE(..., FALSE)``: a NULL operand keeps no row
    (``is_null`` aside). Call after validation (:func:`kinds` reports no problem).
    """
    d = cfg.data
    if not d.filter:
        return None
    read_as, _ = kinds(cfg)
    parts = []
    for f in d.filter:
        kind = read_as[f.column]
        operand = _operand(cell_of(f.column), kind, d.timestamp_unit)
        if f.op == "is_null":
            test: exp.Expression = exp.Is(this=operand, expression=exp.null())
        elif f.op == "not_null":
            test = exp.not_(exp.Is(this=operand, expression=exp.null()))
        elif f.op in LISTS:
            test = exp.In(this=operand, expressions=[
                _literal(v, kind, d.timestamp_unit) for v in f.value])
            test = exp.not_(exp.paren(test)) if f.op == "not_in" else test
        else:
            test = COMPARE[f.op](this=operand,
                                 expression=_literal(f.value, kind, d.timestamp_unit))
        parts.append(fill("COALESCE(P_t, FALSE)", P_t=exp.paren(test)))
    return exp.and_(*parts)
