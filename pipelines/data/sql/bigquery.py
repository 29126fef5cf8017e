"""The preparation program on BigQuery: one self-contained query per output split.

BigQueryExampleGen runs one query per split (``train``, ``eval``, ...,
``catalog``). Each query is the program's tables (:func:`statements`, with the
BigQuery-valid history formulation of :mod:`.histories`) as ``WITH`` clauses
over the configured tables, then that split's output query, rendered in
BigQuery's dialect by sqlglot. So the local and the cloud path run one program:
the tests run these very queries on DuckDB (transpiled back) and compare them
with the local outputs.

The tables are read the way the local path reads files: every cell as text
(``CAST(... AS STRING)``). A table has no row order, so where the local path
has the record index, each row here has a key computed from the row alone
(:func:`raw`: ``FARM_FINGERPRINT`` of its length-prefixed cells and which
repeat of them it is): it orders ties and names rows in messages, and every
worker computes it for its own rows (no global sort: numbering all rows with
an unpartitioned ``ROW_NUMBER() OVER (ORDER BY ...)`` puts the whole table on
one worker). The table names (``project.dataset.table``) and columns reach SQL
only as identifiers quoted by sqlglot, after validation (:func:`table_problems`).

Each split's query recomputes the program: BigQuery materializes no
non-recursive ``WITH`` table, it evaluates one again at each reference. BigQueryExampleGen
runs one query per split (no script, so no temporary table), so the references are cut
instead: the time split's cuts are one table (``_bounds``, :mod:`.cuts`, from
``APPROX_QUANTILES`` buckets: no sort of all rows) joined once into ``ranked``, and the
guard's emptiness checks are one pass over ``final``. ``rows`` is evaluated 10 times by a
time split's train query (was 120), 15 by its eval_queries query (was 135)
(tests/test_bigquery_sql.py counts them); the data checks read the source once each.
"""
from __future__ import annotations

import re
from typing import Dict, List, Tuple

from sqlglot import exp

from pipelines.config.schema import Config
from pipelines.data.sql import checks, googlesql
from pipelines.data.sql.plan import Plan, c, plan
from pipelines.data.sql.program import HELD, statements
from pipelines.data.sql.queries import outputs
from pipelines.data.sql.template import fill, ident, render

TABLE = re.compile(r"([a-z][a-z0-9-]{4,28}[a-z0-9])\.([A-Za-z0-9_]{1,1024})\."
                   r"([A-Za-z0-9_-]{1,1024})\Z")


def table_problems(name: str, key: str) -> List[Tuple[str, str]]:
    """``(key, message)`` if ``name`` is not ``project.dataset.table``."""
    if isinstance(name, str) and TABLE.match(name):
        return []
    return [(key, f"{name!r} is not a BigQuery table written project.dataset.table: a "
             "project id (6-30 lower-case letters, digits, '-'), a dataset (letters, digits, "
             "'_') and a table (letters, digits, '_', '-'), e.g. my-project.shop.orders")]


def table(name: str) -> exp.Table:
    """``project.dataset.table`` as a table reference with each part quoted.

    The name is split on its dots; no part is ever pasted into SQL text. A dot
    inside a part is refused even here (validation refuses it first): BigQuery
    reads a quoted ```a.b``` as a path, not as one name.
    """
    if name.count(".") != 2:
        raise ValueError(f"{name!r}: a BigQuery table is project.dataset.table, with no "
                         "other dot")
    project, dataset, name_ = name.split(".")
    return exp.Table(this=ident(name_), db=ident(dataset), catalog=ident(project))


def source_columns(p: Plan) -> Tuple[List[str], List[str]]:
    """The columns the program reads: of the interactions, of the candidate table."""
    return p.read, list(p.kcol)


def row_text(cells: List[exp.Expression]) -> exp.Expression:
    """The cells as one text, each ``<length>:<cell>`` (``-`` when NULL): no two rows alike.

    Read left to right, a length says where its cell ends, so two different
    rows never give the same text. ``LENGTH`` counts characters (code points)
    on BigQuery and DuckDB alike.
    """
    parts = [fill("COALESCE(CAST(length(P_x) AS VARCHAR) || ':' || P_x, '-')", P_x=cell)
             for cell in cells]
    text = parts[0]
    for part in parts[1:]:
        text = exp.DPipe(this=text, expression=part)
    return text


