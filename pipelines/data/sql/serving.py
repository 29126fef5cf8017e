"""Queries as they stand now, for `twotower recommend`: the same window as the evaluation's.

A query's state is its latest row (by time, then file order) and its
candidates newest first, capped at the longest history: exactly what the
preparation program gives a held-out query before its first held-out
interaction (:func:`pipelines.data.sql.program.queries_query`), with the cutoff
at "now" and every row known. Run by DuckDB on the interactions CSV.
"""
from __future__ import annotations

import os
import tempfile
from typing import Dict, Iterable, List

from sqlglot import exp

from pipelines.config.schema import Config
from pipelines.data.csvfile import DataError
from pipelines.data.sql import checks, filters
from pipelines.data.sql.duck import Runner, source
from pipelines.data.sql.plan import c
from pipelines.data.sql.program import parse_time
from pipelines.data.sql.template import fill, ident, lit
from transform.kinds import history_of, raw_columns


def query_columns(cfg: Config) -> List[str]:
    """The columns a query's state needs: ids, time, and the query tower's columns."""
    d = cfg.data
    columns = [d.query_id, d.candidate_id] + ([d.timestamp] if d.timestamp else []) + [
        col for f in cfg.query_tower.features if not history_of(f.__dict__)
        for col in raw_columns(f.__dict__)]
    return list(dict.fromkeys(columns))


def _check_filtered(runner: Runner, cfg: Config, path: str, cell_of) -> None:
    """The filter's number and time columns hold numbers and times (as :mod:`.checks`), and
    the weight is a number, so the filter drops no row for a bad cell."""
    read_as, _ = filters.kinds(cfg)
    tests = [(n, read_as[n]) for n in filters.columns(cfg) if read_as[n] != filters.TEXT]
    tests += [(cfg.data.weight, filters.NUMBER)] if cfg.data.weight else []
    for column, kind in tests:
        cell = cell_of(column)
        value = (fill("TRY_CAST(P_x AS DOUBLE)", P_x=cell) if kind == filters.NUMBER
                 else parse_time(cell, cfg.data.timestamp_unit))
        found = runner.first(fill("""SELECT rowid + 2, P_x FROM raw_interactions
                                     WHERE NULLIF(trim(P_x), '') IS NOT NULL AND P_v IS NULL
                                     ORDER BY rowid LIMIT 1""", P_x=cell, P_v=value))
        if found:
            raise DataError(f"{path} row {found[0]}, column {column!r}: {found[1]!r} is not a "
                            f"{kind}, but data.filter or data.weight reads it as one")


def states_now(cfg: Config, path: str, wanted: Iterable[str]) -> Dict[str, dict]:
    """``{query: {'row': {column: cell}, 'items': [...], 'seen': set}}`` for wanted queries.

    ``row`` holds the latest row's cells as written (``""`` when empty),
    ``items`` the query's candidates newest first (as many as the longest
    history keeps), ``seen`` every candidate it has in ``path``. Queries
    without a row in ``path`` are absent (cold).
    """
    import pyarrow as pa  # pyarrow: off the CLI's fast path
    import pyarrow.parquet as pq  # pyarrow: off the CLI's fast path

    d = cfg.data
    columns = query_columns(cfg)
    internal = {name: f"c{i}" for i, name in enumerate(columns)}
    histories = [history_of(f.__dict__) for _, f in cfg.features()]
    cap = max([length for length, _ in filter(None, histories)] or [1])
    with tempfile.TemporaryDirectory(prefix="twotower-states-") as scratch:
        runner = Runner(os.path.join(scratch, "spill"))
        listed = os.path.join(scratch, "wanted.parquet")
        pq.write_table(pa.table({"q": pa.array(sorted(set(wanted)), pa.string())}), listed)
        runner.create("wanted", fill("SELECT q FROM read_parquet(P_f)", P_f=lit(listed)))
        read = columns + [n for n in filters.columns(cfg) + ([d.weight] if d.weight else [])
                          if n not in columns]
        runner.create("raw_interactions", source(path, read), path)
        raw_cell = lambda name: exp.Column(this=ident(name))  # noqa: E731
        _check_filtered(runner, cfg, path, raw_cell)
        kept = [fill("P_q IN (SELECT q FROM wanted)", P_q=raw_cell(d.query_id))]
        kept += [tree for tree in [filters.condition(cfg, raw_cell)] if tree is not None]
        if d.weight:  # as in training: rows of weight 0 are not interactions
            kept.append(fill("TRY_CAST(P_w AS DOUBLE) > CAST(0.0 AS DOUBLE)",
                             P_w=raw_cell(d.weight)))
        runner.create("src", fill(
            "SELECT P_cols, rowid + 2 AS _line FROM raw_interactions WHERE P_kept",
            P_cols=[exp.alias_(exp.Column(this=ident(n)), i) for n, i in internal.items()],
            P_kept=exp.and_(*kept)), path)
        q, item = c(internal[d.query_id]), c(internal[d.candidate_id])
        if d.timestamp:
            found = checks.failures(runner.first, checks._times(
                "src", path, c(internal[d.timestamp]), d.timestamp, required=True,
                unit=d.timestamp_unit))
            if found:
                raise DataError(found)
        time = (parse_time(c(internal[d.timestamp]), d.timestamp_unit) if d.timestamp
                else fill("0.0"))
        cells = [fill("COALESCE(P_x, '')", P_x=c(i)) for i in internal.values()]
        # one grouped pass per query for its candidates (linear in the rows), and the
        # latest row by a ranking window: never a whole-partition list per row
        rows = runner.execute(fill("""
            WITH s AS (SELECT *, P_time AS _t FROM src),
            agg AS (SELECT P_q AS _q, list(P_i ORDER BY _t DESC, _line DESC)[1:P_cap] AS _items,
                           list(DISTINCT P_i) AS _seen
                    FROM s GROUP BY P_q)
            SELECT P_cells, _items, _seen FROM (
              SELECT *, row_number() OVER (PARTITION BY P_q ORDER BY _t DESC, _line DESC)
                        AS _last
              FROM s) AS l JOIN agg ON l.P_q = agg._q
            WHERE _last = 1""", P_cells=cells, P_q=q, P_i=item, P_cap=cap, P_time=time),
            path).fetchall()
        runner.con.close()
    out = {}
    for row in rows:
        values = dict(zip(columns, row[:len(columns)]))
        out[values[d.query_id]] = {"row": values, "items": list(row[-2]), "seen": set(row[-1])}
    return out
