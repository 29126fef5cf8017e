"""The BigQuery input: one query per split, the same program as the local path.

Each split's BigQuery text (what BigQueryExampleGen runs) is read back by
sqlglot into DuckDB's dialect and run on DuckDB over tables holding the same
rows as the CSV files; every split must equal what the local path wrote. So
the split logic, the histories' BigQuery formulation and the dialect fix-ups
are checked by running them, not by reading them. Table, dataset and column
names with injection payloads are refused or stay quoted names.
"""
import copy
import re
import os
import random

import pytest
import sqlglot
from sqlglot import exp

from pipelines.config.schema import Config, ConfigError, apply_overrides, read_raw
from pipelines.data.prepare import prepare
from pipelines.validate import validate
from test_prepare import HEADER, ROOT, rows_of, write

PRODUCTS = ("product_id,category,price\nP1,tools,10.5\nP2,paper,2.25\n007,ink,7\n"
            "7,ink,7.5\nÜ-产品,paper,1\nP6,tools,3\n")
ITEMS = ["P1", "P2", "007", "7", "Ü-产品", "P6"]
HISTORY = "query_tower.features.3={name: recent, kind: history, max_length: 4}"
CONFIGS = {
    "time": ["data.split.method=time", "data.split.test_fraction=0.1", HISTORY,
             "data.repeats=first"],
    "user_time": ["data.split.method=user_time", "data.split.test_fraction=0.1", HISTORY],
    "hash": ["data.split.method=hash", "data.split.test_fraction=0.15", HISTORY],
    "days": ["data.split.method=days", "data.split.eval_days=6", "data.split.test_days=4",
             HISTORY],
    "dates": ["data.split.method=dates", "data.split.eval_from=2023-12-10",
              "data.split.test_from=2023-12-16", HISTORY],
    "filtered": ["data.split.method=time", "data.split.test_fraction=0.1", HISTORY,
                 "data.filter=[{column: segment, op: '!=', value: ent}, "
                 "{column: quantity, op: '>=', value: 1}, {column: timestamp, op: '<', "
                 "value: '2023-12-20'}]", "data.weight=quantity", "data.weight_clip=0.5",
                 "data.candidates.missing=drop"],
    "time_window": ["data.split.method=time", "data.split.eval_fraction=0.15",
                    "data.split.window=2", HISTORY],
}


def purchases():
    """240 purchases by 12 customers over 40 days, no two of one customer at one moment
    (a table has no row order, so ties would be ordered differently from the file)."""
    rng = random.Random(7)
    start = 1_700_000_000  # 2023-11-14T22:13:20Z
    lines = [HEADER]
    for t in sorted(rng.sample(range(start, start + 40 * 86_400, 60), 240)):
        q = f"C{rng.randrange(12):02d}"
        lines.append(f"{q},{'smb' if q < 'C06' else 'ent'},north,{rng.choice(ITEMS)},{t},1")
    return "\n".join(lines) + "\n"


def configs(tmp_path, overrides):
    raw = copy.deepcopy(read_raw(os.path.join(ROOT, "examples", "b2b_demo.yaml")))
    files = [f"data.path={write(tmp_path / 'purchases.csv', purchases())}",
             f"data.candidates.path={write(tmp_path / 'products.csv', PRODUCTS)}",
             "data.timestamp=timestamp"]
    local = Config.from_dict(apply_overrides(copy.deepcopy(raw), files + overrides))
    cloud = Config.from_dict(apply_overrides(copy.deepcopy(raw), files + overrides + [
        "data.path=null", "data.bigquery=my-proj.shop.orders",
        "data.candidates.path=null", "data.candidates.bigquery=my-proj.shop.products"]))
    return local, cloud


def farm_fingerprint(text):
    """BigQuery's FARM_FINGERPRINT: FarmHash Fingerprint64 of the UTF-8 bytes, as a signed
    INT64 (pyfarmhash, in the lock; checked against BigQuery's documented examples below)."""
    import farmhash

    value = farmhash.fingerprint64(text)
    return value - (1 << 64) if value >= (1 << 63) else value