def raw(name: str, columns: List[str]) -> exp.Expression:
    """The table's needed columns as text, and ``rowid``: a key computed from the row.

    ``rowid`` is ``FARM_FINGERPRINT`` (a signed 64-bit FarmHash) of which
    repeat of its cells the row is (``ROW_NUMBER`` partitioned by the cells:
    each group of identical rows is numbered apart, in parallel) and of
    :func:`row_text`. Identical rows are interchangeable, so the numbering
    within a group changes no output. Two different rows could share a key
    only by a 64-bit collision; :func:`guard` refuses that rather than let
    two rows pass for one.
    """
    cells = [exp.cast(exp.Column(this=ident(c)), "VARCHAR") for c in columns]
    text = row_text(cells)
    return fill("SELECT P_cells, farm_fingerprint(CAST(row_number() OVER (PARTITION BY P_text) "
                "AS VARCHAR) || ':' || P_text) AS rowid FROM P_table",
                P_cells=[exp.alias_(cell, ident(c)) for cell, c in zip(cells, columns)],
                P_text=text, P_table=table(name))


MARK = re.compile(r"('?)\u27e6(\d+)\u27e7'?")  # ⟦i⟧: where a check's message shows value i
ROW = re.compile("row (\u27e6\\d+\u27e7)")  # where a message names a row by its _line


def message_cell(message, values: int) -> exp.Expression:
    """A check's message as SQL: its text around the offending row's values ``_v0``, ...

    The message function (:mod:`.checks`) is called with markers for the
    values, and the text between them becomes literals, so BigQuery's error
    reads like the local one, a row named by its key (:func:`raw`) where the
    local message has its line number.
    """
    text = message(tuple(f"\u27e6{i}\u27e7" for i in range(values)))
    text = ROW.sub("row with key \\1", text)  # the row's key (raw), not a line number
    parts: List[exp.Expression] = []
    at = 0
    for found in MARK.finditer(text):
        quote = found.group(1)  # shown with repr() locally: quoted here too
        parts.append(exp.Literal.string(text[at:found.start()] + quote))
        parts.append(fill("COALESCE(CAST(P_v AS VARCHAR), 'NULL')",
                          P_v=exp.column(f"_v{found.group(2)}")))
        at = found.end() - len(quote)
    parts.append(exp.Literal.string(text[at:]))
    return exp.Concat(expressions=[e for e in parts if e.this != ""], safe=False,
                      coalesce=False)


def key_checks(p: Plan):
    """``(query, message)``: two different rows of a table with one key (:func:`raw`).

    Keys order ties and join a row to its histories, so a 64-bit collision
    (odds about n^2 / 2^65 for n rows) stops the query rather than merging two rows.
    """
    d = p.cfg.data
    tables = [("raw_interactions", d.source)]
    if d.candidates:
        tables.insert(0, ("raw_candidates", d.candidates.source))
    for name, source in tables:
        yield (fill(f"SELECT rowid, count(*) FROM {name} GROUP BY rowid HAVING count(*) > 1 "
                    "ORDER BY rowid LIMIT 1"),
               lambda r, source=source: (
                   f"{source}: {r[1]} different rows have the same key {r[0]} (a collision of "
                   "64-bit fingerprints, odds about 1 in 2^64 per pair of rows), so their order "
                   "can't be decided; change or drop one of them"))


def _emptiness(p: Plan, k: int) -> exp.Expression:
    """``SELECT _k, _message``: a split with no rows, or a held-out split none of whose
    queries has an earlier row (an empty evaluation), the first of them; from one pass
    over ``final`` (its rows are ``ranked``'s): each query's rows per split, then their sums.

    One reference to ``final``, not two per check: BigQuery evaluates a ``WITH`` table once
    per reference, so each one more would read the source and rank its rows again.
    """
    d = p.cfg.data
    per_query = []
    for split in p.splits:
        r = HELD.get(split, 0)
        per_query.append(exp.alias_(fill("count(CASE WHEN _rank = P_r THEN 1 END)", P_r=r),
                                    f"_n{r}"))
        if r:
            per_query.append(exp.alias_(fill("count(CASE WHEN _rank < P_r THEN 1 END)",
                                             P_r=r), f"_b{r}"))
    found = []  # (failed, message), in the order the local path checks them
    sums = []
    for split in p.splits:
        r = HELD.get(split, 0)
        sums.append(exp.alias_(fill("coalesce(sum(P_n), 0)", P_n=exp.column(f"_n{r}")),
                                f"_n{r}"))  # no rows: no groups, a NULL sum
        found.append((f"_n{r} = 0", f"{d.source}: the {p.method} split leaves no {split} rows; "
                      "change data.split"))
    for split in p.splits[1:]:
        r = HELD[split]
        sums.append(exp.alias_(fill("count(CASE WHEN P_n > 0 AND P_b > 0 THEN 1 END)",
                                    P_n=exp.column(f"_n{r}"), P_b=exp.column(f"_b{r}")),
                               f"_e{r}"))
        found.append((f"_e{r} = 0", f"{d.source}: no {split} query has an interaction before "
                      f"its first {split} one, so the {split} evaluation would be empty"))
    case_k = exp.Case(ifs=[exp.If(this=fill(cond), true=exp.convert(k + i))
                           for i, (cond, _) in enumerate(found)])
    case_m = exp.Case(ifs=[exp.If(this=fill(cond), true=exp.Literal.string(message))
                           for cond, message in found])
    where = exp.or_(*[fill(cond) for cond, _ in found])
    return fill("""SELECT P_k AS _k, P_m AS _message FROM (
                     SELECT P_sums FROM (SELECT P_per FROM final GROUP BY P_q))
                   WHERE P_where""", P_k=case_k, P_m=case_m, P_sums=sums, P_per=per_query,
                P_q=c(p.q), P_where=where)


