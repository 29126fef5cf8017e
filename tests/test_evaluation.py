"""Full-catalog evaluation (numpy only): exact, hand-computed expectations."""
import math

import numpy as np
import pytest

from trainer.evaluation import (evaluate_full_catalog, evaluation_queries, popularity,
                                ranking_metrics, top_k_excluding)

D1, D2, D3 = 1.0, 1.0 / math.log2(3), 1.0 / math.log2(4)  # discounts of ranks 1, 2, 3


def ints(*values):
    return np.asarray(values, dtype=np.int64)


# ---------------------------------------------------------------- top_k_excluding

SCORES = np.array([[0.1, 0.9, 0.3, 0.7, 0.5],
                   [0.8, 0.2, 0.6, 0.4, 1.0]])


def test_top_k_excluding_returns_best_first_without_excluded_columns():
    scores = SCORES.copy()
    top = top_k_excluding(scores, [ints(1), ints(4, 0)], 3)
    # row 0 without col 1: 0.7 (3), 0.5 (4), 0.3 (2); row 1 without 4, 0: 0.6 (2), 0.4 (3), 0.2 (1)
    np.testing.assert_array_equal(top, [[3, 4, 2], [2, 3, 1]])
    np.testing.assert_array_equal(scores, SCORES)  # input not modified


def test_top_k_excluding_without_exclusions_and_k1():
    np.testing.assert_array_equal(top_k_excluding(SCORES, [ints(), ints()], 5),
                                  [[1, 3, 4, 2, 0], [4, 0, 2, 3, 1]])
    np.testing.assert_array_equal(top_k_excluding(SCORES, [ints(1, 3), ints(4)], 1), [[4], [0]])


def test_top_k_excluding_never_returns_excluded_columns_on_random_scores():
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(20, 30))
    exclude = [rng.choice(30, size=10, replace=False) for _ in range(20)]
    top = top_k_excluding(scores, exclude, 20)
    for row in range(20):
        assert not set(top[row]) & set(exclude[row])
        allowed = np.setdiff1d(np.arange(30), exclude[row])
        expected = allowed[np.argsort(-scores[row, allowed])]
        np.testing.assert_array_equal(top[row], expected)


# ---------------------------------------------------------------- ranking_metrics

