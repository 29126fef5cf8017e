"""The program's output queries: the splits, the held-out query states and the catalog.

Each query reads the tables :func:`pipelines.data.sql.program.statements`
creates and returns the prepared columns, with their names (quoted) and types
(:mod:`pipelines.data.columns`), in a fixed order.
"""
from __future__ import annotations

from typing import Dict, List

from sqlglot import exp

from pipelines.data.columns import FLOAT, INT
from pipelines.data.sql.histories import snapshot_histories
from pipelines.data.sql.plan import Plan, c
from pipelines.data.sql.program import HELD, typed, weight_cell
from pipelines.data.sql.template import fill, ident, lit
from transform.kinds import raw_columns
from transform.naming import CATALOG_SPLIT, WEIGHT_COLUMN, queries_split


def history_columns(p: Plan) -> List[exp.Expression]:
    """Each history column from its window's cell (``_h0``, ``_h1``, ...)."""
    return [exp.alias_(c(f"_h{j}"), ident(column)) for j, column in enumerate(p.histories)]


def empty(p: Plan, name: str) -> exp.Expression:
    """A NULL of the column's type (the other side's columns of a catalog or query row)."""
    return exp.alias_(exp.cast(exp.null(), {FLOAT: "DOUBLE", INT: "BIGINT"}.get(
        p.types[name], "VARCHAR")), ident(name))


def ordered(p: Plan, cells: List[exp.Expression]) -> List[exp.Expression]:
    """The cells in the prepared columns' order (:func:`column_types`), missing ones NULL."""
    named = {cell.alias: cell for cell in cells}
    return [named[name] if name in named else empty(p, name) for name in p.types]


def shuffle_key(p: Plan) -> exp.Expression:
    """A pseudo-random sort key of a row: the SHA-256 of the split seed and its row number.

    The train split is written in this order, a uniform shuffle fixed by
    ``data.split.seed``: a log's file order is usually time order, and
    batches read in it would each hold a few days and every epoch end on
    the newest rows (an uncontrolled recency effect). The held-out splits
    keep file order.
    """
    return fill("substr(sha256(P_seed || CAST(_line AS VARCHAR)), 1, 16)",
                P_seed=lit(f"{p.cfg.data.split.seed}:"))


def split_query(p: Plan, split: str) -> exp.Expression:
    """The rows of ``split`` as the prepared columns: train shuffled (:func:`shuffle_key`),
    the held-out splits in file order."""
    cells = [exp.alias_(typed(c(p.col[n]), p.types[n], p.unit), ident(n)) for n in p.base]
    cells += history_columns(p)
    if p.cfg.data.weight:  # the clipped example weight (the Trainer's loss reads it)
        cells.append(exp.alias_(weight_cell(p), ident(WEIGHT_COLUMN)))
    keep = fill("_rank = P_r AND NOT _repeat", P_r=HELD.get(split, 0))
    order = [shuffle_key(p), c("_line")] if split == "train" else [c("_line")]
    return fill("SELECT P_cells FROM final WHERE P_keep ORDER BY P_order",
                P_cells=ordered(p, cells), P_keep=keep, P_order=order)


def queries_query(p: Plan, split: str, portable: bool = False) -> exp.Expression:
    """Each query of a held-out split as it stood before its first interaction there: its
    latest row among the earlier splits' rows before its first held-out interaction, and
    its candidates of those rows, newest first."""
    d = p.cfg.data
    query_side = {d.query_id, d.timestamp} | {
        col for t, f in p.cfg.features() if t == "query_tower" for col in raw_columns(f.__dict__)}
    cells = [exp.alias_(typed(c(p.col[n]), p.types[n], p.unit), ident(n)) for n in p.base
             if n in query_side]
    cells = ordered(p, cells + history_columns(p))
    before = "f._t < q._cutoff" if d.timestamp else "TRUE"
    windows = snapshot_histories(p, portable)
    drop = ", ".join(f"_h{j}" for j in range(max(1, len(p.histories))))  # internal names
    return fill(f"""
        SELECT P_cells FROM (
          SELECT *, row_number() OVER (PARTITION BY P_q ORDER BY _t DESC, _line DESC) AS _last,
                 P_windows
          FROM (SELECT f.* EXCLUDE ({drop}) FROM final AS f JOIN (
                  SELECT P_q, min(_t) AS _cutoff FROM final WHERE _rank = P_r GROUP BY P_q
                ) AS q ON f.P_q = q.P_q
                WHERE f._rank < P_r AND {before})
        ) AS s
        WHERE _last = 1 ORDER BY P_q""", P_cells=cells, P_q=c(p.q), P_r=HELD[split],
                P_windows=windows)


def held_queries(p: Plan, split: str) -> exp.Expression:
    """How many queries have at least one row in a held-out split."""
    return fill("SELECT count(DISTINCT P_q) FROM final WHERE _rank = P_r", P_q=c(p.q),
                P_r=HELD[split])


def catalog_query(p: Plan) -> exp.Expression:
    """One row per servable candidate, by id: the candidate table, or else each candidate's
    first training row (after ``data.repeats``)."""
    d = p.cfg.data
    side = set(p.candidate_side) | {d.candidate_id}

    def cells(source):
        return ordered(p, [exp.alias_(typed(c(source[n]), p.types[n], p.unit), ident(n))
                           for n in p.base if n in side])

    if d.candidates:
        source = dict(p.kcol, **{d.candidate_id: p.kcol[d.candidates.id]})
        return fill("SELECT P_cells FROM cand ORDER BY P_id",
                    P_cells=cells(source), P_id=c(source[d.candidate_id]))
    return fill("""SELECT P_cells FROM (
                     SELECT *, row_number() OVER (PARTITION BY P_i ORDER BY _line) AS _first
                     FROM final WHERE _rank = 0 AND NOT _repeat)
                   WHERE _first = 1 ORDER BY P_i""",
                P_cells=cells(p.col), P_i=c(p.item))


def outputs(p: Plan, portable: bool = False) -> Dict[str, exp.Expression]:
    """``{split directory: query}`` in writing order (``portable``: for BigQuery)."""
    out = {split: split_query(p, split) for split in p.splits}
    for split in p.splits[1:]:
        out[queries_split(split)] = queries_query(p, split, portable)
    out[CATALOG_SPLIT] = catalog_query(p)
    return out