# BigQuery's RANGE_BUCKET(point, boundaries_array), as its reference defines it: "the
# 0-based position of the point's upper bound" in a sorted array: 0 below the first
# element, the array's length at or above the last, the index of the next larger value
# for a point in the array (RANGE_BUCKET(20, [0, 10, 20, 20, 40, 40]) is 4), 0 for an
# empty array, NULL for a NULL point. That is how many elements are <= the point.
# (APPROX_QUANTILES(x, n), n + 1 approximate boundaries, sqlglot reads back as DuckDB's
# APPROX_QUANTILE(x, [0, 1/n, ..., 1]), its own approximate quantiles.)
RANGE_BUCKET = ("CREATE MACRO range_bucket(point, boundaries) AS CASE WHEN point IS NULL "
                "THEN NULL ELSE len(list_filter(boundaries, e -> e <= point)) END")


def duckdb_with_tables(tmp_path):
    """DuckDB with my-proj.shop.orders and .products holding the CSVs' cells as text, and
    BigQuery's FARM_FINGERPRINT and RANGE_BUCKET (DuckDB has neither) as a function and a
    macro of the same definitions."""
    import duckdb

    con = duckdb.connect()
    con.create_function("farm_fingerprint", farm_fingerprint, ["VARCHAR"], "BIGINT")
    con.execute(RANGE_BUCKET)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("ATTACH ':memory:' AS \"my-proj\"")
    con.execute("CREATE SCHEMA \"my-proj\".shop")
    for name, path in (("orders", "purchases.csv"), ("products", "products.csv")):
        con.execute(f"CREATE TABLE \"my-proj\".shop.{name} AS SELECT * FROM read_csv(?, "
                    "header = true, all_varchar = true)", [str(tmp_path / path)])
    return con


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_each_bigquery_split_query_gives_the_local_split(tmp_path, method):
    from pipelines.data.sql.bigquery import split_queries, to_bigquery

    local, cloud = configs(tmp_path, CONFIGS[method])
    validate(local)
    validate(cloud)
    out = str(tmp_path / "out")
    report = prepare(local, out)
    con = duckdb_with_tables(tmp_path)
    queries = split_queries(cloud)
    assert sorted(queries) == sorted(d for d in os.listdir(out)
                                     if os.path.isdir(os.path.join(out, d)))
    for split, tree in queries.items():
        text = to_bigquery(tree)
        assert "`my-proj`.`shop`.`orders`" in text and "EXCEPT (" in text
        back = sqlglot.transpile(text, read="bigquery", write="duckdb")[0]
        got = sorted(con.execute(back).fetchall(), key=repr)
        want = sorted((tuple(r.values()) for r in rows_of(out, split)), key=repr)
        assert got == want, f"{split}: BigQuery's rows differ from the local ones"
        assert got, split
    assert report["rows"] + report.get("rows_after_window", 0) + report.get(
        "filter_dropped_rows", 0) == 240


PAYLOADS = ["a`; DROP TABLE x; --", "a\"b", "a'b", "a\nb", "a.b", "a b", "a\\`b", "a)b"]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("part", [0, 1, 2])
def test_injection_in_a_table_dataset_or_project_name_is_refused(tmp_path, payload, part):
    local, _ = configs(tmp_path, [])
    names = ["my-proj", "shop", "orders"]
    names[part] = payload
    raw = local.to_dict()
    raw["data"].update(path=None, bigquery=".".join(names))
    raw["data"]["candidates"].update(path=None, bigquery="my-proj.shop.products")
    with pytest.raises(ConfigError, match=r"data\.bigquery: .* is not a BigQuery table"):
        validate(Config.from_dict(raw))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_hostile_name_that_got_past_validation_is_still_one_quoted_name(payload):
    """Quoting does not rely on validation: each part is an identifier built by sqlglot."""
    from pipelines.data.sql.bigquery import raw, to_bigquery

    if "." in payload:  # BigQuery reads a quoted a.b as a path: refused even here
        with pytest.raises(ValueError, match="no other dot"):
            raw(f"my-proj.{payload}.orders", ["b"])
        return
    text = to_bigquery(raw(f"my-proj.{payload}.orders", [payload, "b"]))
    parsed = sqlglot.parse(text, read="bigquery")
    assert len(parsed) == 1
    tables = list(parsed[0].find_all(exp.Table))
    assert [(t.catalog, t.db, t.name) for t in tables] == [("my-proj", payload, "orders")]
    names = {c.name for c in parsed[0].find_all(exp.Column)}
    assert payload in names and not parsed[0].find(exp.Drop)


