"""prepare(): row checks, the candidate join, time and hash splits, the report."""
import copy
import datetime
import json
import os
import time

import pytest

from pipelines.config.schema import Config, ConfigError, apply_overrides, read_raw
from pipelines.data.prepare import DataError, output_columns, prepare
from pipelines.validate import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "customer_id,segment,region,product_id,timestamp,quantity"
PRODUCTS = "product_id,category,price\nP1,tools,10.5\nP2,paper,2.25\nP3,ink,7\n"
COLUMNS = ["customer_id", "product_id", "timestamp", "segment", "region", "category", "price"]
TYPES = ["string", "string", "int", "string", "string", "string", "float"]


def write(path, text):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return str(path)


def config(tmp_path, purchases, products=PRODUCTS, overrides=()):
    """The demo config pointed at hand-written CSV files in ``tmp_path``."""
    raw = copy.deepcopy(read_raw(os.path.join(ROOT, "examples", "b2b_demo.yaml")))
    sets = [f"data.path={write(tmp_path / 'purchases.csv', purchases)}"]
    if products is None:
        sets.append("data.candidates=null")
    else:
        sets.append(f"data.candidates.path={write(tmp_path / 'products.csv', products)}")
    return Config.from_dict(apply_overrides(raw, sets + list(overrides)))


