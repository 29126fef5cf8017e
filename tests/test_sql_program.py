"""The preparation SQL program: trees not text, hostile names, the BigQuery rendering, the CLI."""
import os
import subprocess
import sys

import pytest
import sqlglot

from pipelines.data.prepare import prepare
from pipelines.data.sql.duck import program_text
from pipelines.data.sql.template import fill, ident, lit
from test_prepare import TEN, config, csv_of, rows_of

HOSTILE = 'a"; DROP TABLE x; --'
QUOTE = "it's `here`"


def hostile_config(tmp_path, overrides=()):
    """The demo config whose query id and segment columns have hostile names."""
    header = f'"{HOSTILE.replace(chr(34), chr(34) * 2)}",{QUOTE},region,product_id,timestamp,q'
    text = header + "\n" + "".join(",".join(r) + "\n" for r in TEN)
    return config(tmp_path, csv_of(TEN), overrides=[
        f"data.path={tmp_path / 'hostile.csv'}", f"data.query_id={HOSTILE!r}",
        f"query_tower.features.0.column={HOSTILE!r}",
        f"query_tower.features.1.column={QUOTE!r}"] + list(overrides)), text


def test_a_template_parameter_is_a_quoted_identifier_or_a_literal():
    tree = fill("SELECT P_col FROM t WHERE P_col = P_value", P_col=ident(HOSTILE),
                P_value=lit("x' OR '1'='1"))
    assert tree.sql(dialect="duckdb") == (
        'SELECT "a""; DROP TABLE x; --" FROM t WHERE "a""; DROP TABLE x; --" = '
        "'x'' OR ''1''=''1'")
    with pytest.raises(KeyError, match="P_other"):
        fill("SELECT P_other FROM t")


@pytest.mark.parametrize("method", ["time", "user_time", "hash"])
def test_hostile_column_names_are_only_quoted_names(tmp_path, method):
    cfg, text = hostile_config(tmp_path, [f"data.split.method={method}",
                                          "query_tower.features.3={name: recent, kind: history}"])
    with open(tmp_path / "hostile.csv", "w", encoding="utf-8") as handle:
        handle.write(text)
    out = str(tmp_path / "out")
    report = prepare(cfg, out)
    assert report["rows"] == 10
    train = rows_of(out, "train")
    assert {r[HOSTILE] for r in train} <= {"C1", "C2", "C3", "C4"}
    assert {r[QUOTE] for r in train} <= {"smb", "enterprise", "mid-market"}
    program = open(os.path.join(out, "prepare.sql"), encoding="utf-8").read()
    for dialect in ("duckdb", "bigquery"):
        for statement in sqlglot.parse(program_text(cfg, dialect), read=dialect):
            names = {i.name for i in statement.find_all(sqlglot.exp.Identifier)}
            quoted = {i.name for i in statement.find_all(sqlglot.exp.Identifier) if i.quoted}
            assert HOSTILE not in names - quoted  # never a bare name
    assert "DROP TABLE x" not in program.replace('"a""; DROP TABLE x; --"', "")


@pytest.mark.parametrize("overrides", [
    [], ["data.split.method=user_time", "data.split.test_fraction=0.1"],
    ["data.split.method=hash", "data.repeats=first"], ["data.candidates=null"],
    ["query_tower.features.3={name: recent, kind: history, max_length: 3}"]])
def test_the_bigquery_program_parses_and_round_trips(tmp_path, overrides):
    cfg = config(tmp_path, csv_of(TEN), products=None if "data.candidates=null" in overrides
                 else "product_id,category,price\nP1,tools,10.5\nP2,paper,2.25\nP3,ink,7\n",
                 overrides=[o for o in overrides if o != "data.candidates=null"] + (
                     ["data.candidates=null"] if "data.candidates=null" in overrides else []))
    text = program_text(cfg, "bigquery")
    statements = sqlglot.parse(text, read="bigquery")
    assert len(statements) >= 8  # tables, then train, eval, queries, catalog
    for statement in statements:
        again = sqlglot.parse_one(statement.sql(dialect="bigquery"), read="bigquery")
        assert again == statement
    assert program_text(cfg, "bigquery") == text  # deterministic


def test_prepare_cli_prints_and_runs_the_program(tmp_path):
    cfg = config(tmp_path, csv_of(TEN))
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json(), encoding="utf-8")
    cli = [sys.executable, "-m", "pipelines", "prepare", "--config", str(path)]
    printed = subprocess.run(cli + ["--print-sql"], capture_output=True, text=True)
    assert printed.returncode == 0, printed.stderr
    assert "CREATE TEMPORARY TABLE ranked AS" in printed.stdout
    out = tmp_path / "input"
    ran = subprocess.run(cli + ["--out", str(out)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert "prepared 10 interactions: 8 train, 2 eval (time split)" in ran.stdout
    assert (out / "prepare.sql").read_text(encoding="utf-8") == printed.stdout
    refused = subprocess.run(cli + ["--engine", "bigquery"], capture_output=True, text=True)
    assert refused.returncode == 2 and "--print-sql" in refused.stderr


@pytest.mark.parametrize("overrides", [[], ["data.split.test_fraction=0.1"]])
def test_every_output_has_every_prepared_column_in_order_and_typed(tmp_path, overrides):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.data.columns import column_types

    cfg = config(tmp_path, csv_of(TEN * 3), overrides=[
        "query_tower.features.3={name: recent, kind: history}"] + overrides)
    out = tmp_path / "out"
    prepare(cfg, str(out))
    types = column_types(cfg)
    arrow = {"string": pa.string(), "float": pa.float64(), "int": pa.int64()}
    splits = [d for d in os.listdir(out) if (out / d / "data.parquet").exists()]
    assert len(splits) == (6 if overrides else 4)
    for split in splits:
        schema = pq.read_schema(out / split / "data.parquet")
        assert schema.names == list(types), split
        assert [schema.field(n).type for n in types] == [arrow[k] for k in types.values()], split


def test_the_bigquery_hash_split_hexes_sha256_like_duckdb(tmp_path):
    cfg = config(tmp_path, csv_of(TEN), overrides=["data.split.method=hash"])
    text = "".join(program_text(cfg, "bigquery").split())  # without the pretty-printing
    assert "TO_HEX(SHA256(" in text
    assert "ISFINITE" not in text.upper() and "TIME_TO_UNIX" not in text
    assert "UNIX_MICROS(" in text
    assert "SHA256(" in program_text(cfg) and "TO_HEX" not in program_text(cfg)
    from pipelines.data.sql import checks
    from pipelines.data.sql.program import plan
    from pipelines.data.sql.template import render

    finite = [render(q, "bigquery") for q, _ in checks.candidate_checks(plan(cfg))]
    assert any("NOT IS_INF(" in q and "NOT IS_NAN(" in q for q in finite)


def test_an_unreadable_csv_row_is_named(tmp_path):
    from pipelines.data.csvfile import DataError

    text = csv_of(TEN) + 'C9,smb,north,"P1,3,1\n'  # an unterminated quote on row 12
    with pytest.raises(DataError, match=r"purchases.csv row 12: not readable as CSV"):
        prepare(config(tmp_path, text), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