def test_ranking_metrics_by_hand():
    top = np.array([[2, 0, 4],    # truth {0, 4, 5}: hits at ranks 2 and 3
                    [1, 3, 0],    # truth {3}: hit at rank 2
                    [5, 1, 2]])   # truth {5, 7}: hit at rank 1
    truth = [ints(0, 4, 5), ints(3), ints(5, 7)]
    got = ranking_metrics(top, truth, [1, 3])
    assert set(got) == {"recall_at_1", "ndcg_at_1", "hit_rate_at_1",
                        "recall_at_3", "ndcg_at_3", "hit_rate_at_3"}
    assert got["recall_at_1"] == pytest.approx((0 + 0 + 1 / 2) / 3)
    assert got["ndcg_at_1"] == pytest.approx((0 + 0 + 1) / 3)
    assert got["hit_rate_at_1"] == pytest.approx(1 / 3)
    assert got["recall_at_3"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    # ideal DCG: min(|relevant|, 3) = 3, 1, 2 leading discounts
    ndcg3 = ((D2 + D3) / (D1 + D2 + D3) + D2 / D1 + D1 / (D1 + D2)) / 3
    assert got["ndcg_at_3"] == pytest.approx(ndcg3)
    assert got["ndcg_at_3"] == pytest.approx(0.591599, abs=1e-6)
    assert got["hit_rate_at_3"] == pytest.approx(1.0)


def test_ranking_metrics_perfect_and_empty_ranking():
    top = np.array([[3, 1, 9], [7, 8, 9]])
    got = ranking_metrics(top, [ints(1, 3), ints(0)], [2])
    assert got == pytest.approx({"recall_at_2": 0.5, "ndcg_at_2": 0.5, "hit_rate_at_2": 0.5})


def test_ranking_metrics_without_queries_raises():
    with pytest.raises(ValueError, match="no queries"):
        ranking_metrics(np.zeros((0, 3), dtype=np.int64), [], [1])


# ---------------------------------------------------------------- evaluation_queries

def test_evaluation_queries_filters_exactly_and_counts_what_it_leaves_out():
    seen = {b"q0": ints(1, 2), b"q1": ints(0), b"q3": ints(4)}
    held = {b"q3": ints(0, 5), b"q2": ints(1), b"q1": ints(0), b"q0": ints(2, 3)}
    queries, truth, exclude, counts = evaluation_queries(seen, held, [b"q0", b"q1", b"q3"])
    # q0: 2 seen -> [3]; q1: only a seen pair -> no new items; q2: no snapshot -> cold;
    # q3: both new
    assert queries == [b"q0", b"q3"]
    assert [t.tolist() for t in truth] == [[3], [0, 5]]
    assert [e.tolist() for e in exclude] == [[1, 2], [4]]
    assert counts == {"held_out_queries": 4, "cold_queries": 1, "queries_without_new_items": 1}


def test_a_query_with_a_snapshot_but_nothing_seen_keeps_all_its_items():
    queries, truth, exclude, counts = evaluation_queries({}, {b"q": ints(2, 7)}, [b"q"])
    assert queries == [b"q"] and truth[0].tolist() == [2, 7] and exclude[0].tolist() == []
    assert counts["cold_queries"] == 0


def test_evaluation_queries_nothing_left():
    queries, truth, exclude, counts = evaluation_queries({b"q": ints(1)}, {b"q": ints(1)},
                                                         [b"q"])
    assert queries == [] and truth == [] and exclude == []
    assert counts == {"held_out_queries": 1, "cold_queries": 0, "queries_without_new_items": 1}


# ---------------------------------------------------------------- popularity

def test_popularity_counts_ignore_positions_outside_the_catalog():
    counts = popularity(ints(0, 2, 2, -1, 1, 2, 7, 0, 4), num_candidates=4)
    assert counts.dtype == np.float64
    np.testing.assert_array_equal(counts, [2.0, 1.0, 3.0, 0.0])


# ---------------------------------------------------------------- evaluate_full_catalog

CANDIDATES = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [-1.0, 0.0], [0.6, 0.8]])
QUERIES = np.array([[1.0, 0.0], [0.0, 1.0]])
# q0 scores: 1, 0, .8, -1, .6 -> 0, 2, 4, 1, 3 ; q1 scores: 0, 1, .6, 0, .8 -> 1, 4, 2, ...
COUNTS = np.array([3.0, 5.0, 3.0, 0.0, 1.0])  # popularity: 1, then 0 before 2 (tie), 4, 3
EXCLUDE = [ints(0), ints(1)]
TRUTH = [ints(2, 4), ints(0)]


