"""Real exports (issue 30): data.filter, data.weight, data.candidates.missing, and validate
reading the rows with prepare's checks. Small CSVs; DuckDB runs the real program."""
import json
import os
import re

import pytest

from pipelines.cli.main import main
from pipelines.config.schema import Config, ConfigError, apply_overrides
from pipelines.data.prepare import DataError, prepare
from pipelines.validate import validate
from test_prepare import HEADER, config, rows_of, write

HISTORY = "query_tower.features.3={name: recent, kind: history, max_length: 5}"
# (customer, product, time, quantity): three returns or zero rows (t3, t5, t10)
LOG = [("C1", "P1", 1, "2"), ("C2", "P2", 2, "1"), ("C1", "P2", 3, "-1"), ("C3", "P3", 4, "1"),
       ("C2", "P1", 5, "0"), ("C1", "P3", 6, "3"), ("C3", "P1", 7, "1"), ("C2", "P3", 8, "1"),
       ("C4", "P2", 9, "1"), ("C1", "P1", 10, "-2")]


def log_csv(rows=LOG, region="north"):
    return HEADER + "\n" + "".join(f"{q},smb,{region},{i},{t},{n}\n" for q, i, t, n in rows)


def cfg_of(tmp_path, rows=LOG, overrides=(), products=None):
    kwargs = {} if products is None else {"products": products}
    cfg = config(tmp_path, log_csv(rows), overrides=[HISTORY] + list(overrides), **kwargs)
    validate(cfg)
    return cfg


def times(out, split):
    return sorted(r["timestamp"] for r in rows_of(out, split))


POSITIVE = "data.filter=[{column: quantity, op: '>', value: 0}]"


def test_a_filter_drops_returns_before_the_split_so_no_split_or_history_sees_them(tmp_path):
    """quantity > 0 keeps 7 of the 10 rows (t3, t5, t10 dropped). The time cut is then the
    int(7 * 0.8) = 5th smallest kept time (0-based) of [1, 2, 4, 6, 7, 8, 9]: 8. C1's
    history at t6 is P1 alone (its return of P2 at t3 is gone); C2's eval state is P2
    alone (its zero row of P1 at t5 is gone)."""
    out = str(tmp_path / "out")
    report = prepare(cfg_of(tmp_path, overrides=[POSITIVE]), out)
    assert times(out, "train") == [1, 2, 4, 6, 7] and times(out, "eval") == [8, 9]
    assert report["filter_dropped_rows"] == 3 and report["rows"] == 7
    assert report["time_cut"] == 8.0
    history = {(r["customer_id"], r["timestamp"]): r["__twotower_history_recent"]
               for r in rows_of(out, "train")}
    assert history[("C1", 6)] == "P1"
    states = {r["customer_id"]: r["__twotower_history_recent"]
              for r in rows_of(out, "eval_queries")}
    assert states == {"C2": "P2"}  # C4 (t9) has no earlier row: cold
    assert (report["eval_queries"], report["eval_cold_queries"]) == (1, 1)
    saved = json.loads(open(os.path.join(out, "prepare_report.json"), encoding="utf-8").read())
    assert saved["filter_dropped_rows"] == 3
    unfiltered = prepare(cfg_of(tmp_path), str(tmp_path / "all"))
    assert "filter_dropped_rows" not in unfiltered and unfiltered["rows"] == 10


@pytest.mark.parametrize("condition, kept", [
    ("{column: quantity, op: '>=', value: 1}", [1, 2, 4, 6, 7, 8, 9]),
    ("{column: quantity, op: in, value: [0, -1]}", [3, 5]),
    ("{column: quantity, op: not_in, value: [0, -1, -2]}", [1, 2, 4, 6, 7, 8, 9]),
    ("{column: quantity, op: '!=', value: 1}", [1, 3, 5, 6, 10]),  # the empty t11 is not kept
    ("{column: quantity, op: is_null}", [11]),
    ("{column: quantity, op: not_null}", list(range(1, 11))),
    ("{column: product_id, op: '=', value: P1}", [1, 5, 7, 10]),
    ("{column: customer_id, op: not_in, value: [C1, C2]}", [4, 7, 9, 11]),
    ("{column: timestamp, op: '<', value: '1970-01-01T00:00:05'}", [1, 2, 3, 4]),
    ("{column: timestamp, op: '>=', value: 9}", [9, 10, 11]),
])
def test_each_operator_keeps_the_rows_it_names_and_an_empty_cell_meets_is_null_only(
        tmp_path, condition, kept):
    """The kept rows (``src``, the table every later step reads), by time."""
    from pipelines.data.sql import duck
    from pipelines.data.sql.program import plan
    from pipelines.data.sql.template import fill

    rows = LOG + [("C3", "P2", 11, "")]  # quantity empty
    cfg = cfg_of(tmp_path, rows, [f"data.filter=[{condition}]"])
    runner = duck.Runner(str(tmp_path / "spill"))
    found = duck._tables(runner, plan(cfg), last="src")
    lines = [r[0] for r in runner.execute(fill("SELECT _line FROM src ORDER BY _line")).fetchall()]
    assert [line - 1 for line in lines] == kept  # the row at time t is file row t + 1
    assert found["filter_dropped_rows"] == 11 - len(kept)