def read(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return handle.read()


def cell(value):
    """A typed Parquet value as the CSV cell it came from (floats without a trailing .0)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def rows_of(out, split):
    """A prepared split's rows as dicts of typed values."""
    import pyarrow.parquet as pq

    return pq.read_table(os.path.join(out, split, "data.parquet")).to_pylist()


def lines(out, split):
    """A prepared split as CSV-like lines: the header, then one line per row."""
    import pyarrow.parquet as pq

    table = pq.read_table(os.path.join(out, split, "data.parquet"))
    return [",".join(table.column_names)] + [
        ",".join(cell(v) for v in row.values()) for row in table.to_pylist()]


def train_lines(out):
    """The train split's lines, header first, then the rows sorted: the split is written in
    a seeded shuffle (queries.shuffle_key), so its order is tested apart."""
    found = lines(out, "train")
    return found[:1] + sorted(found[1:])


# ten rows, timestamps 1..10 in shuffled file order
TEN = [("C1", "smb", "north", "P1", "3", "1"), ("C2", "smb", "south", "P2", "10", "2"),
       ("C3", "enterprise", "east", "P3", "1", "3"), ("C1", "smb", "north", "P2", "7", "4"),
       ("C2", "smb", "south", "P1", "5", "5"), ("C3", "enterprise", "east", "P1", "9", "6"),
       ("C4", "mid-market", "west", "P3", "2", "7"), ("C4", "mid-market", "west", "P2", "8", "8"),
       ("C1", "smb", "north", "P3", "4", "9"), ("C2", "smb", "south", "P3", "6", "1")]
ATTRS = {"P1": "tools,10.5", "P2": "paper,2.25", "P3": "ink,7"}


def csv_of(rows):
    return HEADER + "\n" + "".join(",".join(r) + "\n" for r in rows)


def out_line(r):  # customer, product, timestamp, segment, region, category, price
    return f"{r[0]},{r[3]},{r[4]},{r[1]},{r[2]},{ATTRS[r[3]]}"


def test_a_backtest_window_moves_the_eval_window_back_and_leaves_later_rows_out(tmp_path):
    """Ten rows at times 1..10, eval_fraction 0.2. Window 0: eval is t >= 9 (the cut is the
    int(10 * 0.8) = 8th smallest time, 0-based). Window 1: eval is the slice from the cut at
    0.4 (the 6th smallest, t = 7) to the cut at 0.2 (t = 9); t = 9 and 10 are left out, and
    no history or query state sees them."""
    out = str(tmp_path / "w1")
    report = prepare(config(tmp_path, csv_of(TEN), overrides=[
        "data.split.eval_fraction=0.2", "data.split.window=1",
        "query_tower.features.3={name: recent, kind: history, max_length: 5}"]), out)
    times = lambda split: sorted(r["timestamp"] for r in rows_of(out, split))  # noqa: E731
    assert times("train") == [1, 2, 3, 4, 5, 6] and times("eval") == [7, 8]
    assert (report["time_cut"], report["window_end"], report["rows_after_window"]) == (7, 9, 2)
    assert report["rows"] == 8 and report["window"] == 1
    # the rows left out (C2's P2 at 10, C3's P1 at 9) are in no history and no state
    history = {(r["customer_id"], r["timestamp"]): r["__twotower_history_recent"]
               for r in rows_of(out, "train")}
    assert [history[k] for k in (("C2", 5), ("C2", 6), ("C3", 1))] == [None, "P1", None]
    states = {r["customer_id"]: r["__twotower_history_recent"]
              for r in rows_of(out, "eval_queries")}
    assert states == {"C1": "P3|P1", "C4": "P3"}  # eval: C1 at 7, C4 at 8
    zero = prepare(config(tmp_path, csv_of(TEN), overrides=["data.split.eval_fraction=0.2"]),
                   str(tmp_path / "w0"))
    assert sorted(r["timestamp"] for r in rows_of(str(tmp_path / "w0"), "eval")) == [9, 10]
    assert "window" not in zero


def test_time_split_puts_the_latest_rows_in_eval(tmp_path):
    cfg = config(tmp_path, csv_of(TEN))
    assert output_columns(cfg) == COLUMNS
    out = str(tmp_path / "out")
    report = prepare(cfg, out)
    assert lines(out, "eval") == [",".join(COLUMNS), "C2,P2,10,smb,south,paper,2.25",
                                  "C3,P1,9,enterprise,east,tools,10.5"]
    assert train_lines(out) == [",".join(COLUMNS)] + sorted(
        out_line(r) for r in TEN if int(r[4]) <= 8)
    assert len(lines(out, "train")) == 9
    assert "quantity" not in lines(out, "train")[0]
    assert len(report.pop("source_fingerprint")) == 64  # sha256 of the program and the bytes
    assert report == {"rows": 10, "split_method": "time", "eval_fraction": 0.2,
                      "train_rows": 8, "eval_rows": 2, "columns": COLUMNS,
                      "column_types": dict(zip(COLUMNS, TYPES)), "catalog_candidates": 3,
                      "eval_queries": 2, "eval_cold_queries": 0, "time_cut": 9.0}
    assert {k: v for k, v in json.loads(read(os.path.join(out, "prepare_report.json"))).items()
            if k != "source_fingerprint"} == report
    assert sorted(os.listdir(out)) == [".twotower-prepared", "catalog", "eval", "eval_queries",
                                       "prepare.sql", "prepare_report.json", "train"]


def test_ties_at_the_cut_all_go_to_eval(tmp_path):
    rows = [("C1", "smb", "north", "P1", str(t), "1") for t in (1, 2, 3, 3, 3)]
    report = prepare(config(tmp_path, csv_of(rows)), str(tmp_path / "out"))
    # cut = sorted times[int(5 * 0.8)] = 3: every row at time 3 is eval
    assert (report["train_rows"], report["eval_rows"], report["time_cut"]) == (2, 3, 3.0)


@pytest.fixture
def new_york_clock(monkeypatch):
    """A local time zone other than UTC, so naive times read as local would show."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_iso_timestamps_with_offsets_are_read_as_utc(tmp_path, new_york_clock):
    stamps = ["2024-05-01T10:00:00",        # 10:00 UTC (naive = UTC)
              "2024-05-01T13:00:00+02:00",  # 11:00 UTC
              "2024-05-01T12:00:00",        # 12:00 UTC, the latest
              "2024-05-01T14:00:00+05:00",  # 09:00 UTC
              "1714550400"]                 # 08:00 UTC as epoch seconds
    rows = [("C1", f"s{i}", "north", "P1", s, "1") for i, s in enumerate(stamps)]
    out = str(tmp_path / "out")
    report = prepare(config(tmp_path, csv_of(rows), overrides=["data.split.eval_fraction=0.4"]),
                     out)
    eleven = datetime.datetime(2024, 5, 1, 11, tzinfo=datetime.timezone.utc).timestamp()
    assert report["time_cut"] == eleven
    # Written as epoch seconds, so ExampleGen sees one numeric column whatever the input form.
    assert [line.split(",")[2] for line in lines(out, "eval")[1:]] == [
        str(int(eleven)), str(int(eleven) + 3600)]
    assert sorted(line.split(",")[3] for line in lines(out, "train")[1:]) == ["s0", "s3", "s4"]


def test_unparsable_timestamp_names_file_row_and_column(tmp_path):
    rows = [("C1", "smb", "north", "P1", "5", "1"), ("C2", "smb", "north", "P2", "yesterday", "1"),
            ("C3", "smb", "north", "P3", "7", "1")]
    with pytest.raises(DataError) as exc:
        prepare(config(tmp_path, csv_of(rows)), str(tmp_path / "out"))
    text = str(exc.value)
    assert str(tmp_path / "purchases.csv") + " row 3" in text
    assert "'timestamp'" in text and "'yesterday'" in text
    assert not os.path.exists(tmp_path / "out")


def test_iso_timestamp_with_z_suffix_is_accepted(tmp_path):
    rows = [("C1", "smb", "north", "P1", "2024-05-01T10:00:00Z", "1"),
            ("C1", "smb", "north", "P2", "2024-05-01T11:00:00Z", "1")]
    report = prepare(config(tmp_path, csv_of(rows), overrides=["data.split.eval_fraction=0.5"]),
                     str(tmp_path / "out"))
    assert report["eval_rows"] == 1


def test_nan_timestamp_is_rejected_with_its_row(tmp_path):
    rows = [("C1", "smb", "north", "P1", str(t), "1") for t in (1, 2, 3, 4)]
    rows[1] = ("C1", "smb", "north", "P1", "nan", "1")
    with pytest.raises(DataError, match="row 3"):
        prepare(config(tmp_path, csv_of(rows)), str(tmp_path / "out"))


def hash_config(tmp_path, seed, n=400):
    rows = [(f"C{i % 37}", "smb", "north", f"P{1 + i % 3}", str(i), "1") for i in range(n)]
    return config(tmp_path, csv_of(rows), overrides=[
        "data.timestamp=null", "data.split.method=hash", "data.split.eval_fraction=0.25",
        f"data.split.seed={seed}"])


def test_hash_split_is_deterministic_near_the_fraction_and_seeded(tmp_path):
    cfg = hash_config(tmp_path, seed=42)
    assert output_columns(cfg) == [c for c in COLUMNS if c != "timestamp"]
    first, again = str(tmp_path / "a"), str(tmp_path / "b")
    report = prepare(cfg, first)
    assert prepare(cfg, again) == report
    for split in ("train", "eval"):
        assert lines(first, split) == lines(again, split)
    assert report["split_method"] == "hash" and "time_cut" not in report
    assert report["rows"] == 400 and report["train_rows"] + report["eval_rows"] == 400
    assert 60 <= report["eval_rows"] <= 140
    assert len(lines(first, "eval")) == report["eval_rows"] + 1
    other = str(tmp_path / "c")
    prepare(hash_config(tmp_path, seed=7), other)
    assert lines(other, "eval") != lines(first, "eval")
    both = sorted(lines(other, "train")[1:] + lines(other, "eval")[1:])
    assert both == sorted(lines(first, "train")[1:] + lines(first, "eval")[1:])


def test_auto_split_without_timestamp_is_hash(tmp_path):
    cfg = hash_config(tmp_path, seed=1, n=50)
    cfg.data.split.method = "auto"
    assert prepare(cfg, str(tmp_path / "out"))["split_method"] == "hash"


@pytest.mark.parametrize("column,key", [("customer_id", "data.query_id"),
                                        ("product_id", "data.candidate_id")])
def test_empty_id_cell_names_row_and_config_key(tmp_path, column, key):
    rows = [list(r) for r in TEN[:4]]
    rows[2][0 if column == "customer_id" else 3] = "  "
    with pytest.raises(DataError) as exc:
        prepare(config(tmp_path, csv_of(rows)), str(tmp_path / "out"))
    assert "row 4" in str(exc.value) and f"({key})" in str(exc.value)
    assert f"{column!r}" in str(exc.value)


def test_candidate_attributes_are_joined(tmp_path):
    rows = [("C1", "smb", "north", "P2", "1", "1"), ("C2", "smb", "south", "P1", "2", "1"),
            ("C1", "smb", "north", "P2", "3", "1"), ("C3", "smb", "east", "P1", "4", "1"),
            ("C2", "smb", "south", "P3", "5", "1")]
    out = str(tmp_path / "out")
    prepare(config(tmp_path, csv_of(rows)), out)
    assert train_lines(out)[1:] == sorted([
        "C1,P2,1,smb,north,paper,2.25", "C2,P1,2,smb,south,tools,10.5",
        "C1,P2,3,smb,north,paper,2.25", "C3,P1,4,smb,east,tools,10.5"])
    assert lines(out, "eval")[1:] == ["C2,P3,5,smb,south,ink,7"]


def test_candidates_missing_from_the_table_are_an_error(tmp_path):
    """They used to get empty attributes silently (issue 9, item 8)."""
    rows = [("C1", "smb", "north", "P2", "1", "1"), ("C2", "smb", "south", "P9", "2", "1"),
            ("C1", "smb", "north", "P9", "3", "1"), ("C3", "smb", "east", "P1", "4", "1")]
    with pytest.raises(DataError) as exc:
        prepare(config(tmp_path, csv_of(rows)), str(tmp_path / "out"))
    text = str(exc.value)
    assert str(tmp_path / "purchases.csv") + " row 3: candidate 'P9'" in text
    assert "(2 interaction rows name candidates it lacks)" in text
    assert not os.path.exists(tmp_path / "out")


def test_duplicate_candidate_in_table_names_both_rows(tmp_path):
    products = "product_id,category,price\nP1,tools,1\nP2,paper,2\nP1,ink,3\n"
    with pytest.raises(DataError) as exc:
        prepare(config(tmp_path, csv_of(TEN), products), str(tmp_path / "out"))
    text = str(exc.value)
    assert str(tmp_path / "products.csv") + " row 4" in text
    assert "'P1'" in text and "first at row 2" in text


def no_table_csv(rows):
    return HEADER + ",category,price\n" + "".join(",".join(r) + "\n" for r in rows)


def test_without_table_candidate_features_must_agree(tmp_path):
    rows = [("C1", "smb", "north", "P1", "1", "1", "tools", "10"),
            ("C2", "smb", "north", "P2", "2", "1", "paper", "2"),
            ("C3", "smb", "north", "P2", "3", "1", "paper", "2"),
            ("C4", "smb", "north", "P1", "4", "1", "paper", "10")]
    with pytest.raises(DataError) as exc:
        prepare(config(tmp_path, no_table_csv(rows), products=None), str(tmp_path / "out"))
    text = str(exc.value)
    assert str(tmp_path / "purchases.csv") + " row 5" in text
    assert "'category'" in text and "'P1'" in text
    assert "'paper'" in text and "'tools' at row 2" in text


def test_without_table_consistent_features_pass_through(tmp_path):
    rows = [("C1", "smb", "north", "P1", "1", "1", "tools", "10"),
            ("C2", "smb", "north", "P2", "2", "1", "paper", "2"),
            ("C1", "smb", "north", "P1", "3", "1", "tools", "10")]
    out = str(tmp_path / "out")
    prepare(config(tmp_path, no_table_csv(rows), products=None,
                   overrides=["data.split.eval_fraction=0.3"]), out)
    assert train_lines(out) == [",".join(COLUMNS), "C1,P1,1,smb,north,tools,10",
                                "C2,P2,2,smb,north,paper,2"]
    assert lines(out, "eval")[1:] == ["C1,P1,3,smb,north,tools,10"]


def test_split_without_eval_rows_is_an_error(tmp_path):
    rows = [("C1", "smb", "north", "P1", "5", "1")] * 6
    with pytest.raises(DataError, match="no eval rows"):
        prepare(config(tmp_path, csv_of(rows)), str(tmp_path / "out"))


def test_rerun_replaces_old_files(tmp_path):
    """It replaces what it wrote; a file someone else put there stops it (issue 32: it was
    deleted with the folder), until it is moved away."""
    out = str(tmp_path / "out")
    prepare(config(tmp_path, csv_of(TEN)), out)
    write(os.path.join(out, "train", "stale.csv"), "old\n")
    small = [("C7", "smb", "west", "P3", str(t), "1") for t in (20, 21, 22, 23, 24)]
    with pytest.raises(DataError, match="holds train/stale.csv, which twotower prepare did "
                       "not write"):
        prepare(config(tmp_path, csv_of(small)), out)
    assert read(os.path.join(out, "train", "stale.csv")) == "old\n"
    os.remove(os.path.join(out, "train", "stale.csv"))
    report = prepare(config(tmp_path, csv_of(small)), out)
    assert report["rows"] == 5
    assert train_lines(out)[1:] == [f"C7,P3,{t},smb,west,ink,7" for t in (20, 21, 22, 23)]
    assert lines(out, "eval")[1:] == ["C7,P3,24,smb,west,ink,7"]
    assert os.listdir(os.path.join(out, "train")) == ["data.parquet"]
    assert json.loads(read(os.path.join(out, "prepare_report.json")))["rows"] == 5


def test_hash_split_moves_no_old_row_when_rows_are_appended(tmp_path):
    rows = [(f"C{i % 37}", "smb", "north", f"P{1 + i % 3}", str(i), "1") for i in range(200)]
    overrides = ["data.timestamp=null", "data.split.method=hash"]
    prepare(config(tmp_path, csv_of(rows), overrides=overrides), str(tmp_path / "a"))
    more = rows + [(f"C{i}", "smb", "north", "P1", str(1000 + i), "1") for i in range(50)]
    prepare(config(tmp_path, csv_of(more), overrides=overrides), str(tmp_path / "b"))
    old, new = lines(str(tmp_path / "a"), "eval"), lines(str(tmp_path / "b"), "eval")
    assert new[:len(old)] == old
    old, new = train_lines(str(tmp_path / "a")), train_lines(str(tmp_path / "b"))
    assert len(new) > len(old) and set(old) <= set(new)  # train is shuffled: as sets


def test_short_row_in_candidate_table_is_named(tmp_path):
    rows = [("C1", "smb", "north", "P1", "1", "1"), ("C2", "smb", "north", "P2", "2", "1")]
    cfg = config(tmp_path, csv_of(rows))
    with open(cfg.data.candidates.path, "a", encoding="utf-8") as handle:
        handle.write("P9,cat_01\n")
    with pytest.raises(DataError, match="products.csv row 5: 2 cells but the header has 3"):
        prepare(cfg, str(tmp_path / "out"))


@pytest.mark.parametrize("price", ["cheap", "inf"])
def test_non_number_in_numeric_feature_is_named(tmp_path, price):
    rows = [("C1", "smb", "north", "P1", "1", "1"), ("C2", "smb", "north", "P2", "2", "1")]
    products = "product_id,category,price\nP1,cat_01,3.5\nP2,cat_02," + price + "\n"
    with pytest.raises(DataError, match=r"products.csv row 3, column 'price'.*" + price):
        prepare(config(tmp_path, csv_of(rows), products=products), str(tmp_path / "out"))


def test_history_columns_hold_earlier_candidates_newest_first(tmp_path):
    rows = [("C1", "smb", "north", "P1", "1", "1"), ("C2", "smb", "north", "P2", "2", "1"),
            ("C1", "smb", "north", "P2", "3", "1"), ("C1", "smb", "north", "P3", "4", "1"),
            ("C1", "smb", "north", "P1", "5", "1")]
    cfg = config(tmp_path, csv_of(rows), overrides=[
        "query_tower.features.3={name: recent, kind: history, max_length: 2}",
        "data.split.eval_fraction=0.2"])
    out = str(tmp_path / "out")
    prepare(cfg, out)
    assert "__twotower_history_recent" in output_columns(cfg)
    got = [r["__twotower_history_recent"] for split in ("train", "eval")
           for r in sorted(rows_of(out, split), key=lambda r: r["timestamp"])]
    assert got == [None, None, "P1", "P2|P1", "P3|P2"]


def test_history_separator_inside_a_candidate_id_is_named(tmp_path):
    rows = [("C1", "smb", "north", "P|1", "1", "1"), ("C2", "smb", "north", "P2", "2", "1")]
    cfg = config(tmp_path, csv_of(rows), products=None, overrides=[
        "query_tower.features.3={name: recent, kind: history}",
        "candidate_tower.features=[{name: product, column: product_id, kind: id}]"])
    with pytest.raises(DataError, match="row 2.*contains the history separator"):
        prepare(cfg, str(tmp_path / "out"))


def test_user_time_split_holds_out_each_users_latest_rows(tmp_path):
    cfg = config(tmp_path, csv_of(TEN), overrides=["data.split.method=user_time",
                                                   "data.split.eval_fraction=0.34"])
    out = str(tmp_path / "out")
    report = prepare(cfg, out)
    # each customer has 2-3 rows: int(n * 0.34) < 1, so each holds out its latest one
    assert lines(out, "eval") == [",".join(COLUMNS)] + [
        out_line(r) for r in TEN if (r[0], r[4]) in {("C1", "7"), ("C2", "10"), ("C3", "9"),
                                                     ("C4", "8")}]
    assert (report["split_method"], report["train_rows"], report["eval_rows"]) == (
        "user_time", 6, 4)


def test_user_time_split_fraction_ties_and_single_row_users(tmp_path):
    # C1: ten rows, times 1..10 with a tie at 9; C2: one row, which stays in train
    rows = [("C1", "smb", "north", f"P{1 + t % 3}", str(min(t, 9)), "1") for t in range(1, 11)]
    rows.append(("C2", "smb", "south", "P1", "50", "1"))
    cfg = config(tmp_path, csv_of(rows), overrides=["data.split.method=user_time",
                                                    "data.split.eval_fraction=0.2"])
    out = str(tmp_path / "out")
    prepare(cfg, out)
    # int(10 * 0.2) = 2 held out: the two rows at time 9 (t = 9 and 10), by time then row
    assert lines(out, "eval") == [",".join(COLUMNS)] + [out_line(r) for r in rows[8:10]]
    assert len(lines(out, "train")) == 1 + 8 + 1


def test_user_time_split_needs_a_timestamp(tmp_path):
    cfg = config(tmp_path, csv_of(TEN), overrides=["data.split.method=user_time",
                                                   "data.timestamp=null"])
    with pytest.raises(ConfigError, match="data.split.method.*'user_time' needs data.timestamp"):
        validate(cfg, check_data=False)


@pytest.mark.parametrize("method", ["time", "user_time"])
def test_test_fraction_takes_the_latest_held_out_rows(tmp_path, method):
    # one customer, times 1..10: eval 0.2 + test 0.2 hold out the latest 4 rows
    rows = [("C1", "smb", "north", f"P{1 + t % 3}", str(t), "1") for t in range(1, 11)]
    cfg = config(tmp_path, csv_of(rows), overrides=[f"data.split.method={method}",
                                                    "data.split.eval_fraction=0.2",
                                                    "data.split.test_fraction=0.2"])
    out = str(tmp_path / "out")
    report = prepare(cfg, out)
    assert lines(out, "test") == [",".join(COLUMNS)] + [out_line(r) for r in rows[8:]]
    assert lines(out, "eval") == [",".join(COLUMNS)] + [out_line(r) for r in rows[6:8]]
    assert (report["train_rows"], report["eval_rows"], report["test_rows"]) == (6, 2, 2)
    assert report["test_fraction"] == 0.2
    if method == "time":
        assert (report["time_cut"], report["test_cut"]) == (7.0, 9.0)


def test_hash_split_with_test_fraction_is_three_disjoint_parts(tmp_path):
    rows = [(f"C{i % 7}", "smb", "north", f"P{1 + i % 3}", str(i), str(i)) for i in range(300)]
    overrides = ["data.split.method=hash", "data.split.eval_fraction=0.2",
                 "data.split.test_fraction=0.1"]
    out = str(tmp_path / "out")
    report = prepare(config(tmp_path, csv_of(rows), overrides=overrides), out)
    parts = {s: lines(out, s)[1:] for s in ("train", "eval", "test")}
    assert sum(len(p) for p in parts.values()) == 300
    assert not (set(parts["eval"]) & set(parts["test"]))
    assert 40 <= report["eval_rows"] <= 80 and 15 <= report["test_rows"] <= 45
    # without a test fraction the eval rows are exactly the same ones (no row moves)
    out2 = str(tmp_path / "out2")
    prepare(config(tmp_path, csv_of(rows), overrides=overrides[:2]), out2)
    assert lines(out2, "eval")[1:] == parts["eval"]
    assert not os.path.exists(os.path.join(out2, "test"))


# ---------------------------------------------------------------- typed ids, catalog, safety

ODD_IDS = ["007", "1.5", " A1 ", "Ünïcödé-产品"]


def test_ids_are_strings_exactly_as_written_and_values_keep_their_type(tmp_path):
    """No type inference: '007' stays '007' (not 7), '1.5' stays '1.5', spaces stay."""
    products = ("product_id,category,price\n" + "".join(
        f'"{p}",cat,{price}\n' for p, price in zip(ODD_IDS, ("0", "0.0", "1.50", "2"))))
    rows = [(c, "smb", "north", p, str(t), "1") for t, (c, p) in enumerate(
        zip(["0042", "1e3", " C ", "顧客"] * 2, ODD_IDS + ODD_IDS[::-1]))]
    text = HEADER + "\n" + "".join(",".join(f'"{v}"' for v in r) + "\n" for r in rows)
    out = str(tmp_path / "out")
    prepare(config(tmp_path, text, products), out)
    got = rows_of(out, "train") + rows_of(out, "eval")
    assert sorted((r["customer_id"], r["product_id"]) for r in got) == sorted(
        (r[0], r[3]) for r in rows)
    catalog = rows_of(out, "catalog")
    assert [r["product_id"] for r in catalog] == sorted(ODD_IDS)
    prices = {r["product_id"]: r["price"] for r in catalog}
    assert prices == {"007": 0.0, "1.5": 0.0, " A1 ": 1.5, "Ünïcödé-产品": 2.0}
    assert all(type(r["timestamp"]) is int for r in got)  # epoch seconds, int64


@pytest.mark.parametrize("bad,message", [(" ", "is empty"), ("P\n1", "holds a line break")])
def test_blank_or_multi_line_ids_are_refused(tmp_path, bad, message):
    rows = [("C1", "smb", "north", "P1", "1", "1"), ("C2", "smb", "north", bad, "2", "1")]
    text = HEADER + "\n" + "".join(",".join(f'"{v}"' for v in r) + "\n" for r in rows)
    with pytest.raises(DataError, match=r"purchases.csv row 3: column 'product_id' "
                                        r"\(data.candidate_id\) " + message):
        prepare(config(tmp_path, text), str(tmp_path / "out"))


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    out = str(tmp_path / "out")
    prepare(config(tmp_path, "\ufeff" + csv_of(TEN)), out)
    assert lines(out, "eval")[1].startswith("C2,P2,10")


def test_the_catalog_is_the_whole_candidate_table(tmp_path):
    """Products nobody bought in train are servable (issue 9, item 5)."""
    products = PRODUCTS + "P4,new,3.5\n"
    rows = [("C1", "smb", "north", "P1", "1", "1"), ("C2", "smb", "north", "P2", "2", "1"),
            ("C1", "smb", "north", "P3", "3", "1")]  # P3 only in eval, P4 never bought
    out = str(tmp_path / "out")
    report = prepare(config(tmp_path, csv_of(rows), products), out)
    assert lines(out, "catalog") == [",".join(COLUMNS), ",P1,,,,tools,10.5", ",P2,,,,paper,2.25",
                                     ",P3,,,,ink,7", ",P4,,,,new,3.5"]
    assert report["catalog_candidates"] == 4


def test_without_a_table_the_catalog_is_the_training_candidates(tmp_path):
    rows = [("C1", "smb", "north", "P1", "1", "1", "tools", "10"),
            ("C1", "smb", "north", "P2", "2", "1", "paper", "2"),
            ("C1", "smb", "north", "P3", "3", "1", "ink", "7")]
    out = str(tmp_path / "out")
    prepare(config(tmp_path, no_table_csv(rows), products=None,
                   overrides=["data.split.eval_fraction=0.3"]), out)
    assert lines(out, "catalog")[1:] == [",P1,,,,tools,10", ",P2,,,,paper,2"]


def test_a_cross_in_the_candidate_tower_is_prepared(tmp_path):
    """It crashed prepare with a TypeError (None column in a sort; issue 9, item 8)."""
    cfg = config(tmp_path, csv_of(TEN), overrides=[
        "candidate_tower.features.3={name: cat_price, kind: cross, columns: [category, price]}"])
    out = str(tmp_path / "out")
    prepare(cfg, out)
    assert lines(out, "eval")[1:] == ["C2,P2,10,smb,south,paper,2.25",
                                      "C3,P1,9,enterprise,east,tools,10.5"]


def test_a_directory_twotower_did_not_write_is_never_replaced(tmp_path):
    """prepare replaced <root>/input whatever it held (issue 9, item 8)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    with pytest.raises(DataError, match="was not written by twotower.*left untouched"):
        prepare(config(tmp_path, csv_of(TEN)), str(out))
    assert os.listdir(out) == ["precious.txt"]


def test_a_failed_write_leaves_the_previous_input_whole(tmp_path, monkeypatch):
    from pipelines.data.sql import duck

    out = str(tmp_path / "out")
    prepare(config(tmp_path, csv_of(TEN)), out)
    before = {s: lines(out, s) for s in ("train", "eval", "catalog", "eval_queries")}
    calls = []
    real = duck.Runner.copy

    def failing(self, tree, path, where):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, tree, path, where)

    monkeypatch.setattr(duck.Runner, "copy", failing)
    with pytest.raises(DataError, match="out: cannot write: No space left on device; nothing "
                                        "was written"):
        prepare(config(tmp_path, csv_of(TEN[:6])), out)
    assert {s: lines(out, s) for s in before} == before
    assert sorted(os.listdir(tmp_path)) == ["out", "products.csv", "purchases.csv"]


