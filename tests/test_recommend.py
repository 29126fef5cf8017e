"""`twotower recommend`'s input handling, exact and without TensorFlow."""
import math
import os

import pytest

from pipelines.config.schema import Config, ConfigError
from pipelines.data.prepare import DataError
from pipelines.recommend import find_model, query_histories, read_queries, recommend, serving_values

CFG = Config.from_dict({
    "data": {"path": "x.csv", "query_id": "cust", "candidate_id": "item", "timestamp": "ts"},
    "query_tower": {"features": [
        {"name": "cust", "column": "cust", "kind": "id"},
        {"name": "seg", "column": "seg", "kind": "categorical"},
        {"name": "when", "column": "ts", "kind": "timestamp"},
        {"name": "qty", "column": "qty", "kind": "numeric"},
        {"name": "recent", "kind": "history", "max_length": 2, "separator": ";"}]},
    "candidate_tower": {"features": [{"name": "item", "column": "item", "kind": "id"}]},
})
DESCRIBED = [{"input": "query_id", "column": "cust", "dtype": "string"},
             {"input": "seg", "column": "seg", "dtype": "string"},
             {"input": "when", "column": "ts", "dtype": "int64"},
             {"input": "qty", "column": "qty", "dtype": "float32"},
             {"input": "recent", "column": "__twotower_history_recent", "dtype": "string"}]
ROWS = ("cust,seg,ts,qty,item\n"
        "a,smb,2024-01-03T00:00:00Z,2,i3\n"     # newest of a's rows (file order is not time)
        "a,smb,1704067200,1,i1\n"               # 2024-01-01
        "b,ent,5,7,i9\n"
        "a,smb,1704153600,4,i2\n")              # 2024-01-02


def test_one_moment_lists_later_file_rows_first_and_the_latest_row_wins_a_tie(tmp_path):
    """The grouped pass (one per query) orders like the preparation program: time, then
    file order, newest first; a re-bought item is listed each time, seen once."""
    path = tmp_path / "x.csv"
    path.write_text("cust,seg,ts,qty,item\n"
                    "a,smb,10,1,i1\n"
                    "a,mid,20,1,i2\n"
                    "a,ent,20,1,i3\n"    # same moment, later in the file: newest
                    "a,smb,5,1,i2\n")
    seen = query_histories(CFG, str(path), {"a"})
    assert seen["a"]["items"] == ["i3", "i2"] and seen["a"]["seen"] == {"i1", "i2", "i3"}
    assert seen["a"]["row"]["seg"] == "ent"


def test_histories_are_newest_first_and_features_come_from_the_latest_row(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(ROWS)
    seen = query_histories(CFG, str(path), {"a", "zz"})
    # newest first, as many as the longest history keeps (2); every item is excluded
    assert list(seen) == ["a"] and seen["a"]["items"] == ["i3", "i2"]
    assert seen["a"]["seen"] == {"i1", "i2", "i3"}
    assert serving_values(CFG, DESCRIBED, "a", seen["a"]) == {
        "query_id": "a", "seg": "smb", "when": 1704240000, "qty": 2.0, "recent": "i3;i2"}
    # a query without rows is served cold: empty history, and "" / NaN, which the model
    # replaces by each feature's configured default (as training did for empty cells); an
    # int64 input can't say "unknown", so it gets the default itself
    cold = serving_values(CFG, [dict(d, default=7.0 if d["input"] == "when" else None)
                                for d in DESCRIBED], "zz", None)
    assert math.isnan(cold.pop("qty"))
    assert cold == {"query_id": "zz", "seg": "", "when": 7, "recent": ""}


def test_ids_are_matched_exactly_as_written(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('cust,seg,ts,qty,item\n" 007",smb,1,1," A1 "\n007,smb,2,1,1.5\n')
    seen = query_histories(CFG, str(path), {"007", " 007"})
    assert seen["007"]["items"] == ["1.5"] and seen[" 007"]["items"] == [" A1 "]
    users = tmp_path / "users.csv"
    users.write_text('cust\n" 007"\n007\n')
    assert read_queries(str(users), "cust") == [" 007", "007"]


def test_users_file_errors_name_the_file_row_and_column(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text("user_id\nu1\nu2\nu1\n")
    assert read_queries(str(path), "cust") == ["u1", "u2"]  # falls back to user_id; distinct
    path.write_text("cust\nu1\n\n \n")
    with pytest.raises(DataError, match=r"users.csv row 4: column 'cust' is empty"):
        read_queries(str(path), "cust")
    path.write_text("name\nu1\n")
    with pytest.raises(DataError, match=r"no column 'cust' \(data.query_id\) or 'user_id'"):
        read_queries(str(path), "cust")


def test_model_and_k_errors(tmp_path):
    with pytest.raises(ConfigError, match="--model.*neither a serving SavedModel nor a pipeline"):
        find_model(str(tmp_path))
    with pytest.raises(ConfigError, match="--k: must be in 1..10000, got 0"):
        recommend(str(tmp_path), "users.csv", 0, str(tmp_path / "out.csv"))


def test_a_nan_score_aborts_before_anything_is_written(tmp_path):
    """Rows go to OUT.partial, renamed only when every batch is written: a NaN score (or any
    crash) midway leaves neither a partial nor a complete-looking file."""
    import pytest

    from pipelines.recommend import _write, atomic_csv

    out = tmp_path / "recs.csv"
    with pytest.raises(RuntimeError, match="scored query 'u2' NaN"):
        with atomic_csv(str(out)) as writer:
            assert _write(writer, "u1", {}, [b"P1", b"P2"], [2.0, 1.0]) == 2
            _write(writer, "u2", {"segment": "smb"}, [b"P1"], [float("nan")])
    assert not out.exists() and os.listdir(tmp_path) == []  # no partial file either
    with atomic_csv(str(out)) as writer:
        _write(writer, "u1", {}, [b"P1", b"", b"P2"], [2.0, float("-inf"), 1.0])
    assert out.read_text(encoding="utf-8").splitlines() == [
        "user_id,item_id,rank,score,cold", "u1,P1,1,2,0", "u1,P2,2,1,0"]
    table = {"P1": ["Widget", "tools"]}  # P2 is not in the table: empty cells
    with atomic_csv(str(out), extra=["name", "category"]) as writer:
        _write(writer, "new", {}, [b"P1", b"P2"], [0.5, 0.25], True, table, 2)
    assert out.read_text(encoding="utf-8").splitlines() == [
        "user_id,item_id,rank,score,cold,name,category", "new,P1,1,0.5,1,Widget,tools",
        "new,P2,2,0.25,1,,"]
