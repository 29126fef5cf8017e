"""Cell expressions of the preparation program: a text cell as a number, a time or its
output type. Every cell reaches these as text (:mod:`pipelines.data.sql.program`)."""
from __future__ import annotations

from sqlglot import exp

from pipelines.data.columns import FLOAT, INT
from pipelines.data.sql.template import fill, lit


def as_double(value: float) -> exp.Expression:
    """A DOUBLE literal equal to the Python float (DuckDB reads 0.8 as a DECIMAL)."""
    return exp.cast(lit(float(value)), "DOUBLE")


UNIT_SECONDS = {"s": 1.0, "ms": 1e3, "us": 1e6}  # data.timestamp_unit


def epoch_number(cell: exp.Expression, unit: str = "s") -> exp.Expression:
    """A numeric timestamp cell in seconds (NULL if it is not a number)."""
    number = fill("TRY_CAST(P_x AS DOUBLE)", P_x=cell)
    if unit == "s":
        return number
    return fill("P_n / P_d", P_n=number, P_d=as_double(UNIT_SECONDS[unit]))


def parse_time(cell: exp.Expression, unit: str = "s") -> exp.Expression:
    """Epoch seconds from a number in ``unit`` or ISO 8601 text (naive = UTC: the engine's
    zone)."""
    return fill("COALESCE(P_n, epoch(TRY_CAST(P_x AS TIMESTAMPTZ)))",
                P_n=epoch_number(cell, unit), P_x=cell)


def typed(cell: exp.Expression, kind: str, unit: str = "s") -> exp.Expression:
    """An output cell: NULL when empty, else the column's type (times in ``unit``)."""
    if kind == FLOAT:
        return fill("TRY_CAST(P_x AS DOUBLE)", P_x=cell)
    if kind == INT:
        return fill("CAST(floor(P_t) AS BIGINT)", P_t=parse_time(cell, unit))
    return fill("NULLIF(P_x, '')", P_x=cell)
