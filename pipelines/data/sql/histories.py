"""The history columns: each row's earlier candidates, in two formulations.

A row's history is its query's candidates from strictly earlier interactions
(one basket never sees itself) that its split may see, newest first (within
one moment, later file rows first), at most ``max_length`` of them.

- ``frames`` (DuckDB): ``string_agg`` over a window frame whose start skips
  the row's own moment (``ROWS BETWEEN _pre + 1 FOLLOWING ...``). Linear, and
  the fastest measured (10M rows in 79 s where the other took 150 s); but
  BigQuery takes no per-row frame offsets.
- ``portable`` (BigQuery): ``LEAD`` with constant offsets from the moment's
  last row, joined by ``ARRAY_TO_STRING``: valid in both dialects, and run on
  DuckDB by the tests, which check that both give the same cells.
"""
from __future__ import annotations

from typing import List

from sqlglot import exp

from pipelines.data.sql.plan import Plan, c
from pipelines.data.sql.template import fill


def final(p: Plan, portable: bool = False) -> exp.Expression:
    """``ranked`` with ``_h0``, ``_h1``, ... (each history column's cell) and ``_repeat``.

    A train row sees train rows, an eval row train and eval ones, a test row
    all three: no history holds an interaction of a later split.
    """
    repeat = (fill("_rank = 0 AND row_number() OVER (PARTITION BY P_q, P_i, _rank = 0 "
                   "ORDER BY _t, _line) > 1", P_q=c(p.q), P_i=c(p.item))
              if p.cfg.data.repeats == "first" else exp.false())
    return (_portable_final if portable else _frames_final)(p, repeat)


def snapshot_histories(p: Plan, portable: bool = False) -> List[exp.Expression]:
    """History cells of a row from itself on (a held-out query's state: its latest row)."""
    if portable:
        return history_cells(p, 0)
    return history_windows(p, "_line", "ROWS BETWEEN CURRENT ROW AND P_n - 1 FOLLOWING") or [
        exp.alias_(exp.null(), "_h0")]


def history_windows(p: Plan, skip: str, template: str) -> List[exp.Expression]:
    """One window per history feature: the query's candidates joined, newest first.

    ``template`` is the frame, in (time, file) order newest first; ``skip``
    names the column counting rows to skip before it (``_pre``: the row's own
    moment). The string aggregate over a frame of at most ``max_length`` rows
    is linear in the rows, where building and cutting lists was not.
    """
    return [exp.alias_(fill(f"""string_agg(P_i, P_sep) OVER (
                PARTITION BY P_q ORDER BY _t DESC, _line DESC {template})""",
                            P_i=c(p.item), P_sep=sep, P_q=c(p.q), P_n=n, P_skip=c(skip)),
                       f"_h{j}")
            for j, (n, sep) in enumerate(p.histories.values())]


def history_cells(p: Plan, first: int) -> List[exp.Expression]:
    """One cell per history feature: the query's candidates joined, newest first.

    The candidates of the rows ``first``, ``first + 1``, ... ``first + max_length
    - 1`` places after this one in (time, file) order newest first, by ``LEAD``
    with constant offsets, joined by the separator (NULL when there are none).
    Constant offsets and ``ARRAY_TO_STRING`` read the same on DuckDB and
    BigQuery (whose frames take no per-row offsets and whose analytic
    ``STRING_AGG`` has no order); the work is linear in rows x max_length.
    """
    out = []
    for j, (n, sep) in enumerate(p.histories.values()):
        leads = [fill("lead(P_i, P_k) OVER (PARTITION BY P_q ORDER BY _t DESC, _line DESC)",
                      P_i=c(p.item), P_k=k, P_q=c(p.q)) if k else c(p.item)
                 for k in range(first, first + n)]
        out.append(exp.alias_(fill("NULLIF(array_to_string(P_list, P_sep), '')",
                                   P_list=exp.Array(expressions=leads), P_sep=sep), f"_h{j}"))
    return out or [exp.alias_(exp.null(), "_h0")]


