"""The data checks as queries over the program's tables, and their messages.

Each check is a query returning the first offending row (by ``_line``) or
nothing; :func:`failures` runs them in order and returns the first message,
which names the file, the row (header = 1) and the column, like
``purchases.csv row 3: column 'product_id' (data.candidate_id) is empty``.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Tuple

from sqlglot import exp

from pipelines.data.sql import filters
from pipelines.data.sql.plan import Plan, c
from pipelines.data.sql.program import as_double, epoch_number, parse_time
from pipelines.data.sql.template import fill, lit

Check = Tuple[exp.Expression, Callable[[tuple], str]]

BLANK = r"^\s*$"


def _blank(cell: exp.Expression) -> exp.Expression:
    return fill("(P_x IS NULL OR regexp_matches(P_x, P_re))", P_x=cell, P_re=lit(BLANK))


def _breaks(cell: exp.Expression) -> exp.Expression:
    return fill("(strpos(P_x, P_n) > 0 OR strpos(P_x, P_r) > 0)", P_x=cell, P_n=lit("\n"),
                P_r=lit("\r"))


def _first(table: str, where: exp.Expression, *values: exp.Expression) -> exp.Expression:
    return fill(f"SELECT _line, P_values FROM {table} WHERE P_where ORDER BY _line LIMIT 1",
                P_values=list(values) or [lit(None)], P_where=where)


def _ids(table: str, path: str, cell: exp.Expression, column: str, key: str) -> Iterator[Check]:
    yield (_first(table, _blank(cell), cell),
           lambda r: f"{path} row {r[0]}: column {column!r} ({key}) is empty; every "
                     "interaction needs both ids")
    yield (_first(table, _breaks(cell), cell),
           lambda r: id_line_break(path, r[0], column, key, r[1]))


def id_line_break(path: str, row: int, column: str, key: str, value: str) -> str:
    """The message for an id holding a line break: prepare's check, and recommend's for the
    ``--users`` file (an id on two lines could never match one of the vocabulary's)."""
    return (f"{path} row {row}: column {column!r} ({key}) holds a line break in {value!r}; "
            "ids must be on one line")


def _numbers(table: str, path: str, cell: exp.Expression, column: str) -> Iterator[Check]:
    value = fill("TRY_CAST(P_x AS DOUBLE)", P_x=cell)
    yield (_first(table, fill("NOT P_blank AND P_v IS NULL", P_blank=_blank(cell), P_v=value),
                  cell),
           lambda r: f"{path} row {r[0]}, column {column!r}: {r[1]!r} is not a number, but the "
                     "column feeds a numeric feature; fix the cell or declare the feature "
                     "categorical")
    yield (_first(table, fill("NOT isfinite(P_v)", P_v=value), cell),
           lambda r: f"{path} row {r[0]}, column {column!r}: {r[1]!r} is not a finite number")


def _one_line(table: str, path: str, cell: exp.Expression, column: str) -> Iterator[Check]:
    yield (_first(table, _breaks(cell), cell),
           lambda r: f"{path} row {r[0]}, column {column!r}: {r[1]!r} holds a line break; "
                     "categorical values must be on one line")


# A numeric timestamp must fall in these years once read in data.timestamp_unit (a time in
# milliseconds read as seconds is in the year ~55,000), and must not have the digits of a
# coarser unit: since 1973 a time has 9-10 digits in seconds, 12-13 in milliseconds and
# 15-16 in microseconds, so a number in the band [1e8, 1e11) is a time in seconds (it
# would read as 1970-1973 in ms), one in [1e11, 1e14) a time in ms. So every mix of units
# in a column is caught, whatever the declared unit.
PLAUSIBLE = (-2_208_988_800.0, 16_725_225_600.0)  # 1900-01-01 and 2500-01-01, UTC
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}
COARSER_BAND = {"s": None, "ms": 1e11, "us": 1e14}  # |number| in [1e8, this): a coarser unit


