"""Histories and query snapshots never hold an interaction of a later split (issue 9, item 2).

Expectations are worked out by hand from the rows written in each test.
"""
import os

import pytest

from pipelines.config.schema import ConfigError
from pipelines.data.prepare import prepare
from pipelines.validate import validate
from test_prepare import HEADER, config, csv_of, rows_of

HISTORY = "__twotower_history_recent"


def sql_final(tmp_path, rows, cap, repeats="keep", method="hash"):
    """Runs the program's ``final`` step on hand-made ``ranked`` rows (query, time, rank, item).

    Returns per row (file order): its history list and its repeat flag, after
    checking that both formulations (DuckDB frames, BigQuery LEADs) agree.
    """
    from pipelines.data.sql.duck import Runner
    from pipelines.data.sql.histories import final as _final
    from pipelines.data.sql.program import plan

    cfg = config(tmp_path, csv_of([("C1", "smb", "north", "P1", "1", "1")]), overrides=[
        f"query_tower.features.3={{name: recent, kind: history, max_length: {cap}}}",
        f"data.split.method={method}", f"data.repeats={repeats}"])
    p = plan(cfg)
    runner = Runner(str(tmp_path / "spill"))
    runner.con.execute(f"CREATE TABLE ranked ({p.q} VARCHAR, {p.item} VARCHAR, _t DOUBLE, "
                       "_line BIGINT, _rank INTEGER)")
    runner.con.executemany("INSERT INTO ranked VALUES (?, ?, ?, ?, ?)",
                           [[q, i, t, n + 2, r] for n, (q, t, r, i) in enumerate(rows)])
    runner.create("final", _final(p))
    got = runner.con.execute("SELECT _h0, _repeat FROM final ORDER BY _line").fetchall()
    # the BigQuery formulation (constant-offset LEADs), run here on DuckDB, agrees cell by cell
    runner.create("portable", _final(p, portable=True))
    assert runner.con.execute("SELECT _h0, _repeat FROM portable ORDER BY _line").fetchall() == got
    return [(h.split("|") if h else [], repeat) for h, repeat in got]


