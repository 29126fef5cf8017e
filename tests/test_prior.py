"""The demand prior (trainer.prior): counts by hand, split boundaries, the scores it adds."""
import math

import numpy as np
import pytest
import tensorflow as tf

from trainer.prior import DAY_SECONDS, DemandPrior, bucket_width

D = DAY_SECONDS
L1, L2, L3, L4 = (math.log1p(n) for n in (1, 2, 3, 4))


def train_rows():
    """Candidate 0 bought twice on day 100, once on 101 and once on 103; candidate 1 once
    on day 102; candidate 2 never (a catalog candidate without training rows)."""
    positions = [0, 0, 0, 0, 1]
    times = [100 * D, 100 * D + 50, 101 * D + 5, 103 * D + 9, 102 * D + 7]
    return np.asarray(positions), np.asarray(times)


def test_counts_by_hand_strictly_before_each_day():
    prior = DemandPrior(*train_rows(), num_candidates=3, windows=[1, 2], all_time=True)
    assert (prior.first_day, prior.width, prior.end, prior.rows) == (100, 1, 4, 5)
    assert prior.terms == ["1d", "2d", "all"]
    table = prior.table.numpy()  # [bucket, candidate, term]: log1p of the counts
    expected_0 = [[0, 0, 0],       # start of day 100: nothing earlier
                  [L2, L2, L2],    # day 101: day 100 held 2
                  [L1, L3, L3],    # day 102: day 101 held 1; days 100-101 held 3
                  [0, L1, L3],     # day 103: day 102 held none of it
                  [L1, L1, L4]]    # the end (day 104): day 103 held 1; all 4
    np.testing.assert_allclose(table[:, 0, :], expected_0, rtol=1e-6)
    np.testing.assert_allclose(table[:, 1, :], [[0, 0, 0], [0, 0, 0], [0, 0, 0],
                                                [L1, L1, L1], [0, L1, L1]], rtol=1e-6)
    assert not table[:, 2, :].any()
    assert prior.as_of == 104 * D


def test_a_held_out_row_reads_the_counts_of_the_fitted_rows_only():
    """The split boundary: held-out rows (after the last fitted day, or with no time) read
    the end, i.e. every fitted row and nothing of their own split; a row inside the fitted
    period reads the counts strictly before its own day (its day's purchases never count)."""
    prior = DemandPrior(*train_rows(), num_candidates=3, windows=[1], all_time=True)
    moments = prior.moments(tf.constant([103 * D + 10, 104 * D, 250 * D, -1, 99 * D, 101 * D]))
    assert moments.numpy().tolist() == [3, 4, 4, 4, 0, 1]
    prior.weights.assign([1.0, 0.5])
    # candidate 0 as of the end: 1 * log1p(1) + 0.5 * log1p(4)
    np.testing.assert_allclose(prior.static().numpy(), [L1 + 0.5 * L4, 0.5 * L1, 0.0],
                               rtol=1e-6)
    # an eval row on day 104 bought candidate 1: it is not counted for anyone
    held = DemandPrior(*train_rows(), num_candidates=3, windows=[1], all_time=True)
    positions, times = train_rows()
    with_eval = DemandPrior(np.append(positions, 1), np.append(times, 104 * D + 3), 3, [1])
    np.testing.assert_array_equal(held.table.numpy()[held.end], prior.table.numpy()[prior.end])
    assert with_eval.table.numpy()[with_eval.end, 1].tolist() == pytest.approx([L1, L2])