def _times(table: str, path: str, cell: exp.Expression, column: str,
           required: bool, unit: str = "s") -> Iterator[Check]:
    when = fill("P_t IS NULL", P_t=parse_time(cell, unit))
    if not required:
        when = fill("NOT P_blank AND P_w", P_blank=_blank(cell), P_w=when)
    yield (_first(table, when, cell),
           lambda r: f"{path} row {r[0]}, column {column!r}: cannot read timestamp "
                     f"{r[1] or ''!r}: use epoch {UNIT_NAMES[unit]} (data.timestamp_unit) or "
                     "ISO 8601 (2024-05-01T10:00:00)")
    yield (_first(table, fill("NOT isfinite(P_t)", P_t=parse_time(cell, unit)), cell),
           lambda r: f"{path} row {r[0]}, column {column!r}: timestamp {r[1]!r} is not a "
                     "finite number")
    number = epoch_number(cell, unit)
    bad = fill("P_n < P_lo OR P_n >= P_hi", P_n=number, P_lo=as_double(PLAUSIBLE[0]),
               P_hi=as_double(PLAUSIBLE[1]))
    if COARSER_BAND[unit]:
        bad = fill("P_bad OR (abs(P_v) >= P_a AND abs(P_v) < P_b)", P_bad=bad,
                   P_v=epoch_number(cell), P_a=as_double(1e8), P_b=as_double(COARSER_BAND[unit]))
    others = " or ".join(UNIT_NAMES[u] for u in UNIT_NAMES if u != unit)
    digits = {"s": "", "ms": "; a 9- to 11-digit number is a time in seconds",
              "us": "; a 9- to 14-digit number is a time in seconds or milliseconds"}[unit]
    yield (fill(f"""SELECT min(_line), arg_min(P_x, _line), count(*), max(_line),
                          (SELECT count(*) FROM {table} WHERE P_n IS NOT NULL)
                   FROM {table} WHERE P_bad HAVING count(*) > 0""",
                P_x=cell, P_n=number, P_bad=bad),
           lambda r: f"{path} row {r[0]}, column {column!r}: {r[1]!r} is not a plausible time "
                     f"in {UNIT_NAMES[unit]} since 1970 (years 1900 to 2500{digits}); {r[2]} of "
                     f"the column's {r[4]} numbers are not (rows {r[0]} to {r[3]}): if the "
                     f"column counts {others}, set data.timestamp_unit; a column that mixes "
                     "units must be fixed")


def candidate_checks(p: Plan) -> Iterator[Check]:
    """Checks on the candidate table (``cand``)."""
    t = p.cfg.data.candidates
    cid = c(p.kcol[t.id])
    yield from _ids("cand", t.source, cid, t.id, "data.candidates.id")
    for column in p.candidate_side:
        if column in p.numeric:
            yield from _numbers("cand", t.source, c(p.kcol[column]), column)
    yield (fill("""SELECT _line, P_id, _firstline FROM (
                     SELECT *, min(_line) OVER (PARTITION BY P_id) AS _firstline FROM cand)
                   WHERE _line > _firstline ORDER BY _line LIMIT 1""", P_id=cid),
           lambda r: f"{t.source} row {r[0]}: candidate id {r[1]!r} appears again (first at row "
                     f"{r[2]}); the candidate table needs one row per candidate")
    for column in p.candidate_side:
        if column in p.one_line:
            yield from _one_line("cand", t.source, c(p.kcol[column]), column)