def test_evaluate_full_catalog_model_and_popularity_by_hand():
    got = evaluate_full_catalog(QUERIES, CANDIDATES, COUNTS, TRUTH, EXCLUDE, [1, 2])
    assert got["queries"] == 2
    # model: q0 (without 0) -> [2, 4]; q1 (without 1) -> [4, 2]
    assert got["model"]["recall_at_1"] == pytest.approx((1 / 2 + 0) / 2)
    assert got["model"]["recall_at_2"] == pytest.approx((1 + 0) / 2)
    assert got["model"]["hit_rate_at_2"] == pytest.approx(1 / 2)
    assert got["model"]["ndcg_at_2"] == pytest.approx(1 / 2)
    # popularity: q0 (without 0) -> [1, 2]; q1 (without 1) -> [0, 2] (0 wins the tie with 2)
    assert got["popularity"]["recall_at_1"] == pytest.approx((0 + 1) / 2)
    assert got["popularity"]["recall_at_2"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["popularity"]["ndcg_at_2"] == pytest.approx((D2 / (D1 + D2) + 1) / 2)


def test_popularity_tie_breaks_by_lower_index_whatever_the_order():
    counts = np.array([0.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    for first in range(1, 6):
        got = evaluate_full_catalog(QUERIES[:1], np.ones((6, 2)), counts, [ints(first)],
                                    [ints()], [1])
        assert got["popularity"]["recall_at_1"] == (1.0 if first == 1 else 0.0)


def test_training_items_are_never_counted():
    # Candidate 0 is q0's best-scoring and its most popular item, but it is a training item.
    got = evaluate_full_catalog(QUERIES[:1], CANDIDATES, np.array([9.0, 1, 1, 1, 1]),
                                [ints(0)], [ints(0)], [1, 2, 4])
    for name in ("model", "popularity"):
        assert all(value == 0.0 for value in got[name].values()), got[name]


def test_end_to_end_with_evaluation_queries():
    seen = {b"q0": ints(0), b"q1": ints(1, 3)}
    held = {b"q0": ints(0, 4), b"q1": ints(1), b"q5": ints(2)}  # q1 only re-buys, q5 is cold
    _, truth, exclude, _ = evaluation_queries(seen, held, [b"q0", b"q1"])
    got = evaluate_full_catalog(QUERIES[:1], CANDIDATES, COUNTS, truth, exclude, [1, 2])
    assert got["queries"] == 1
    # q0 without 0 ranks 2 then 4: 4 is found at rank 2, 0 never counts
    assert got["model"] == pytest.approx({"recall_at_1": 0.0, "ndcg_at_1": 0.0,
                                          "hit_rate_at_1": 0.0, "recall_at_2": 1.0,
                                          "ndcg_at_2": D2, "hit_rate_at_2": 1.0})
    alone = evaluate_full_catalog(QUERIES[:1], CANDIDATES, COUNTS, truth, exclude, [1, 2],
                                  with_popularity=False)
    assert alone["model"] == got["model"] and "popularity" not in alone


def test_chunked_evaluation_matches_small_case():
    copies = 515  # 1030 queries: more than one 1024-query chunk
    got = evaluate_full_catalog(np.tile(QUERIES, (copies, 1)), CANDIDATES, COUNTS,
                                TRUTH * copies, EXCLUDE * copies, [1, 2])
    small = evaluate_full_catalog(QUERIES, CANDIDATES, COUNTS, TRUTH, EXCLUDE, [1, 2])
    assert got["queries"] == 1030
    assert got["model"] == pytest.approx(small["model"])
    assert got["popularity"] == pytest.approx(small["popularity"])


def test_popularity_ties_break_exactly_for_huge_counts():
    counts = np.full(200, 1e8)
    result = evaluate_full_catalog(np.zeros((1, 2)), np.zeros((200, 2)), counts,
                                   [np.array([3])], [np.array([], dtype=np.int64)], [4, 10])
    assert result["popularity"]["recall_at_4"] == 1.0  # ranks 0, 1, 2, 3 by index


def test_buy_again_ranks_each_querys_own_candidates_by_hand():
    from trainer.evaluation import buy_again_metrics, rank_within

    candidates = [ints(3, 5, 8), ints(1, 2)]
    scores = [[0.1, 0.9, 0.5], [0.3, 0.3]]                   # q0: 5, 8, 3; q1: tie -> 1, 2
    ranked = rank_within(candidates, scores, 2)
    assert [r.tolist() for r in ranked] == [[5, 8], [1, 2]]
    frequency = rank_within(candidates, [[4, 1, 1], [1, 7]], 2)  # q0: 3, then 5 (tie, lower)
    assert [r.tolist() for r in frequency] == [[3, 5], [2, 1]]
    got = buy_again_metrics(candidates, {"model": ranked, "frequency": frequency},
                            [ints(3, 8), ints(2)], [1, 2])
    # model: q0 top1 5 (miss), top2 adds 8 (1/2); q1 top1 1 (miss), top2 adds 2 (1)
    assert got["model"] == pytest.approx({"recall_at_1": 0.0, "hit_rate_at_1": 0.0,
                                          "recall_at_2": 0.75, "hit_rate_at_2": 1.0})
    # frequency: q0 top1 3 (1/2), top2 + 5 (1/2); q1 top1 2 (1)
    assert got["frequency"] == pytest.approx({"recall_at_1": 0.75, "hit_rate_at_1": 1.0,
                                              "recall_at_2": 0.75, "hit_rate_at_2": 1.0})
    assert got["queries"] == 2 and got["mean_candidates"] == 2.5