def test_pairwise_and_own_scores_agree_with_the_combined_table():
    prior = DemandPrior(*train_rows(), num_candidates=3, windows=[1, 2], all_time=True)
    prior.weights.assign([0.3, -0.2, 0.1])
    combined = (prior.table.numpy() * np.array([0.3, -0.2, 0.1])).sum(axis=2)
    moments = tf.constant([1, 3, 4], tf.int64)
    np.testing.assert_allclose(prior.pairwise(moments).numpy(), combined[[1, 3, 4]], rtol=1e-6)
    np.testing.assert_allclose(prior.pairwise(moments, tf.constant([2, 0])).numpy(),
                               combined[[1, 3, 4]][:, [2, 0]], rtol=1e-6)
    np.testing.assert_allclose(prior.at(moments, tf.constant([0, 1, 0])).numpy(),
                               [combined[1, 0], combined[3, 1], combined[4, 0]], rtol=1e-6)


def test_buckets_widen_to_bound_the_table():
    assert bucket_width(120, 11_000, 6) == 1  # a Ta-Feng-sized log stays in days
    width = bucket_width(8000, 10_000, 4, max_cells=1 << 25)
    assert width > 1 and (math.ceil(8000 / width) + 1) * 10_000 * 4 <= 1 << 25
    positions, times = train_rows()
    prior = DemandPrior(positions, times, 3, windows=[1], all_time=True, max_cells=18)
    assert prior.width == 2 and prior.end == 2  # days 100-101, 102-103
    # the end: the last bucket (days 102-103) held 1 of candidate 0, all time 4
    np.testing.assert_allclose(prior.table.numpy()[2, 0], [L1, L4], rtol=1e-6)


def test_no_timed_row_is_a_clear_error():
    with pytest.raises(ValueError, match="set data.timestamp"):
        DemandPrior(np.array([0, 1]), np.array([-1, -1]), 2, [1])


def test_smoothed_shares_by_hand():
    """smoothing 1: 5 rows over 4 days, so the pseudo-count is 1.25 rows; each window's
    share of a candidate is (n_w + 1.25 * p_all) / (N_w + 1.25), p_all = (n_all + 1) /
    (N_all + 3), all of them strictly before the moment's day."""
    prior = DemandPrior(*train_rows(), num_candidates=3, windows=[1], all_time=True,
                        smoothing=1.0)
    assert prior.pseudo_rows == pytest.approx(1.25)
    table = prior.table.numpy()
    s = 1.25
    # the start of day 102: day 101 held candidate 0 once (N_1 = 1); days 100-101 held
    # candidate 0 three times (N_all = 3)
    p_all = np.array([4, 1, 1]) / 6
    np.testing.assert_allclose(table[2, :, 1], np.log(p_all), rtol=1e-6)
    np.testing.assert_allclose(table[2, :, 0], np.log((np.array([1, 0, 0]) + s * p_all)
                                                      / (1 + s)), rtol=1e-6)
    # the start of day 104 (the end): day 103 held candidate 0 once; all time 4 and 1
    p_end = np.array([5, 2, 1]) / 8
    np.testing.assert_allclose(table[prior.end, :, 0],
                               np.log((np.array([1, 0, 0]) + s * p_end) / (1 + s)), rtol=1e-6)
    # a window with no rows at all (day 100's, read at the start of day 101 for candidate
    # 1 and 2) falls back to the all-time share exactly where the window is empty: the
    # start of day 100 has nothing before it, so every candidate reads the uniform share
    np.testing.assert_allclose(table[0], np.log(1 / 3), rtol=1e-6)


def test_a_nearly_empty_window_ranks_like_all_time_popularity():
    """The window-4 failure: a last day with one purchase of a rare product (against 20 a day
    on the other days) must not put that product above the best-seller once smoothed; with
    raw counts it does."""
    positions = np.array([0] * 1000 + [1] * 5 + [2])
    times = np.array([(d // 20) * D for d in range(1000)] + [d * D for d in range(5)]
                     + [50 * D])
    raw = DemandPrior(positions, times, 3, windows=[1], all_time=False)
    smooth = DemandPrior(positions, times, 3, windows=[1], all_time=False, smoothing=1.0)
    raw.weights.assign([1.0])
    smooth.weights.assign([1.0])
    assert np.argmax(raw.static().numpy()) == 2
    assert np.argmax(smooth.static().numpy()) == 0
