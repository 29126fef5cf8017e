"""BigQuery's own SQL: every function the BigQuery text calls is one BigQuery documents.

The list (`pipelines/data/sql/googlesql_functions.txt`) is BigQuery's function
reference, its conditional expressions and its reserved keywords, committed as
data with the source addresses. Each split query of every example config, with
its sources on BigQuery and every split method, is rendered and its calls are
read with sqlglot's BigQuery tokenizer: a function that exists only in DuckDB
(the field failure: `TIME_TO_UNIX` inside `IS_INF`, 8 times per spec) fails here.
The row keys that replaced the global `ROW_NUMBER() OVER (ORDER BY ...)` are
checked against FarmHash computed here and BigQuery's documented examples.
"""
import copy
import glob
import os

import pytest
import sqlglot
from sqlglot import exp

from pipelines.config.schema import Config, apply_overrides, read_raw
from pipelines.data.sql import googlesql
from pipelines.data.sql.template import fill, render
from pipelines.validate import validate
from test_bigquery_sql import configs, duckdb_with_tables, farm_fingerprint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.yaml")))
SPLITS = {
    "time": ["data.split.method=time", "data.split.test_fraction=0.1", "data.repeats=first"],
    "user_time": ["data.split.method=user_time", "data.split.test_fraction=0.1"],
    "hash": ["data.split.method=hash", "data.split.test_fraction=0.1"],
    "days": ["data.split.method=days", "data.split.eval_days=7", "data.split.test_days=7"],
    "dates": ["data.split.method=dates", "data.split.eval_from=2024-03-01",
              "data.split.test_from=2024-03-15"],
    "auto": ["data.split.method=auto", "data.split.eval_fraction=0.2"],
}


def on_bigquery(path, split):
    raw = copy.deepcopy(read_raw(path))
    cfg = Config.from_dict(apply_overrides(raw, [
        "data.path=null", "data.bigquery=my-proj.shop.orders", "data.candidates.path=null",
        "data.candidates.bigquery=my-proj.shop.products"] + SPLITS[split]))
    validate(cfg, check_data=False)
    return cfg


def test_the_list_holds_bigquery_s_names_and_not_duckdb_s():
    s = googlesql.sections()
    assert len(s["functions"]) == 398 and len(s["conditionals"]) == 5
    assert len(s["keywords"]) == 95
    for name in ("FARM_FINGERPRINT", "IS_INF", "IS_NAN", "UNIX_MICROS", "MIN_BY", "ERROR",
                 "TO_HEX", "SHA256", "REGEXP_CONTAINS", "NET.HOST"):
        assert name in s["functions"], name
    for duckdb_only in ("EPOCH", "ISFINITE", "TIME_TO_UNIX", "REGEXP_MATCHES", "ARG_MIN",
                        "STRING_SPLIT", "LIST_SORT", "TO_JSON_STRING_X"):
        assert duckdb_only not in googlesql.known(), duckdb_only


def test_calls_are_read_by_the_tokenizer_not_by_pattern():
    text = ("SELECT f(x), 'g(' AS s, `h`(y), NET.HOST(u), a + (b), CAST(c AS STRING), "
            "x IN (SELECT 1) /* k( */ FROM t")
    assert googlesql.calls(text) == ["F", "NET.HOST", "CAST"]  # IN ( is grammar
    assert googlesql.unknown(text) == ["F"]
    assert googlesql.unknown("SELECT TIME_TO_UNIX(t), IS_INF(x)") == ["TIME_TO_UNIX"]


def test_the_rewrite_reaches_a_node_inside_a_replaced_one():
    """isfinite(epoch(t)): isfinite becomes IS_INF/IS_NAN, and the epoch inside them is
    rewritten too (sqlglot's transform stopped at the replaced node: TIME_TO_UNIX)."""
    tree = fill("SELECT isfinite(epoch(TRY_CAST(x AS TIMESTAMPTZ))) AS ok, "
                "lower(sha256(isfinite(epoch(y))::VARCHAR)) AS h FROM t")
    text = render(tree, "bigquery")
    assert "TIME_TO_UNIX" not in text.upper() and "ISFINITE" not in text.upper()
    assert googlesql.unknown(text) == []
    assert text.count("UNIX_MICROS(") == 4 and text.count("IS_INF(") == 2


def test_to_bigquery_refuses_a_function_bigquery_does_not_have():
    from pipelines.data.sql.bigquery import to_bigquery

    with pytest.raises(ValueError, match=r"calls BAR, which BigQuery does not have"):
        to_bigquery(fill("SELECT bar(x) FROM t"))