@pytest.mark.parametrize("method", ["hash", "time"])
def test_each_split_sees_only_its_own_and_earlier_splits(tmp_path, method):
    # one query; (time, split rank, item): train 0, eval 1, test 2, interleaved in time
    rows = [(1, 0, "a"), (2, 1, "b"), (3, 0, "c"), (4, 2, "d"), (5, 1, "e"), (6, 0, "f"),
            (7, 2, "g")]
    if method == "time":  # a time split is monotone: ranks only grow with time
        rows = [(t, min(2, (t - 1) // 3), i) for t, _, i in rows]
    got = [h for h, _ in sql_final(tmp_path, [("q", t, r, i) for t, r, i in rows], cap=10,
                                   method=method)]
    if method == "time":
        assert got == [[], ["a"], ["b", "a"], ["c", "b", "a"], ["d", "c", "b", "a"],
                       ["e", "d", "c", "b", "a"], ["f", "e", "d", "c", "b", "a"]]
        return
    assert got == [[], ["a"],          # eval at 2 sees train a
                   ["a"],              # train at 3 sees train a only (not eval b)
                   ["c", "b", "a"],    # test at 4 sees everything earlier
                   ["c", "b", "a"],    # eval at 5: train a, c and eval b, not test d
                   ["c", "a"],         # train at 6: train only
                   ["f", "e", "d", "c", "b", "a"]]


def test_rows_at_one_moment_do_not_see_each_other_and_the_cap_keeps_the_newest(tmp_path):
    # a basket of three at time 2 (file order a2, b2, c2), then one row at 3
    rows = [("q", 1, 0, "x"), ("q", 2, 0, "a2"), ("q", 2, 0, "b2"), ("q", 2, 0, "c2"),
            ("q", 3, 0, "y"), ("p", 1, 0, "z")]
    got = [h for h, _ in sql_final(tmp_path, rows, cap=2)]
    assert got == [[], ["x"], ["x"], ["x"], ["c2", "b2"], []]


def test_hash_split_histories_hold_no_held_out_interaction(tmp_path):
    """A hash split interleaves splits in time: the histories must still respect them."""
    rows = [("C1", "smb", "north", f"P{1 + i % 3}", str(i), "1") for i in range(40)]
    cfg = config(tmp_path, csv_of(rows), overrides=[
        "data.split.method=hash", "data.split.eval_fraction=0.3", "data.split.test_fraction=0.2",
        "query_tower.features.3={name: recent, kind: history, max_length: 50}"])
    out = str(tmp_path / "out")
    prepare(cfg, out)
    split_of = {}
    for split in ("train", "eval", "test"):
        for row in rows_of(out, split):
            split_of[row["timestamp"]] = split
    assert len(set(split_of.values())) == 3
    order = {"train": 0, "eval": 1, "test": 2}
    item = {int(r[4]): r[3] for r in rows}
    for split in ("train", "eval", "test"):
        for row in rows_of(out, split):
            t = row["timestamp"]
            expected = [item[u] for u in range(t - 1, -1, -1)
                        if order[split_of[u]] <= order[split]]
            assert (row[HISTORY] or "") == "|".join(expected), (split, t)
    # the eval snapshot: the train rows before the first eval interaction, newest first
    first_eval = min(t for t, s in split_of.items() if s == "eval")
    (snapshot,) = rows_of(out, "eval_queries")
    known = [u for u in range(first_eval - 1, -1, -1) if split_of[u] == "train"]
    assert snapshot[HISTORY] == "|".join(item[u] for u in known)
    assert snapshot["timestamp"] == known[0] and snapshot["product_id"] is None


def test_eval_snapshots_by_hand(tmp_path):
    # C1: train P1@1, P2@3, eval P3@9, P1@10; C2: train P2@2, eval P3@8; C3: eval only
    rows = [("C1", "smb", "north", "P1", "1", "1"), ("C2", "ent", "south", "P2", "2", "1"),
            ("C1", "mid", "north", "P2", "3", "1"), ("C2", "ent", "west", "P3", "8", "1"),
            ("C1", "smb", "east", "P3", "9", "1"), ("C1", "smb", "east", "P1", "10", "1"),
            ("C3", "smb", "east", "P1", "11", "1")]
    cfg = config(tmp_path, csv_of(rows), overrides=[
        "data.split.eval_fraction=0.5",
        "query_tower.features.3={name: recent, kind: history, max_length: 5}"])
    out = str(tmp_path / "out")
    report = prepare(cfg, out)
    assert sorted((r["customer_id"], r["timestamp"]) for r in rows_of(out, "train")) == [
        ("C1", 1), ("C1", 3), ("C2", 2)]
    snapshots = rows_of(out, "eval_queries")
    # each as of its latest train row; the eval rows' items never appear
    assert [(r["customer_id"], r["segment"], r["region"], r["timestamp"], r[HISTORY])
            for r in snapshots] == [("C1", "mid", "north", 3, "P2|P1"),
                                    ("C2", "ent", "south", 2, "P2")]
    assert all(r["product_id"] is None and r["category"] is None for r in snapshots)
    assert (report["eval_queries"], report["eval_cold_queries"]) == (2, 1)
    evals = {(r["customer_id"], r["timestamp"]): r[HISTORY] for r in rows_of(out, "eval")}
    assert evals[("C1", 10)] == "P3|P2|P1"  # an eval row sees earlier eval rows


def test_history_without_a_timestamp_is_refused(tmp_path):
    cfg = config(tmp_path, csv_of([("C1", "smb", "north", "P1", "1", "1")]), overrides=[
        "data.timestamp=null", "data.split.method=hash",
        "query_tower.features.3={name: recent, kind: history}"])
    with pytest.raises(ConfigError, match=r"query_tower.features.3: a history holds the query's "
                                          r"earlier interactions, so it needs data.timestamp"):
        validate(cfg, check_data=False)


def test_no_eval_query_with_an_earlier_interaction_is_an_error(tmp_path):
    rows = [("C1", "smb", "north", "P1", "1", "1"), ("C2", "smb", "north", "P2", "2", "1")]
    with pytest.raises(Exception, match="no eval query has an interaction before"):
        prepare(config(tmp_path, csv_of(rows), overrides=["data.split.eval_fraction=0.5"]),
                str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")
    assert HEADER.startswith("customer_id")


def test_repeats_are_later_training_rows_of_a_pair(tmp_path):
    # (time, rank, item): a basket with x twice at 2; y in eval then in train (not a repeat
    # for train: it can't see eval); z in train then test. Only training rows are dropped.
    rows = [(1, 0, "x"), (2, 0, "x"), (2, 0, "x"), (3, 1, "y"), (4, 0, "y"), (5, 1, "y"),
            (6, 0, "z"), (7, 2, "z")]
    got = [r for _, r in sql_final(tmp_path, [("q", t, k, i) for t, k, i in rows], cap=5,
                                   repeats="first")]
    assert got == [False, True, True, False, False, False, False, False]


def test_first_only_keeps_histories_whole_and_drops_re_orders(tmp_path):
    rows = [("C1", "smb", "north", "P1", "1", "1"), ("C1", "smb", "north", "P1", "2", "1"),
            ("C1", "smb", "north", "P2", "3", "1"), ("C1", "smb", "north", "P1", "4", "1"),
            ("C1", "smb", "north", "P3", "5", "1")]
    cfg = config(tmp_path, csv_of(rows), overrides=[
        "data.repeats=first", "data.split.eval_fraction=0.2",
        "query_tower.features.3={name: recent, kind: history, max_length: 5}"])
    out = str(tmp_path / "out")
    report = prepare(cfg, out)
    assert sorted((r["product_id"], r[HISTORY]) for r in rows_of(out, "train")) == [
        ("P1", None), ("P2", "P1|P1")]  # the re-orders at 2 and 4 are not rows, but history
    assert [(r["product_id"], r[HISTORY]) for r in rows_of(out, "eval")] == [
        ("P3", "P1|P2|P1|P1")]
    assert (report["train_rows"], report["eval_rows"], report["repeats_dropped"]) == (2, 1, 2)
