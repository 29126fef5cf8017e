"""The data preparation as one SQL program, generated from the config.

The program reads two tables an engine provides, with every cell as text and
``rowid`` the record's index in its file (0 first; ``_line``, the row number
in messages, is ``rowid + 2``: the header is row 1):

- ``raw_interactions``: the interaction file;
- ``raw_candidates``: the candidate table (when ``data.candidates`` is set).

Its statements create, in order: ``cand`` (the candidate table), with
``data.filter`` ``unfiltered`` (every interaction row), ``src`` (the
interactions: the rows that meet ``data.filter``, :mod:`.filters`), ``rows``
(joined, with the parsed time ``_t``; without the rows of weight 0 with
``data.weight``, and, with ``data.candidates.missing: drop``, without the rows
naming a candidate the table lacks: the join drops them), ``_bounds`` (for ``time`` and ``days``
splits: one row, the cuts or the last day, :mod:`.cuts`), ``ranked``
(with the split ``_rank``: 0 train, 1 eval, 2 test), ``cuts``, ``final``
(with each row's history cells ``_h0``, ``_h1``, ... and the repeat flag); then one query per
output split (``train``, ``eval``, ``test``, ``eval_queries``,
``test_queries``, ``catalog``), whose columns are the prepared columns with
their names and types (:mod:`pipelines.data.columns`).

Splits (``data.split.method``):
  ``days``, ``dates``: time windows in whole UTC days (:mod:`pipelines.data.windows`);
    a row at or after the held-out (test) window's first moment is eval (test).
  ``time``: global cuts by time. The latest ``test_fraction`` of interactions
    are test, the ``eval_fraction`` before them eval (the cut is the
    ``int(n * (1 - fraction))``-th smallest time, 0-based; rows tied with a cut
    go to the later split; if a cut falls on the earliest time, its ties stay
    in the earlier split). With ``window`` w > 0 (a backtest, no test split),
    eval is the slice between the cuts at ``(w + 1) * eval_fraction`` and
    ``w * eval_fraction`` of all rows, and the rows at or after the later cut
    are left out: the same split, w windows back in time.
  ``user_time``: per query, in (time, file) order: its latest
    ``int(n * test_fraction)`` interactions (at least one when test_fraction >
    0) are test and the latest ``int(n * (eval_fraction + test_fraction))`` (at
    least one) are held out; a query with one interaction stays in train, and
    at least one row per query stays in train.
  ``hash``: SHA-256 of the seed, which repeat of identical content the row is,
    and its length-prefixed cells picks the split: appending rows moves no old
    row.

Histories: a row's history is the query's candidates from strictly earlier
interactions (``time < the row's time``: one basket never sees itself) that
the row's split may see, newest first (within one moment, later file rows
first): a train row sees train interactions only, an eval row train and eval
ones, a test row all three. So no history holds an interaction of a later
split, whatever the split method.

A held-out query's *state* is what evaluation embeds: the columns of its
latest row before its first held-out interaction among the earlier splits, and
the candidates of those rows, newest first. `twotower recommend` uses the same
window with the cutoff at now (:mod:`pipelines.data.sql.serving`).

User columns are renamed on entry (:mod:`.plan`) to internal names (``c0``, ``c1``, ... for
the interaction file, ``k0``, ... for the candidate table), so no user column
can collide with the program's own (``_line``, ``_t``, ``_rank``); config
values reach SQL only as quoted identifiers and literals
(:mod:`pipelines.data.sql.template`).
"""
from __future__ import annotations

from typing import List, Tuple

from sqlglot import exp

# the cell expressions and the plan are re-exported here, where the checks and queries import them
from pipelines.data.sql import cuts
from pipelines.data.sql.cells import UNIT_SECONDS, as_double, epoch_number, parse_time, typed
from pipelines.data.sql.filters import condition
from pipelines.data.sql.histories import final
from pipelines.data.sql.plan import Plan, c, plan, split_method
from pipelines.data.sql.template import fill, ident, lit
from pipelines.data.windows import DAY, day_start

HELD = {"eval": 1, "test": 2}
__all__ = ["HELD", "Plan", "plan", "statements", "split_method", "c", "as_double", "epoch_number",
           "parse_time", "typed", "UNIT_SECONDS"]