def interaction_checks(p: Plan) -> Iterator[Check]:
    """Checks on the interactions (``src``), before the join."""
    d = p.cfg.data
    for key in ("query_id", "candidate_id"):
        yield from _ids("src", d.source, c(p.col[getattr(d, key)]), getattr(d, key),
                        f"data.{key}")
    item = c(p.item)
    if d.candidates:
        if d.candidates.missing == "error":  # "drop": the join drops them (duck.dropped)
            yield (fill("""SELECT min(_line), arg_min(P_i, _line), count(*) FROM src
                           WHERE P_i NOT IN (SELECT P_k FROM cand) HAVING count(*) > 0""",
                        P_i=item, P_k=c(p.kcol[d.candidates.id])),
                   lambda r: f"{d.source} row {r[0]}: candidate {r[1]!r} is not in the candidate "
                             f"table {d.candidates.source} ({r[2]} interaction rows name candidates "
                             "it lacks); add them to the table, or set data.candidates.missing: "
                             "drop to drop those rows")
    else:
        for column in p.candidate_side:
            cell = fill("COALESCE(P_x, '')", P_x=c(p.col[column]))
            yield (fill("""SELECT _line, P_i, _v, _fv, _fl FROM (
                             SELECT _line, P_i, P_v AS _v,
                               first_value(P_v) OVER (PARTITION BY P_i ORDER BY _line) AS _fv,
                               first_value(_line) OVER (PARTITION BY P_i ORDER BY _line) AS _fl
                             FROM src)
                           WHERE _v <> _fv ORDER BY _line LIMIT 1""", P_i=item, P_v=cell),
                   lambda r, column=column: (
                       f"{d.source} row {r[0]}: candidate {r[1]!r} has {column!r} = {r[2]!r}, "
                       f"but {r[3]!r} at row {r[4]}; a candidate feature must have one value "
                       "per candidate (or give a candidate table)"))
    local = [n for n in p.base if not d.candidates or n not in p.candidate_side]
    for column in p.numeric:
        if column in local:
            yield from _numbers("src", d.source, c(p.col[column]), column)
    for column in p.one_line:
        if column in local:
            yield from _one_line("src", d.source, c(p.col[column]), column)
    for column in p.stamps:
        if column in local:
            yield from _times("src", d.source, c(p.col[column]), column, required=False,
                              unit=p.unit)
    for _, separator in dict.fromkeys(p.histories.values()):
        yield (_first("src", fill("strpos(P_i, P_s) > 0", P_i=item, P_s=lit(separator)), item),
               lambda r, separator=separator: (
                   f"{d.source} row {r[0]}: candidate id {r[1]!r} contains the history "
                   f"separator {separator!r}; choose another separator"))
    if d.timestamp:
        yield from _times("src", d.source, c(p.col[d.timestamp]), d.timestamp, required=True,
                          unit=p.unit)
    if d.weight:
        yield from _weights("src", d.source, c(p.col[d.weight]), d.weight)


def _weights(table: str, path: str, cell: exp.Expression, column: str) -> Iterator[Check]:
    """Every kept row has a finite number as its weight (below 0 is clipped to 0, dropped)."""
    value = fill("TRY_CAST(P_x AS DOUBLE)", P_x=cell)
    yield (_first(table, _blank(cell), cell),
           lambda r: f"{path} row {r[0]}: column {column!r} (data.weight) is empty; every "
                     "interaction needs a weight: fill it, or drop such rows with data.filter "
                     f"[{{column: {column}, op: not_null}}]")
    yield (_first(table, fill("P_v IS NULL", P_v=value), cell),
           lambda r: f"{path} row {r[0]}, column {column!r} (data.weight): {r[1]!r} is not a "
                     "number; the example weight must be one")
    yield (_first(table, fill("NOT isfinite(P_v)", P_v=value), cell),
           lambda r: f"{path} row {r[0]}, column {column!r} (data.weight): {r[1]!r} is not a "
                     "finite number")


def filter_checks(p: Plan) -> Iterator[Check]:
    """Checks on every interaction row (``unfiltered``) of the columns ``data.filter``
    compares with numbers or times: a cell that is not one is refused, not dropped."""
    d = p.cfg.data
    read_as, _ = filters.kinds(p.cfg)
    for column in filters.columns(p.cfg):
        cell = c(p.col[column])
        keys = ", ".join(f"data.filter.{i}" for i, f in enumerate(d.filter) if f.column == column)
        if read_as[column] == filters.NUMBER:
            value = fill("TRY_CAST(P_x AS DOUBLE)", P_x=cell)
            yield (_first("unfiltered", fill("NOT P_blank AND P_v IS NULL", P_blank=_blank(cell),
                                             P_v=value), cell),
                   lambda r, column=column, keys=keys: (
                       f"{d.source} row {r[0]}, column {column!r}: {r[1]!r} is not a number, "
                       f"but {keys} compares the column with numbers; fix the cell, or compare "
                       "text (the value in quotes)"))
        elif read_as[column] == filters.TIME:
            yield from _times("unfiltered", d.source, cell, column, required=False, unit=p.unit)


def failures(run: Callable[[exp.Expression], Optional[tuple]], checks) -> Optional[str]:
    """The first failing check's message, or None; ``run`` returns a query's first row."""
    for query, message in checks:
        row = run(query)
        if row is not None:
            return message(row)
    return None