@pytest.mark.parametrize("condition, key, message", [
    ("{column: quantity, op: like, value: 1}", "data.filter.0.op", "'like' is not one of"),
    ("{column: quantity, op: in, value: 1}", "data.filter.0.value", "needs a list of values"),
    ("{column: quantity, op: '>', value: [1, 2]}", "data.filter.0.value", "needs one value"),
    ("{column: quantity, op: is_null, value: 1}", "data.filter.0.value", "takes no value"),
    ("{column: quantity, op: in, value: [1, a]}", "data.filter.0.value", "mixes text and"),
    ("{column: price, op: '>', value: '5'}", "data.filter.0.value",
     "'price' is read as a number"),
    ("{column: region, op: '=', value: 7}", "data.filter.0.value",
     "'region' is read as text"),
    ("{column: region, op: '<', value: m}", "data.filter.0.value", "orders numbers and times"),
    ("{column: timestamp, op: '<', value: yesterday}", "data.filter.0.value",
     "cannot read timestamp 'yesterday'"),
    ("{column: quantity, op: '>', value: 0}, {column: quantity, op: '=', value: a}",
     "data.filter.1.value", "compared with numbers by data.filter.0"),
    ("{column: qty, op: '>', value: 0}", "data.filter.0.column", "'qty' is not in"),
    ("{column: category, op: '=', value: ink}", "data.filter.0.column",
     "data.filter and data.weight read the interaction file"),
])
def test_a_filter_is_validated_naming_its_key(tmp_path, condition, key, message):
    cfg = config(tmp_path, log_csv(), overrides=[f"data.filter=[{condition}]"])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert any(k == key and message in m for k, m in info.value.problems), info.value.problems


def test_a_filter_value_is_a_literal_or_a_list_of_them_in_the_config():
    raw = {"data": {"path": "d.csv", "query_id": "u", "candidate_id": "i",
                    "filter": [{"column": "q", "op": "=", "value": True}]},
           "query_tower": {"features": [{"name": "u", "column": "u", "kind": "id"}]},
           "candidate_tower": {"features": [{"name": "i", "column": "i", "kind": "id"}]}}
    with pytest.raises(ConfigError, match=r"data\.filter\.0\.value: expected a string, a number "
                                          r"or a list of them, got True"):
        Config.from_dict(raw)
    raw["data"]["filter"][0]["value"] = ["a", 2]
    assert Config.from_dict(raw).data.filter[0].value == ["a", 2.0]


def test_a_cell_the_filter_cannot_compare_is_refused_not_dropped(tmp_path):
    """A filtered-out row is still read: 'many' can't be compared with 0, so it is an error
    (naming the row), even though the row would not meet quantity > 0."""
    cfg = cfg_of(tmp_path, LOG + [("C3", "P2", 11, "many")], [POSITIVE])
    with pytest.raises(DataError, match=r"purchases.csv row 12, column 'quantity': 'many' is "
                                        r"not a number, but data.filter.0 compares"):
        prepare(cfg, str(tmp_path / "out"))


def test_the_id_checks_read_the_kept_rows_only(tmp_path):
    """A row without a customer is refused, unless the filter drops it first."""
    rows = LOG + [("", "P2", 11, "1")]
    with pytest.raises(DataError, match="row 12: column 'customer_id'"):
        prepare(cfg_of(tmp_path, rows), str(tmp_path / "a"))
    report = prepare(cfg_of(tmp_path, rows, [
        "data.filter=[{column: customer_id, op: not_null}]"]), str(tmp_path / "b"))
    assert report["filter_dropped_rows"] == 1 and report["rows"] == 10


WEIGHT = ["data.weight=quantity", "data.weight_clip=2.5"]