def statements(p: Plan, portable: bool = False, keyed: bool = False,
               parallel: bool = False) -> List[Tuple[str, exp.Expression]]:
    """``[(table, SELECT)]``: the tables the program creates, in order.

    ``portable``: the BigQuery-valid history formulation (:mod:`.histories`).
    ``keyed``: the raw tables' ``rowid`` is a key computed from each row (a
    BigQuery table has no row order: :func:`pipelines.data.sql.bigquery.raw`),
    and ``_line`` is that key; else ``rowid`` is the record index and
    ``_line`` the file's row number (``rowid + 2``: the header is row 1).
    """
    d = p.cfg.data
    line = "rowid" if keyed else "rowid + 2"
    out = []
    if d.candidates:
        out.append(("cand", fill(f"SELECT P_cols, {line} AS _line FROM raw_candidates", P_cols=[
            exp.alias_(exp.Column(this=ident(name)), internal)
            for name, internal in p.kcol.items()])))
    wanted = p.read
    every = fill(f"SELECT P_cols, {line} AS _line FROM raw_interactions", P_cols=[
        exp.alias_(exp.Column(this=ident(name)), p.col[name]) for name in wanted])
    kept = condition(p.cfg, lambda name: c(p.col[name]))
    if kept is None:
        out.append(("src", every))
    else:  # checks read the kept rows; the filter's own columns are checked on every row
        out.append(("unfiltered", every))
        out.append(("src", fill("SELECT * FROM unfiltered WHERE P_kept", P_kept=kept)))
    time = parse_time(c(p.col[d.timestamp]), p.unit) if d.timestamp else as_double(0.0)
    if d.candidates:
        joined = [exp.column(p.col[n], "s") for n in wanted] + [
            exp.alias_(exp.column(p.kcol[n], "k"), p.col[n]) for n in p.candidate_side]
        out.append(("rows", fill(
            "SELECT P_cols, s._line, P_time AS _t FROM src AS s JOIN cand AS k ON P_on",
            P_cols=joined, P_time=time.transform(
                lambda n: exp.column(n.name, "s") if isinstance(n, exp.Column) else n),
            P_on=exp.EQ(this=exp.column(p.item, "s"),
                        expression=exp.column(p.kcol[d.candidates.id], "k")))))
    else:
        out.append(("rows", fill("SELECT *, P_time AS _t FROM src", P_time=time)))
    if d.weight:  # rows of weight 0 (or below: clipped to 0) count nothing: dropped
        name, tree = out[-1]
        tree.where(exp.GT(this=weight_number(p, "s" if d.candidates else ""),
                          expression=as_double(0.0)), copy=False)
    out += bounds(p, parallel)
    out.append(("ranked", _ranked(p)))
    out.append(("cuts", _cuts(p)))
    out.append(("final", final(p, portable)))
    return out


def weight_number(p: Plan, table: str = "") -> exp.Expression:
    """The row's ``data.weight`` cell as a number (NULL if not one: the checks refuse that)."""
    return fill("TRY_CAST(P_x AS DOUBLE)", P_x=exp.column(p.col[p.cfg.data.weight], table or None))


def weight_cell(p: Plan) -> exp.Expression:
    """The example weight a prepared row carries: ``data.weight`` clipped to [0, the clip]."""
    return fill("least(greatest(P_w, P_lo), P_hi)", P_w=weight_number(p), P_lo=as_double(0.0),
                P_hi=as_double(p.cfg.data.weight_limit))


def _latest(fraction: float) -> exp.Expression:
    """Per query, its latest int(n * fraction) rows, at least one, at most n - 1."""
    return fill("""
        _n >= 2 AND _p > _n - least(_n - 1, greatest(1, CAST(floor(_n * P_f) AS BIGINT)))""",
                P_f=as_double(fraction))


def _hash_u(p: Plan) -> exp.Expression:
    """A uniform number in [0, 1) from the row's content and which repeat of it it is."""
    parts: List[exp.Expression] = [lit(f"{p.cfg.data.split.seed}:"),
                                   fill("CAST(_rep AS VARCHAR)"), lit(":")]
    for name in p.base:
        cell = fill("COALESCE(P_x, '')", P_x=c(p.col[name]))
        parts += [fill("CAST(length(P_x) AS VARCHAR)", P_x=cell), lit(":"), cell]
    text = parts[0]
    for part in parts[1:]:
        text = exp.DPipe(this=text, expression=part)
    return fill("CAST(('0x' || substr(sha256(P_text), 1, 8)) AS BIGINT) / 4294967296.0",
                P_text=text)