def test_hostile_column_names_reach_bigquery_only_as_quoted_names(tmp_path):
    from pipelines.data.sql.bigquery import split_queries, to_bigquery

    hostile = "a`; DROP TABLE x; --"
    local, cloud = configs(tmp_path, ["data.query_id=" + hostile])
    for split, tree in split_queries(cloud).items():
        parsed = sqlglot.parse(to_bigquery(tree), read="bigquery")
        assert len(parsed) == 1 and not parsed[0].find(exp.Drop), split
        assert hostile in {c.name for c in parsed[0].find_all(exp.Column)}, split


@pytest.mark.parametrize("overrides, key", [
    (["data.candidates.bigquery=my-proj.shop.products"], "data.candidates.path"),
    (["data.bigquery=my-proj.shop.orders"], "data.path"),
    (["data.path=null"], "data.path"),
    (["data.path=null", "data.bigquery=my-proj.shop.orders"], "data.candidates.path"),
])
def test_sources_are_one_file_or_one_table_each_on_one_side(tmp_path, overrides, key):
    local, _ = configs(tmp_path, [])
    cfg = Config.from_dict(apply_overrides(local.to_dict(), overrides))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg, check_data=False)


@pytest.mark.parametrize("bad, overrides, message", [
    ("C01,smb,north,,1700000000,1", [],
     "column 'product_id' (data.candidate_id) is empty; every interaction needs both ids"),
    ("C01,smb,north,P404,1700000000,1", [],
     "candidate 'P404' is not in the candidate table bigquery:my-proj.shop.products"),
    ("C01,smb,north,P1,yesterday,1", [],
     "column 'timestamp': cannot read timestamp 'yesterday'"),
    ("C01,smb,north,P1,1700000000,many", ["data.filter=[{column: quantity, op: '>', value: 0}]"],
     "column 'quantity': 'many' is not a number, but data.filter.0 compares the column with "
     "numbers"),
    ("C01,smb,north,P1,1700000000,", ["data.weight=quantity"],
     "column 'quantity' (data.weight) is empty; every interaction needs a weight"),
    ("", ["data.split.method=dates", "data.split.eval_from=2031-01-01"],
     "bigquery:my-proj.shop.orders: the dates split leaves no eval rows"),
])
def test_bad_data_stops_the_bigquery_query_with_the_local_message(tmp_path, bad, overrides,
                                                                   message):
    """The checks run inside each split's query (BigQuery's ERROR): no split is read from
    bad data; the message is the local path's, with the values of the offending row."""
    import duckdb

    from pipelines.data.sql.bigquery import split_queries, to_bigquery

    _, cloud = configs(tmp_path, overrides)
    if bad:
        with open(tmp_path / "purchases.csv", "a", encoding="utf-8") as handle:
            handle.write(bad + "\n")
    con = duckdb_with_tables(tmp_path)
    for split, tree in split_queries(cloud).items():
        back = sqlglot.transpile(to_bigquery(tree), read="bigquery", write="duckdb")[0]
        with pytest.raises(duckdb.Error, match=re.escape(message)):
            con.execute(back).fetchall()


def with_tables_of(query, body):
    """``body`` (DuckDB SQL) with ``query``'s WITH tables: one of the program's tables."""
    tree = sqlglot.parse_one(body, read="duckdb")
    tree.set("with_", query.args["with_"].copy())
    return tree


def tied_purchases():
    """300 purchases at whole hours of 5 days (about 3 a moment: ties at every cut), in no
    time order, by 12 customers."""
    rng = random.Random(11)
    lines = [HEADER]
    for _ in range(300):
        t = 1_700_006_400 + 3600 * rng.randrange(120)
        lines.append(f"C{rng.randrange(12):02d},smb,north,{rng.choice(ITEMS)},{t},1")
    return "\n".join(lines) + "\n"