def _moment_histories(p: Plan, source: exp.Expression) -> exp.Expression:
    """``source`` with each row's histories: the candidates of strictly earlier rows.

    Rows of one query at one moment share a history. It is read from the
    moment's last row in newest-first order (its first in the file, ``_pre =
    0``): the rows after it are exactly the earlier moments' rows.
    """
    cells = history_cells(p, 1)
    spread = [exp.alias_(fill("max(P_h) OVER (PARTITION BY P_q, _t)",
                              P_h=c(cell.alias), P_q=c(p.q)), cell.alias) for cell in cells]
    anchored = [exp.alias_(fill("CASE WHEN _pre = 0 THEN P_h END", P_h=cell.this),
                           cell.alias) for cell in cells]
    drop = ", ".join(cell.alias for cell in cells)  # internal names (_h0, _h1, ...)
    return fill(f"""SELECT * EXCLUDE ({drop}), P_spread FROM (
                     SELECT *, P_anchored FROM (
                       SELECT *, row_number() OVER (PARTITION BY P_q, _t ORDER BY _line) - 1
                                 AS _pre
                       FROM (P_source)))""",
                P_spread=spread, P_anchored=anchored, P_q=c(p.q),
                P_source=source)


def _frames_final(p: Plan, repeat: exp.Expression) -> exp.Expression:
    """``final`` with frames (DuckDB)."""
    # A row sees the earlier rows of its own or earlier splits: in newest-first order, the
    # rows after its own moment's remaining rows (_pre of them: same time, earlier in the
    # file), at most max_length of them.
    frame = "ROWS BETWEEN P_skip + 1 FOLLOWING AND P_skip + P_n FOLLOWING"
    pre = "row_number() OVER (PARTITION BY P_q, _t ORDER BY _line) - 1 AS _pre"
    if p.method in ("time", "user_time"):
        # Monotone in time: an earlier row is never in a later split, so one pass suffices.
        return fill(f"""SELECT * EXCLUDE (_pre), P_hists, P_repeat AS _repeat
                        FROM (SELECT *, {pre} FROM ranked)""", P_q=c(p.q),
                    P_hists=history_windows(p, "_pre", frame) or [exp.alias_(exp.null(),
                                                                              "_h0")],
                    P_repeat=repeat)
    parts = []
    for rank in (0, 1, 2):  # a hash split interleaves splits in time: one pass per split
        parts.append(fill(f"""SELECT * EXCLUDE (_rank) FROM (
                                SELECT _line, _rank, P_hists FROM (
                                  SELECT *, {pre} FROM ranked WHERE _rank <= P_rank))
                              WHERE _rank = P_rank""", P_q=c(p.q), P_rank=rank,
                          P_hists=history_windows(p, "_pre", frame) or [
                              exp.alias_(exp.null(), "_h0")]))
    union = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    return fill("""SELECT r.*, h.* EXCLUDE (_line) FROM (
                     SELECT *, P_repeat AS _repeat FROM ranked) AS r
                   JOIN (P_union) AS h ON r._line = h._line""", P_union=union,
                P_repeat=repeat)


def _portable_final(p: Plan, repeat: exp.Expression) -> exp.Expression:
    """``final`` with constant-offset LEADs (BigQuery, and DuckDB in tests)."""
    if p.method != "hash":
        # Monotone in time: an earlier row is never in a later split, so one pass suffices.
        return fill("SELECT * EXCLUDE (_pre), P_repeat AS _repeat FROM (P_hist)",
                    P_hist=_moment_histories(p, fill("SELECT * FROM ranked")), P_repeat=repeat)
    parts = []
    for rank in (0, 1, 2):  # a hash split interleaves splits in time: one pass per split
        visible = fill("SELECT _line, _rank, _t, P_q, P_i FROM ranked WHERE _rank <= P_rank",
                       P_q=c(p.q), P_i=c(p.item), P_rank=rank)
        parts.append(fill("SELECT _line, P_h FROM (P_hist) WHERE _rank = P_rank",
                          P_hist=_moment_histories(p, visible), P_rank=rank,
                          P_h=[exp.column(f"_h{j}") for j in range(max(1, len(p.histories)))]))
    union = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    return fill("""SELECT r.*, h.* EXCLUDE (_line) FROM (
                     SELECT *, P_repeat AS _repeat FROM ranked) AS r
                   JOIN (P_union) AS h ON r._line = h._line""", P_union=union,
                P_repeat=repeat)