def _window_starts(p: Plan) -> Tuple[exp.Expression, exp.Expression]:
    """The first held-out and first test moment (epoch seconds; test NULL without one);
    ``days`` reads ``_last``, the last day, from ``_bounds``."""
    s = p.cfg.data.split
    if p.method == "dates":
        return (as_double(day_start(s.eval_from)),
                as_double(day_start(s.test_from)) if s.test_from else exp.null())
    held = fill("(_last - P_n + 1) * P_day", P_day=as_double(DAY), P_n=s.eval_days + s.test_days)
    test = fill("(_last - P_n + 1) * P_day", P_day=as_double(DAY), P_n=s.test_days)
    return held, test if s.test_days > 0 else exp.null()


def cut_fractions(p: Plan) -> List[float]:
    """The time split's cuts (:mod:`.cuts`): the held-out start, then the test start or,
    for a backtest window, the window's end (where the rows left out begin)."""
    s = p.cfg.data.split
    held = s.eval_fraction + s.test_fraction
    out = [held * (s.window + 1)]
    if s.window:
        out.append(held * s.window)
    elif s.test_fraction > 0:
        out.append(s.test_fraction)
    return out


def bounds(p: Plan, parallel: bool) -> List[Tuple[str, exp.Expression]]:
    """The tables ending in ``_bounds``, the one row that ``ranked`` and ``cuts`` read:
    the time split's cuts (:mod:`.cuts`) or the ``days`` split's last day; none else."""
    if p.method == "time":
        return cuts.tables(cut_fractions(p), parallel)
    if p.method == "days":
        return [("_bounds", fill("SELECT max(floor(_t / P_day)) AS _last FROM rows",
                                 P_day=as_double(DAY)))]
    return []


def _ranked(p: Plan) -> exp.Expression:
    s = p.cfg.data.split
    held = s.eval_fraction + s.test_fraction
    if p.method in ("days", "dates"):  # whole UTC days (pipelines.data.windows)
        start, test = _window_starts(p)
        source = "rows AS r CROSS JOIN _bounds AS b" if p.method == "days" else "rows AS r"
        return fill(f"""SELECT r.*, CASE WHEN _t >= P_test THEN 2 WHEN _t >= P_held THEN 1
                        ELSE 0 END AS _rank FROM {source}""", P_held=start, P_test=test)
    if p.method == "time":  # cut 0: the held-out start; cut 1: the test start or window end
        if s.window:  # a backtest: the held-out window moved back, later rows left out
            return fill("SELECT r.*, CASE WHEN P_held THEN 1 ELSE 0 END AS _rank FROM rows AS r "
                        "CROSS JOIN _bounds AS b WHERE NOT (P_after)", P_held=cuts.later(0),
                        P_after=cuts.later(1))
        test = cuts.later(1) if s.test_fraction > 0 else exp.false()
        return fill("SELECT r.*, CASE WHEN P_test THEN 2 WHEN P_held THEN 1 ELSE 0 END AS _rank "
                    "FROM rows AS r CROSS JOIN _bounds AS b", P_test=test, P_held=cuts.later(0))
    if p.method == "user_time":
        test = _latest(s.test_fraction) if s.test_fraction > 0 else exp.false()
        return fill("""
            SELECT * EXCLUDE (_n, _p),
                   CASE WHEN P_test THEN 2 WHEN P_held THEN 1 ELSE 0 END AS _rank
            FROM (SELECT *, count(*) OVER (PARTITION BY P_q) AS _n,
                         row_number() OVER (PARTITION BY P_q ORDER BY _t, _line) AS _p
                  FROM rows)""", P_q=c(p.q), P_test=test, P_held=_latest(held))
    content = [c(p.col[n]) for n in p.base]
    return fill("""
        SELECT * EXCLUDE (_rep, _u),
               CASE WHEN _u < P_held AND _u >= P_eval THEN 2 WHEN _u < P_held THEN 1 ELSE 0 END
               AS _rank
        FROM (SELECT *, P_u AS _u
              FROM (SELECT *, row_number() OVER (PARTITION BY P_content ORDER BY _line) AS _rep
                    FROM rows))""", P_content=content, P_u=_hash_u(p),
                P_held=as_double(held), P_eval=as_double(s.eval_fraction))


def _cuts(p: Plan) -> exp.Expression:
    if p.method in ("days", "dates"):
        start, test = _window_starts(p)
        return fill("SELECT P_held AS time_cut, P_test AS test_cut" + (
            " FROM _bounds" if p.method == "days" else ""), P_held=start, P_test=test)
    if p.method != "time":
        return fill("SELECT NULL AS time_cut, NULL AS test_cut")
    test = "_cut1" if len(cut_fractions(p)) > 1 else "NULL"
    return fill(f"SELECT _cut0 AS time_cut, {test} AS test_cut FROM _bounds")