# What APPROX_QUANTILES returns only decides the buckets, never the cut: the reading-back's
# own approximation (DuckDB's APPROX_QUANTILE), and boundaries as bad as they come.
BOUNDARIES = {"duckdb": None, "skewed": [round((i / 20) ** 4, 4) for i in range(21)],
              "inside": [0.3, 0.31, 0.7], "one": [0.5], "unsorted": [0.9, 0.1, 0.5]}


@pytest.mark.parametrize("data", ["distinct", "tied"])
@pytest.mark.parametrize("boundaries", sorted(BOUNDARIES))
@pytest.mark.parametrize("method", ["time", "time_window"])
def test_the_bigquery_time_cut_is_the_local_cut_exactly(tmp_path, method, boundaries, data):
    """The cuts from APPROX_QUANTILES buckets (pipelines/data/sql/cuts.py) are the local
    split's cuts (one sort of all rows by DuckDB), to the second, ties included."""
    from pipelines.data.sql.bigquery import split_queries, to_bigquery

    local, cloud = configs(tmp_path, CONFIGS[method])
    if data == "tied":
        write(tmp_path / "purchases.csv", tied_purchases())
    report = prepare(local, str(tmp_path / "out"))
    want = (report["time_cut"], report.get("test_cut", report.get("window_end")))
    assert None not in want  # both cuts: test (time) and the window's end (time_window)
    query = with_tables_of(split_queries(cloud)["train"], "SELECT time_cut, test_cut FROM cuts")
    back = sqlglot.parse_one(sqlglot.transpile(to_bigquery(query), read="bigquery",
                                               write="duckdb")[0], read="duckdb")
    [quantiles] = list(back.find_all(exp.ApproxQuantile))  # APPROX_QUANTILES, read back
    if BOUNDARIES[boundaries] is not None:
        quantiles.set("quantile", exp.Array(expressions=[
            exp.Literal.number(q) for q in BOUNDARIES[boundaries]]))
    got = duckdb_with_tables(tmp_path).execute(back.sql("duckdb")).fetchall()
    assert got == [want]


def evaluations(query, name):
    """How many times ``query`` evaluates its WITH table ``name``: BigQuery materializes no
    non-recursive WITH table, so each reference is evaluated again (and so is each table
    that references it, at each of its own references)."""
    tables = {cte.alias: cte.this for cte in query.args["with_"].expressions}
    memo = {}

    def count(tree):
        total = 0
        for table in tree.find_all(exp.Table):
            if table.args.get("db") or table.name not in tables:
                continue
            total += 1 if table.name == name else of(table.name)
        return total

    def of(table):
        if table not in memo:
            memo[table] = count(tables[table])
        return memo[table]

    body = query.copy()
    body.set("with_", None)
    return count(body)


def test_each_query_evaluates_rows_a_few_times_not_over_a_hundred(tmp_path):
    """``rows`` (the interactions joined with the candidates) per query, counted with every
    WITH table inlined as BigQuery evaluates them: the time split with a test split read
    it 120 times in train's query and 135 in eval_queries' before the cut was one joined
    table (cuts.py) and the guard's emptiness checks one pass over ``final``; now 10 and
    15: ``ranked`` reads ``rows`` once plus 4 times for the cuts (quantiles, buckets
    counted, the boundary bucket, each with its own read of the quantiles), and is read
    by the split's output and the guard (2), and by eval_queries' two reads of ``final``
    (3)."""
    from pipelines.data.sql.bigquery import split_queries

    got = {}
    for method in ("time", "hash", "days"):
        _, cloud = configs(tmp_path, CONFIGS[method])
        got[method] = {split: evaluations(q, "rows") for split, q in split_queries(cloud).items()}
    assert got["time"] == {"train": 10, "eval": 10, "test": 10, "eval_queries": 15,
                           "test_queries": 15, "catalog": 5}
    assert got["days"]["train"] == 4 and got["days"]["eval_queries"] == 6  # the last day: 1
    # a hash split's histories read ranked once per split rank (3) and once joined (1)
    assert got["hash"]["train"] == 8 and got["hash"]["eval_queries"] == 12
