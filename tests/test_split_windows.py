"""Time-window splits (data.split.method days / dates) on exact UTC day boundaries.

The expected split of every row is worked out by hand from its timestamp; the
rows sit on the last and first second of days, and one is written with a
negative UTC offset that moves it across midnight (an off-by-one-day error
happened in the field).
"""
import calendar
import datetime

import pytest

from pipelines.config.schema import ConfigError
from pipelines.data.prepare import prepare
from pipelines.validate import validate
from test_prepare import HEADER, config, rows_of

ROWS = [  # customer, product, timestamp as written, split with eval 2024-03-30, test 03-31
    ("C1", "P1", "2024-03-01T10:00:00Z", "train"),
    ("C1", "P2", "2024-03-29T23:59:59Z", "train"),      # last second before the window
    ("C1", "P3", "2024-03-30T00:00:00Z", "eval"),       # its first second
    ("C1", "P1", "2024-03-29T23:30:00-01:00", "eval"),  # = 2024-03-30T00:30:00Z
    ("C2", "P1", "2024-03-28T12:00:00Z", "train"),
    ("C2", "P3", "2024-03-30T23:59:59Z", "eval"),       # last second of eval
    ("C2", "P2", "2024-03-31T00:00:00Z", "test"),       # first second of test
    ("C2", "P1", "2024-03-31T23:59:59Z", "test"),       # the newest row: day L
    ("C3", "P2", "2024-03-20T08:00:00Z", "train"),
    ("C3", "P3", "2024-03-31T09:00:00+09:00", "test"),  # = 2024-03-31T00:00:00Z
]


def epoch(text):
    return calendar.timegm(datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
                           .utctimetuple())


def assigned(tmp_path, overrides, rows=ROWS):
    text = HEADER + "\n" + "".join(f"{q},smb,north,{i},{t},1\n" for q, i, t, _ in rows)
    cfg = config(tmp_path, text, overrides=["data.timestamp=timestamp"] + overrides)
    validate(cfg)
    out = str(tmp_path / "out")
    report = prepare(cfg, out)
    got = {}
    for split in ("train", "eval", "test"):
        if f"{split}_rows" in report:
            for row in rows_of(out, split):
                got[(row["customer_id"], row["timestamp"])] = split
    return got, report


def expected(rows=ROWS, merge_test=False):
    return {(q, epoch(t)): ("eval" if merge_test and s == "test" else s) for q, _, t, s in rows}


def test_last_days_hold_out_whole_utc_days(tmp_path):
    got, report = assigned(tmp_path, ["data.split.method=days", "data.split.eval_days=1",
                                      "data.split.test_days=1"])
    assert got == expected()
    assert report["time_cut"] == epoch("2024-03-30T00:00:00Z")
    assert report["test_cut"] == epoch("2024-03-31T00:00:00Z")
    assert (report["train_rows"], report["eval_rows"], report["test_rows"]) == (4, 3, 3)


def test_last_days_without_test(tmp_path):
    got, report = assigned(tmp_path, ["data.split.method=days", "data.split.eval_days=2"])
    assert got == expected(merge_test=True)
    assert "test_rows" not in report and report["time_cut"] == epoch("2024-03-30T00:00:00Z")


def test_explicit_dates_give_the_same_windows(tmp_path):
    got, report = assigned(tmp_path, ["data.split.method=dates",
                                      "data.split.eval_from=2024-03-30",
                                      "data.split.test_from=2024-03-31"])
    assert got == expected()
    assert report["test_cut"] == epoch("2024-03-31T00:00:00Z")


def test_a_date_one_day_earlier_moves_exactly_that_day(tmp_path):
    got, _ = assigned(tmp_path, ["data.split.method=dates", "data.split.eval_from=2024-03-29"])
    want = expected(merge_test=True)
    for q, _, t, _ in ROWS:
        if t.startswith(("2024-03-29T23:59:59Z", "2024-03-28")):
            want[(q, epoch(t))] = "eval" if t.startswith("2024-03-29") else "train"
    assert got == want


def test_an_empty_window_is_refused_with_the_window_named(tmp_path):
    with pytest.raises(Exception, match="eval_from/test_from"):
        assigned(tmp_path, ["data.split.method=dates", "data.split.eval_from=2030-01-01"])


@pytest.mark.parametrize("overrides, key", [
    (["data.split.method=dates"], "data.split.eval_from"),
    (["data.split.method=dates", "data.split.eval_from=2024-3-1"], "data.split.eval_from"),
    (["data.split.method=dates", "data.split.eval_from=2024-02-30"], "data.split.eval_from"),
    (["data.split.method=dates", "data.split.eval_from=2024-03-02",
      "data.split.test_from=2024-03-01"], "data.split.test_from"),
    (["data.split.method=days", "data.split.eval_days=0"], "data.split.eval_days"),
    (["data.split.method=days", "data.split.test_fraction=0.1"], "data.split.test_fraction"),
    (["data.split.method=days", "data.timestamp=null"], "data.split.method"),
])
def test_bad_windows_are_refused_by_key(tmp_path, overrides, key):
    text = HEADER + "\nC1,smb,north,P1,2024-03-01T10:00:00Z,1\n"
    cfg = config(tmp_path, text, overrides=["data.timestamp=timestamp"] + overrides)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg, check_data=False)
