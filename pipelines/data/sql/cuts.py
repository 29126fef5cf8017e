"""The time split's cuts: the k-th smallest time of all rows, in two formulations.

A cut for ``fraction`` is the ``k``-th smallest ``_t`` of ``rows`` (0-based), with
``k = least(n - 1, floor(n * (1 - fraction)))`` for ``n`` rows: the latest
``fraction`` of the rows lie at or after it (:mod:`pipelines.data.sql.program`
says where ties go). :func:`bounds` is one row: the cuts ``_cut0``, ``_cut1``, ...
(one per fraction, in order) and ``_lo``, the earliest time.

- ``sorted`` (DuckDB, local): one ``ROW_NUMBER() OVER (ORDER BY _t)`` over all rows.
  DuckDB sorts in parallel on every core; BigQuery runs an unpartitioned window on
  one worker, the whole table sorted there.
- ``parallel`` (BigQuery): exact, with no sort of the whole table.
  ``APPROX_QUANTILES(_t, QUANTILES)`` (a parallel aggregate: QUANTILES + 1
  approximate boundaries, sorted) and ``RANGE_BUCKET`` (how many boundaries are
  at or before a time: monotone in the time) put each row in a bucket; a
  ``GROUP BY`` counts the rows per bucket (about n / QUANTILES each); a running
  sum over those at most QUANTILES + 2 counts finds the bucket holding rank
  ``k`` and the ranks before it; then only that bucket's distinct times are
  counted and ordered, and the cut is the first time whose running count
  passes ``k``. The boundaries only decide how the rows are bucketed, never the
  answer: any sorted (or unsorted) boundaries give the exact cut, so the cut equals
  the local one exactly (tests/test_bigquery_sql.py checks it with DuckDB's
  approximate quantiles and with deliberately bad boundaries).

``rows`` is read 4 times by the parallel cuts (the quantiles and the bucket of each
row, once for the counts and once for the boundary bucket), whatever the number of
cuts; ``ranked`` reads them once, joined (:func:`pipelines.data.sql.program.statements`).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from sqlglot import exp

from pipelines.data.sql.template import fill

QUANTILES = 1000  # buckets of about n / 1000 rows; BigQuery allows up to 100,000


def keep(fraction: float) -> exp.Expression:
    """``1 - fraction`` as a DOUBLE literal (DuckDB reads 0.8 as a DECIMAL)."""
    return exp.cast(exp.convert(float(1.0 - fraction)), "DOUBLE")


def rank(n: str, fraction: float) -> exp.Expression:
    """The 0-based rank of the cut among ``n`` (a column) sorted times."""
    return fill(f"least({n} - 1, CAST(floor({n} * P_keep) AS BIGINT))", P_keep=keep(fraction))


def names(count: int) -> List[str]:
    """The cut columns of :func:`bounds`: ``_cut0``, ``_cut1``, ..."""
    return [f"_cut{j}" for j in range(count)]


def _sorted(fractions: Sequence[float]) -> exp.Expression:
    picks = [exp.alias_(fill("min(CASE WHEN _rn = P_k + 1 THEN _t END)", P_k=rank("_n", f)),
                        name) for f, name in zip(fractions, names(len(fractions)))]
    return fill("""SELECT P_picks, min(_t) AS _lo FROM (
                     SELECT _t, row_number() OVER (ORDER BY _t) AS _rn, count(*) OVER () AS _n
                     FROM rows)""", P_picks=picks)


def parallel_tables(fractions: Sequence[float]) -> List[Tuple[str, exp.Expression]]:
    """``[(table, SELECT)]``: ``_tbucket`` (each timed row's bucket), ``_tcount`` (rows
    per bucket, the rows before it, and all rows' count and earliest time), ``_bounds``."""
    buckets = fill("""SELECT range_bucket(r._t, q._q) AS _b, r._t FROM rows AS r
                      CROSS JOIN (SELECT approx_quantiles(_t, P_n) AS _q FROM rows) AS q
                      WHERE r._t IS NOT NULL""", P_n=QUANTILES)
    counts = fill("""SELECT _b, _c, sum(_c) OVER (ORDER BY _b NULLS FIRST) - _c AS _below,
                            sum(_c) OVER () AS _n, min(_lo) OVER () AS _lo
                     FROM (SELECT _b, count(*) AS _c, min(_t) AS _lo FROM _tbucket
                           GROUP BY _b)""")
    wanted = None  # one row per cut: its index and the fraction of rows kept before it
    for j, f in enumerate(fractions):
        row = fill("SELECT P_j AS _j, P_keep AS _keep", P_j=j, P_keep=keep(f))
        wanted = row if wanted is None else exp.union(wanted, row, distinct=False)
    k = "least(c._n - 1, CAST(floor(c._n * w._keep) AS BIGINT))"  # rank(), per cut
    where = fill(f"""SELECT w._j, c._b, c._lo, {k} - c._below AS _r
                     FROM _tcount AS c CROSS JOIN (P_wanted) AS w
                     WHERE {k} >= c._below AND {k} < c._below + c._c""", P_wanted=wanted)
    # the boundary bucket's distinct times, counted and ordered: the first whose running
    # count passes the rank within the bucket is the cut
    found = fill("""SELECT _j, max(_lo) AS _lo, min(CASE WHEN _cum > _r THEN _t END) AS _v FROM (
                      SELECT _j, _r, _lo, _t,
                             sum(_c) OVER (PARTITION BY _j ORDER BY _t NULLS FIRST) AS _cum FROM (
                        SELECT h._j, h._r, h._lo, t._t, count(*) AS _c
                        FROM _tbucket AS t JOIN (P_where) AS h ON t._b = h._b
                        GROUP BY h._j, h._r, h._lo, t._t))
                    GROUP BY _j""", P_where=where)
    picks = [exp.alias_(fill("max(CASE WHEN _j = P_j THEN _v END)", P_j=j), name)
             for j, name in enumerate(names(len(fractions)))]
    return [("_tbucket", buckets), ("_tcount", counts),
            ("_bounds", fill("SELECT P_picks, max(_lo) AS _lo FROM (P_found)", P_picks=picks,
                             P_found=found))]


def tables(fractions: Sequence[float], parallel: bool) -> List[Tuple[str, exp.Expression]]:
    """The tables ending in ``_bounds`` (one row: ``_cut0``, ... and ``_lo``)."""
    if parallel:
        return parallel_tables(fractions)
    return [("_bounds", _sorted(fractions))]


def later(j: int) -> exp.Expression:
    """Rows at or after cut ``j`` (after it, when the cut is the earliest time), over
    ``rows`` joined with ``_bounds``."""
    cut = exp.column(names(j + 1)[j])
    return fill("CASE WHEN _lo >= P_cut THEN _t > P_cut ELSE _t >= P_cut END", P_cut=cut)