def test_the_weight_is_clipped_and_rows_of_weight_zero_are_dropped(tmp_path):
    """Weights 2, 1, -1, 1, 0, 3, 1, 1, 1, -2: -1 and -2 clip to 0 and, with the 0, are
    dropped (3 rows); 3 clips to 2.5. The weight is a prepared column of its own; the
    catalog and the query states carry none."""
    out = str(tmp_path / "out")
    report = prepare(cfg_of(tmp_path, overrides=WEIGHT), out)
    assert report["weight_zero_rows"] == 3 and report["rows"] == 7
    assert report["column_types"]["__twotower_weight"] == "float"
    weights = {r["timestamp"]: r["__twotower_weight"]
               for split in ("train", "eval") for r in rows_of(out, split)}
    assert weights == {1: 2.0, 2: 1.0, 4: 1.0, 6: 2.5, 7: 1.0, 8: 1.0, 9: 1.0}
    assert {r["__twotower_weight"] for r in rows_of(out, "catalog")} == {None}
    assert {r["__twotower_weight"] for r in rows_of(out, "eval_queries")} == {None}
    assert "quantity" not in report["columns"]


def test_the_weight_clip_defaults_to_ten_and_is_explicit_in_the_frozen_config(tmp_path):
    cfg = cfg_of(tmp_path, [r[:3] + ("50",) for r in LOG], ["data.weight=quantity"])
    assert cfg.data.weight_clip == 10.0 and cfg.to_dict()["data"]["weight_clip"] == 10.0
    out = str(tmp_path / "out")
    prepare(cfg, out)
    assert {r["__twotower_weight"] for r in rows_of(out, "train")} == {10.0}


@pytest.mark.parametrize("cell, message", [
    ("", "row 12: column 'quantity' (data.weight) is empty; every interaction needs a weight"),
    ("lots", "row 12, column 'quantity' (data.weight): 'lots' is not a number"),
    ("inf", "row 12, column 'quantity' (data.weight): 'inf' is not a finite number"),
])
def test_a_weight_that_is_not_a_number_is_refused(tmp_path, cell, message):
    cfg = cfg_of(tmp_path, LOG + [("C3", "P2", 11, cell)], WEIGHT)
    with pytest.raises(DataError, match=re.escape(message)):
        prepare(cfg, str(tmp_path / "out"))


@pytest.mark.parametrize("overrides, key, message", [
    (["data.weight=qty"], "data.weight", "'qty' is not in"),
    (["data.weight=customer_id"], "data.weight", "is an id or the timestamp column"),
    (["data.weight_clip=2"], "data.weight_clip", "set data.weight"),
    (["data.weight=quantity", "data.weight_clip=0"], "data.weight_clip", "must be in (0, 1e6]"),
    (["data.weight=quantity", "query_tower.features.3={name: q, kind: numeric, "
      "column: __twotower_weight}"], "query_tower.features.3.column", "are reserved"),
])
def test_the_weight_is_validated(tmp_path, overrides, key, message):
    cfg = config(tmp_path, log_csv(), overrides=overrides)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert any(k == key and message in m for k, m in info.value.problems), info.value.problems


MISSING = LOG + [("C3", "P404", 11, "1"), ("C4", "P404", 12, "1"), ("C2", "P405", 13, "1")]


def test_a_candidate_missing_from_the_table_is_an_error_by_default(tmp_path):
    with pytest.raises(DataError, match=r"row 12: candidate 'P404' is not in the candidate "
                                        r"table .*3 interaction rows.*data.candidates.missing"):
        prepare(cfg_of(tmp_path, MISSING), str(tmp_path / "out"))


def test_missing_drop_drops_those_rows_and_counts_rows_and_candidates(tmp_path, capsys):
    cfg = cfg_of(tmp_path, MISSING, ["data.candidates.missing=drop"])
    out = str(tmp_path / "out")
    report = prepare(cfg, out)
    assert (report["missing_candidate_rows"], report["missing_candidates"]) == (3, 2)
    assert report["rows"] == 10
    items = {r["product_id"] for split in ("train", "eval") for r in rows_of(out, split)}
    assert items == {"P1", "P2", "P3"}


