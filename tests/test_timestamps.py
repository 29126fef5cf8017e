"""Numeric timestamps: plausible epoch times in the declared unit (data.timestamp_unit), or
one error naming the column and the rows; on DuckDB and in the BigQuery queries alike."""
import os
import re

import pytest
import sqlglot

from pipelines.cli.main import main
from pipelines.config.schema import Config, apply_overrides
from pipelines.data.prepare import DataError, prepare
from test_bigquery_sql import configs, duckdb_with_tables, purchases
from test_prepare import PRODUCTS, config, rows_of

HEAD = "customer_id,segment,region,product_id,timestamp,quantity\n"
SECONDS = [1_700_000_000 + i * 3600 for i in range(40)]  # from 2023-11-14, hourly


def rows(times):
    return HEAD + "".join(f"C{i % 4},smb,north,P{i % 3 + 1},{t},1\n" for i, t in
                          enumerate(times))


def prepare_cli(tmp_path, capsys, text, overrides=()):
    cfg = config(tmp_path, text, products=PRODUCTS,
                 overrides=["data.timestamp=timestamp"] + list(overrides))
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json(), encoding="utf-8")
    code = main(["prepare", "--config", str(path), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    return code, captured.err


def test_milliseconds_read_as_seconds_are_an_error_naming_the_column_and_rows(tmp_path, capsys):
    """Every time in ms: read as seconds it is the year ~55,800, and the time cut with it."""
    code, err = prepare_cli(tmp_path, capsys, rows([t * 1000 for t in SECONDS]))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert ("purchases.csv row 2, column 'timestamp': '1700000000000' is not a plausible time "
            "in seconds since 1970 (years 1900 to 2500); 40 of the column's 40 numbers are not "
            "(rows 2 to 41): if the column counts milliseconds or microseconds, set "
            "data.timestamp_unit") in err, err
    assert not (tmp_path / "out").exists()


def test_a_column_mixing_seconds_and_milliseconds_is_an_error(tmp_path, capsys):
    """The mixed file used to split into an eval made of the millisecond rows only."""
    times = [t * 1000 if i in (11, 30) else t for i, t in enumerate(SECONDS)]
    code, err = prepare_cli(tmp_path, capsys, rows(times))
    assert code == 2, err
    assert "row 13, column 'timestamp': '1700039600000' is not a plausible time" in err, err
    assert "2 of the column's 40 numbers are not (rows 13 to 32)" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("unit, scale", [("ms", 1000), ("us", 1_000_000)])
def test_a_declared_unit_gives_the_same_preparation_as_seconds(tmp_path, capsys, unit, scale):
    """ms (with a fraction of a second kept off) and us files prepare exactly like the
    seconds file: the same rows, times in epoch seconds, the same split."""
    os.makedirs(tmp_path / "s")
    os.makedirs(tmp_path / unit)
    code, err = prepare_cli(tmp_path / "s", capsys, rows(SECONDS))
    assert code == 0, err
    code, err = prepare_cli(tmp_path / unit, capsys,
                            rows([t * scale + scale // 3 for t in SECONDS]),
                            [f"data.timestamp_unit={unit}"])
    assert code == 0, err
    for split in ("train", "eval", "eval_queries", "catalog"):
        assert rows_of(str(tmp_path / unit / "out"), split) == rows_of(
            str(tmp_path / "s" / "out"), split), split
    assert {r["timestamp"] for r in rows_of(str(tmp_path / unit / "out"), "train")} <= set(SECONDS)


def test_iso_times_are_read_as_written_whatever_the_unit(tmp_path, capsys):
    import datetime

    iso = [datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ") for t in SECONDS]
    os.makedirs(tmp_path / "s")
    os.makedirs(tmp_path / "iso")
    assert prepare_cli(tmp_path / "s", capsys, rows(SECONDS))[0] == 0
    code, err = prepare_cli(tmp_path / "iso", capsys, rows(iso), ["data.timestamp_unit=ms"])
    assert code == 0, err
    for split in ("train", "eval"):
        assert rows_of(str(tmp_path / "iso" / "out"), split) == rows_of(
            str(tmp_path / "s" / "out"), split), split


def test_a_unit_that_is_not_s_ms_or_us_is_refused_by_name(tmp_path, capsys):
    code, err = prepare_cli(tmp_path, capsys, rows(SECONDS), ["data.timestamp_unit=ns"])
    assert code == 2 and "data.timestamp_unit: 'ns': must be one of s, ms, us" in err, err


def test_bigquery_queries_stop_on_milliseconds_with_the_local_message(tmp_path):
    """The same check in each split's BigQuery query (run here on DuckDB, read back from
    BigQuery's dialect), and with data.timestamp_unit: ms the splits equal the local ones."""
    import duckdb

    from pipelines.data.sql.bigquery import split_queries, to_bigquery

    text = purchases()
    in_ms = re.sub(r",(\d{10}),", lambda m: f",{int(m.group(1)) * 1000 + 7},", text)
    _, cloud = configs(tmp_path, ["data.split.method=time"])
    (tmp_path / "purchases.csv").write_text(in_ms, encoding="utf-8")
    con = duckdb_with_tables(tmp_path)
    for split, tree in split_queries(cloud).items():
        back = sqlglot.transpile(to_bigquery(tree), read="bigquery", write="duckdb")[0]
        with pytest.raises(duckdb.Error, match=r"column 'timestamp': '\d{13}' is not a "
                                               r"plausible time in seconds since 1970"):
            con.execute(back).fetchall()
    local, cloud = (Config.from_dict(apply_overrides(c.to_dict(), ["data.timestamp_unit=ms"]))
                    for c in configs(tmp_path, ["data.split.method=time"]))
    (tmp_path / "purchases.csv").write_text(in_ms, encoding="utf-8")
    out = str(tmp_path / "out")
    prepare(local, out)
    con = duckdb_with_tables(tmp_path)
    for split, tree in split_queries(cloud).items():
        back = sqlglot.transpile(to_bigquery(tree), read="bigquery", write="duckdb")[0]
        got = sorted(con.execute(back).fetchall(), key=repr)
        assert got == sorted((tuple(r.values()) for r in rows_of(out, split)), key=repr), split


def test_recommend_reads_histories_in_the_declared_unit(tmp_path):
    """`twotower recommend` builds a query's time input from its history file in the same
    unit (an int64 of epoch seconds), and refuses a history in another unit by row."""
    from pipelines.recommend import query_histories, serving_values

    cfg = Config.from_dict({
        "data": {"path": "x.csv", "query_id": "q", "candidate_id": "i", "timestamp": "ts",
                 "timestamp_unit": "ms"},
        "query_tower": {"features": [{"name": "q", "column": "q", "kind": "id"},
                                     {"name": "when", "column": "ts", "kind": "timestamp"}]},
        "candidate_tower": {"features": [{"name": "i", "column": "i", "kind": "id"}]}})
    path = tmp_path / "x.csv"
    path.write_text("q,i,ts\na,i1,1700000000500\na,i2,1700000100999\n")
    described = [{"input": "query_id", "column": "q", "dtype": "string"},
                 {"input": "when", "column": "ts", "dtype": "int64"}]
    state = query_histories(cfg, str(path), {"a"})["a"]
    # newest first (the history data.timestamp adds by default, 20 long)
    assert state["items"] == ["i2", "i1"] and state["seen"] == {"i1", "i2"}
    assert serving_values(cfg, described, "a", state)["when"] == 1_700_000_100
    path.write_text("q,i,ts\na,i1,1700000000\n")  # seconds in a column declared us: 1970
    with pytest.raises(DataError, match=r"x.csv row 2, column 'ts': '1700000000' is not a "
                                        r"plausible time in microseconds"):
        query_histories(Config.from_dict(apply_overrides(cfg.to_dict(), [
            "data.timestamp_unit=us"])), str(path), {"a"})
