"""The validation slice's cut (trainer.validation_slice), on rows small enough to carve by
hand: the global cut for a purchase log, the per-query cut for a user_time split."""
import numpy as np
import pytest

from trainer.validation_slice import NEVER, carve_per_query, carve_slice

DAY = 86_400


def test_the_global_cut_is_the_last_fraction_by_time_and_keeps_a_moment_whole():
    times = np.asarray([1, 2, 3, 4, 5, 6, 7, 8, 9, 9]) * DAY
    cut, fit = carve_slice(times, 0.2)  # the 8th smallest (0-based int(10 * 0.8)): day 9
    assert cut == 9 * DAY and fit.tolist() == [True] * 8 + [False] * 2
    cut, fit = carve_slice(times, 0.1)  # the 9th smallest is day 9 too: its tie comes along
    assert cut == 9 * DAY and fit.sum() == 8


def test_the_global_cut_refuses_a_fraction_that_leaves_nothing_to_fit():
    with pytest.raises(ValueError, match="no row is left to fit"):
        carve_slice(np.full(5, DAY), 0.5)


def test_each_query_gets_its_own_latest_rows():
    # a: 10 rows (days 1..10) -> int(10 * 0.2) = 2 latest; b: 3 rows -> int(0.6) = 0, at
    # least one; c: one row -> stays fit; rows are given out of order, as a shuffled file is
    queries = np.asarray([b"b", b"a", b"c"] + [b"a"] * 9 + [b"b", b"b"], dtype=object)
    times = np.asarray([30, 1, 50] + list(range(2, 11)) + [10, 20]) * DAY
    cuts, fit = carve_per_query(queries, times, 0.2)
    assert cuts == {b"a": 9 * DAY, b"b": 30 * DAY}
    expected = [False, True, True] + [True] * 7 + [False, False] + [True, True]
    assert fit.tolist() == expected


def test_a_basket_is_never_split_and_a_one_moment_query_has_no_slice():
    # a's latest two rows would be one of its day-5 basket's three: the basket goes whole;
    # b's two rows are one moment: it has no earlier row, so no slice
    queries = np.asarray([b"a"] * 5 + [b"b"] * 2, dtype=object)
    times = np.asarray([1, 2, 5, 5, 5, 7, 7]) * DAY
    cuts, fit = carve_per_query(queries, times, 0.4)
    assert cuts == {b"a": 5 * DAY} and b"b" not in cuts
    assert fit.tolist() == [True, True, False, False, False, True, True]
    assert NEVER > times.max()


def test_a_per_query_slice_with_nothing_in_it_is_one_line():
    with pytest.raises(ValueError, match="no query has a train row after an earlier one"):
        carve_per_query(np.asarray([b"a", b"b"], dtype=object), np.asarray([DAY, DAY]), 0.5)