@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("example", [os.path.basename(p) for p in EXAMPLES])
def test_every_function_each_split_query_calls_is_documented(example, split):
    from pipelines.data.sql.bigquery import program_text, split_queries

    cfg = on_bigquery(os.path.join(ROOT, "examples", example), split)
    for name, tree in split_queries(cfg).items():
        text = render(tree, "bigquery")  # not to_bigquery: its own check must not hide this
        assert googlesql.unknown(text) == [], f"{example} {split} {name}"
        assert googlesql.syntax_problems(text) == [], f"{example} {split} {name}"
        assert "IS_INF(" in text and "FARM_FINGERPRINT(" in text
    if split == "time":  # to_bigquery's own checks pass (once per example: they parse)
        assert googlesql.unknown(program_text(cfg)) == []


def _windows(tree):
    return [w for w in tree.find_all(exp.Window) if not w.args.get("partition_by")
            and w.args.get("order")]


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_no_query_numbers_all_rows_on_one_worker(split):
    """No unpartitioned ordered window over the rows, for any split method: the time split's
    cut (the k-th smallest time) has one only over the per-bucket counts, at most
    QUANTILES + 2 rows (pipelines/data/sql/cuts.py), never ROW_NUMBER over all rows."""
    from pipelines.data.sql.bigquery import split_queries, to_bigquery
    from pipelines.data.sql.cuts import QUANTILES

    cfg = on_bigquery(os.path.join(ROOT, "examples", "b2b_demo.yaml"), split)
    for name, tree in split_queries(cfg).items():
        back = sqlglot.parse_one(to_bigquery(tree), read="bigquery")
        for window in _windows(back):
            cte = window.find_ancestor(exp.CTE)
            assert cte is not None and cte.alias == "_tcount", (name, window.sql())
            assert split in ("time", "auto") and window.this.sql() == "SUM(_c)", window.sql()
            counts = cte.this.args["from_"].this.this  # what the window reads: rows per bucket
            assert [g.sql() for g in counts.args["group"].expressions] == ["_b"]
            [bucket] = [c for c in back.find_all(exp.CTE) if c.alias == "_tbucket"]
            assert "RANGE_BUCKET" in bucket.sql("bigquery")
            assert f"APPROX_QUANTILES(_t, {QUANTILES})" in back.sql("bigquery")
        assert "ROW_NUMBER() OVER (ORDER BY" not in to_bigquery(tree).upper()


def test_fingerprint_on_duckdb_is_bigquery_s_farm_fingerprint():
    """BigQuery's documented FARM_FINGERPRINT example (hash functions page), run on DuckDB
    with the function the tests register: the documented values come back."""
    import duckdb

    con = duckdb.connect()
    con.create_function("farm_fingerprint", farm_fingerprint, ["VARCHAR"], "BIGINT")
    example = """WITH example AS (
        SELECT 1 AS x, "foo" AS y, true AS z UNION ALL
        SELECT 2 AS x, "apple" AS y, false AS z UNION ALL
        SELECT 3 AS x, "" AS y, true AS z)
      SELECT x, FARM_FINGERPRINT(CONCAT(CAST(x AS STRING), y, CAST(z AS STRING))) FROM example
      ORDER BY x"""
    back = sqlglot.transpile(example, read="bigquery", write="duckdb")[0]
    assert con.execute(back).fetchall() == [(1, -1541654101129638711),
                                            (2, 2794438866806483259),
                                            (3, -4880158226897771312)]


def test_a_row_s_key_is_the_fingerprint_of_its_cells_and_repeat(tmp_path):
    """The key of a row, computed by hand: FarmHash of '<repeat>:' and each cell as
    '<length>:<cell>' ('-' for NULL); two identical rows get keys 1 and 2 apart."""
    from pipelines.data.sql.bigquery import raw, to_bigquery

    import duckdb

    con = duckdb.connect()
    con.create_function("farm_fingerprint", farm_fingerprint, ["VARCHAR"], "BIGINT")
    con.execute("ATTACH ':memory:' AS p")
    con.execute("CREATE SCHEMA p.d")
    con.execute("CREATE TABLE p.d.t AS SELECT * FROM (VALUES ('Ü-产品', 'a:b'), "
                "('Ü-产品', 'a:b'), ('x', NULL)) AS v(c1, c2)")
    text = to_bigquery(raw("p.d.t", ["c1", "c2"]))
    back = sqlglot.transpile(text, read="bigquery", write="duckdb")[0]
    got = sorted(con.execute(back).fetchall(), key=repr)
    want = sorted([("Ü-产品", "a:b", farm_fingerprint("1:4:Ü-产品3:a:b")),
                   ("Ü-产品", "a:b", farm_fingerprint("2:4:Ü-产品3:a:b")),
                   ("x", None, farm_fingerprint("1:1:x-"))], key=repr)
    assert got == want