def test_the_train_split_is_written_in_a_seeded_uniform_shuffle(tmp_path):
    """A log in time order becomes a train split whose every stretch spans the whole time
    range, like a uniform shuffle's (not the few days a time-ordered file's batch holds);
    the same seed gives the same order, another seed another one."""
    n = 2000
    rows = [(f"C{i % 97}", "smb", "north", f"P{1 + i % 3}", str(i), "1") for i in range(n)]
    out = str(tmp_path / "a")
    prepare(config(tmp_path, csv_of(rows), overrides=["data.split.eval_fraction=0.1"]), out)
    times = [r["timestamp"] for r in rows_of(out, "train")]
    assert sorted(times) == list(range(int(n * 0.9)))
    # a batch of 200 rows of a uniform shuffle of 0..1799: its mean is 899.5 with a standard
    # deviation of 1800 / sqrt(12 * 200) * sqrt(1 - 200 / 1800) = 34.6; in file order the
    # first batch's mean is 99.5 and the last's 1699.5
    for batch in (times[:200], times[-200:], times[800:1000]):
        assert abs(sum(batch) / len(batch) - 899.5) < 5 * 34.6
        assert max(batch) - min(batch) > 1500
    prepare(config(tmp_path, csv_of(rows), overrides=["data.split.eval_fraction=0.1"]),
            str(tmp_path / "b"))
    assert [r["timestamp"] for r in rows_of(str(tmp_path / "b"), "train")] == times
    prepare(config(tmp_path, csv_of(rows), overrides=["data.split.eval_fraction=0.1",
                                                      "data.split.seed=7"]), str(tmp_path / "c"))
    other = [r["timestamp"] for r in rows_of(str(tmp_path / "c"), "train")]
    assert sorted(other) == sorted(times) and other != times
    # the held-out split keeps file order
    assert [r["timestamp"] for r in rows_of(out, "eval")] == list(range(int(n * 0.9), n))