def guard(p: Plan) -> exp.Expression:
    """``SELECT _ok``: TRUE, or BigQuery's ``ERROR`` with the first failed check's message.

    The same checks as the local path (:mod:`.checks`, then an empty split or
    an empty evaluation), so bad data stops the pipeline in ExampleGen with one
    line instead of training on it.
    """
    d = p.cfg.data
    found = list(key_checks(p))
    found += list(checks.candidate_checks(p)) if d.candidates else []
    found += list(checks.filter_checks(p)) if d.filter else []
    parts = []
    for k, (query, message) in enumerate(found + list(checks.interaction_checks(p))):
        query = query.copy()
        query.set("expressions", [exp.alias_(e.unalias() if isinstance(e, exp.Alias) else e,
                                             f"_v{i}") for i, e in enumerate(query.expressions)])
        parts.append(fill("SELECT P_k AS _k, P_m AS _message FROM (P_q)", P_k=k,
                          P_m=message_cell(message, len(query.expressions)), P_q=query))
    parts.append(_emptiness(p, k=len(parts)))
    union = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    return fill("SELECT if(count(*) > 0, error(arg_min(_message, _k)), TRUE) AS _ok FROM (P_u)",
                P_u=union)


def split_queries(cfg: Config) -> Dict[str, exp.Expression]:
    """``{split: query tree}``: each split's whole program as one query (DuckDB dialect)."""
    p = plan(cfg)
    d = cfg.data
    interactions, candidate_columns = source_columns(p)
    ctes = [("raw_interactions", raw(d.bigquery, interactions))]
    if d.candidates:
        ctes.append(("raw_candidates", raw(d.candidates.bigquery, candidate_columns)))
    ctes += statements(p, portable=True, keyed=True, parallel=True)
    ctes.append(("_guard", guard(p)))
    out = {}
    for split, query in outputs(p, portable=True).items():
        query = query.copy()
        query.set("order", None)  # ExampleGen needs no order; sorting all rows costs
        query = query.where("(SELECT _ok FROM _guard)", copy=False)  # no row if a check fails
        for name, tree in ctes:
            query = query.with_(name, as_=tree.copy(), copy=False)
        out[split] = query
    return out


def to_bigquery(tree: exp.Expression, pretty: bool = False) -> str:
    """A query of :func:`split_queries` as BigQuery SQL text.

    Refuses text that calls a function BigQuery's documentation does not list, or has
    syntax only DuckDB reads (:mod:`.googlesql`): such a query would fail at its first run
    on Vertex AI.
    """
    text = render(tree, "bigquery", pretty=pretty)
    missing = googlesql.unknown(text)
    if missing:
        raise ValueError(f"the BigQuery query calls {', '.join(missing)}, which BigQuery does "
                         f"not have (not in {googlesql.LIST}); the DuckDB -> BigQuery rewrite "
                         "(pipelines/data/sql/template.py) needs a rule for it")
    wrong = googlesql.syntax_problems(text)
    if wrong:
        raise ValueError(f"the BigQuery query has DuckDB syntax: {wrong[0]}; the DuckDB -> "
                         "BigQuery rewrite (pipelines/data/sql/template.py) needs a rule for it")
    return text


def program_text(cfg: Config) -> str:
    """Every split's BigQuery query, as written to ``prepare.sql`` beside the modules."""
    parts = [f"-- twotower data preparation for pipeline {cfg.pipeline.name!r} on BigQuery:",
             "-- one query per split, each read by BigQueryExampleGen"]
    for split, tree in split_queries(cfg).items():
        parts.append(f"-- split: {split}\n" + to_bigquery(tree, pretty=True) + ";")
    return "\n\n".join(parts) + "\n"