def test_the_screen_says_what_each_drop_dropped(tmp_path, capsys):
    """prepare's line: the filter first, then weight 0 among the kept rows, then the missing
    candidates among those: quantity != -2 drops t10; weight 0 then t3 (-1) and t5 (0);
    the three P404/P405 rows, two products."""
    cfg = cfg_of(tmp_path, MISSING, [
        "data.filter=[{column: quantity, op: '!=', value: -2}]", "data.weight=quantity",
        "data.candidates.missing=drop"])
    path = write(tmp_path / "config.json", cfg.to_json())
    assert main(["prepare", "--config", path, "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert ("prepared 7 interactions: 5 train, 2 eval (time split), 3 catalog candidates -> "
            f"{tmp_path / 'out'}; dropped 1 row by data.filter, 2 rows of weight 0 "
            "(data.weight), 3 rows naming 2 candidates missing from the candidate table "
            "(data.candidates.missing: drop) (the SQL that ran:") in printed


def test_validate_reads_the_rows_with_prepares_checks_and_writes_nothing(tmp_path, capsys):
    """A date prepare refuses is refused by validate too (it used to say 'config OK')."""
    bad = log_csv().replace("C2,smb,north,P2,2,", "C2,smb,north,P2,2024-13-45,")
    cfg = config(tmp_path, bad, overrides=[f"pipeline.root={tmp_path / 'runs'}"])
    path = write(tmp_path / "config.json", cfg.to_json())
    assert main(["validate", "--config", path]) == 2
    err = capsys.readouterr().err
    assert ("error: purchases.csv row 3, column 'timestamp': cannot read timestamp "
            "'2024-13-45'") in err.replace(str(tmp_path) + os.sep, "")
    assert not os.path.exists(tmp_path / "runs")
    assert main(["validate", "--config", path, "--no-data"]) == 0  # the config alone is fine
    capsys.readouterr()
    good = config(tmp_path, log_csv(MISSING), overrides=[
        f"pipeline.root={tmp_path / 'runs'}", POSITIVE, "data.candidates.missing=drop"])
    assert main(["validate", "--config", write(tmp_path / "good.json", good.to_json())]) == 0
    printed = capsys.readouterr().out
    assert ("data OK: 7 interactions pass prepare's checks (5 train, 2 eval); dropped 3 rows "
            "by data.filter, 3 rows naming 2 candidates missing from the candidate table "
            "(data.candidates.missing: drop)") in printed
    assert not os.path.exists(tmp_path / "runs")


def test_validate_refuses_an_empty_split_as_prepare_does(tmp_path, capsys):
    cfg = config(tmp_path, log_csv(), overrides=[
        "data.split.method=dates", "data.split.eval_from=2031-01-01"])
    path = write(tmp_path / "config.json", cfg.to_json())
    assert main(["validate", "--config", path]) == 2
    assert "the dates split leaves no eval rows" in capsys.readouterr().err


def test_the_filter_and_weight_reach_sql_only_as_literals_and_quoted_names(tmp_path):
    from pipelines.data.sql.duck import program_text

    hostile = "x'); DROP TABLE t; --"
    cfg = config(tmp_path, log_csv(), overrides=[
        f"data.filter=[{{column: region, op: not_in, value: [\"{hostile}\"]}}]"])
    text = program_text(cfg)
    assert "NOT (\n      NULLIF(c4, '') IN ('x''); DROP TABLE t; --')" in text
    cfg = Config.from_dict(apply_overrides(cfg.to_dict(), ["data.filter=[]"]))
    assert "unfiltered" not in program_text(cfg)  # no filter: the program as before


def test_recommend_reads_histories_through_the_same_filter_and_weight(tmp_path):
    """`recommend`'s query states (pipelines.data.sql.serving) see the kept rows only: C1's
    return of P2 (t3) and its -2 line of P1 (t10) are no purchases; a filter cell it can't
    compare is an error there too."""
    from pipelines.data.sql.serving import states_now

    cfg = cfg_of(tmp_path, overrides=[POSITIVE])
    path = str(tmp_path / "purchases.csv")
    states = states_now(cfg, path, ["C1", "C2"])
    assert states["C1"]["items"] == ["P3", "P1"] and states["C1"]["seen"] == {"P1", "P3"}
    assert states["C2"]["items"] == ["P3", "P2"]
    plain = states_now(cfg_of(tmp_path), path, ["C1"])
    assert plain["C1"]["items"] == ["P1", "P3", "P2", "P1"]
    weighted = states_now(cfg_of(tmp_path, overrides=["data.weight=quantity"]), path, ["C2"])
    assert weighted["C2"]["items"] == ["P3", "P2"]  # t5's weight 0 is dropped
    write(path, log_csv(LOG + [("C1", "P2", 11, "many")]))
    with pytest.raises(DataError, match="row 12, column 'quantity': 'many' is not a number"):
        states_now(cfg, path, ["C1"])