def test_two_rows_with_one_key_stop_the_query(tmp_path):
    """A key collision (forced here: every row fingerprinted to 7) is refused with one
    line, never two rows taken for one."""
    import duckdb

    from pipelines.data.sql.bigquery import split_queries, to_bigquery

    _, cloud = configs(tmp_path, ["data.split.method=hash"])
    con = duckdb_with_tables(tmp_path)
    con.remove_function("farm_fingerprint")
    con.create_function("farm_fingerprint", lambda text: 7, ["VARCHAR"], "BIGINT")
    tree = split_queries(cloud)["train"]
    back = sqlglot.transpile(to_bigquery(tree), read="bigquery", write="duckdb")[0]
    with pytest.raises(duckdb.Error, match="bigquery:my-proj.shop.products: 6 different rows "
                                           "have the same key 7"):
        con.execute(back).fetchall()


def test_reserved_keywords_are_not_functions():
    """DuckDB's HASH(x) and CONTAINS(a, b) are BigQuery keywords, not functions: refused;
    the keywords that stand before '(' as grammar are not calls."""
    assert googlesql.unknown("SELECT HASH(x), CONTAINS(a, 'b') FROM t") == ["CONTAINS", "HASH"]
    assert googlesql.grammar() <= googlesql.sections()["keywords"]
    assert not {"HASH", "CONTAINS", "EXCLUDE", "RANGE"} & googlesql.grammar()
    text = ("WITH a AS (SELECT 1 AS x) SELECT * EXCEPT (x) FROM (SELECT x FROM a) "
            "WHERE x IN (1) AND NOT (x = 2) OR EXISTS (SELECT 1)")
    assert googlesql.calls(text) == []


@pytest.mark.parametrize("text, found", [
    ("SELECT x::INT64 FROM t", "a `::` cast: BigQuery writes CAST(x AS type) (line 1, column 10)"),
    ("SELECT * EXCLUDE (y) FROM t", "`* EXCLUDE (...)`: BigQuery writes * EXCEPT (...)"),
    ("SELECT * FROM t USING SAMPLE 10%", "USING SAMPLE: BigQuery writes TABLESAMPLE SYSTEM"),
    ("SELECT a // b FROM t", "`a // b` (integer division): BigQuery writes DIV(a, b)"),
    ("SELECT a ** 2 FROM t", "`a ** b` (a power): BigQuery writes POW(a, b)"),
    ("SELECT {'a': 1} AS s", "a `{...}` struct literal: BigQuery writes STRUCT(...)"),
    ("SELECT l[1] FROM t", "a `x[i]` subscript: BigQuery writes x[OFFSET(i)]"),
])
def test_duckdb_only_syntax_is_refused(text, found):
    wrong = googlesql.syntax_problems(text)
    assert wrong and wrong[0].startswith(found), wrong


def test_to_bigquery_refuses_text_with_duckdb_syntax(monkeypatch):
    """The check runs on the text to_bigquery returns (the rewrite is stood in for by one
    that leaves a `::` cast)."""
    from pipelines.data.sql import bigquery

    monkeypatch.setattr(bigquery, "render", lambda tree, dialect, pretty=False:
                        "SELECT x::INT64 FROM t")
    with pytest.raises(ValueError, match="the BigQuery query has DuckDB syntax: a `::` cast"):
        bigquery.to_bigquery(fill("SELECT x FROM t"))


def test_bigquery_s_own_syntax_passes_the_syntax_check():
    for text in ("SELECT [1, 2] AS l, l[OFFSET(0)], l[SAFE_ORDINAL(1)], 'x::y', DIV(a, 2), "
                 "POW(a, 2), COUNT(*) * 2, a / b FROM t TABLESAMPLE SYSTEM (10 PERCENT)",
                 "SELECT * EXCEPT (y) FROM t -- x::INT, a // b"):
        assert googlesql.syntax_problems(text) == [], text
