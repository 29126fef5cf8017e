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

from pipelines.config import Config, ConfigError, apply_overrides, read_raw
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


def duckdb_with_tables(tmp_path):
    """DuckDB with my-proj.shop.orders and .products holding the CSVs' cells as text, and
    BigQuery's FARM_FINGERPRINT (DuckDB has none) as a function of the same definition."""
    import duckdb

    con = duckdb.connect()
    con.create_function("farm_fingerprint", farm_fingerprint, ["VARCHAR"], "BIGINT")
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
