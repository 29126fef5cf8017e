"""The baselines of every held-out evaluation (trainer.baselines), each against figures
worked out by hand on a matrix small enough to follow, and the gate against the best one."""
import numpy as np
import pytest

from pipelines.build.gate import decide
from trainer.baselines import (DAY, Baselines, best_of, ease_items, fit_ease,
                               query_weighted_counts, recency_weights)
from trainer.evaluation import coverage

# Three customers, four products, times in days (the cut is the newest row: day 10).
#   u1: p0 @0, p1 @9     u2: p0 @1, p2 @8     u3: p1 @2, p2 @9, p3 @10
QUERIES = np.asarray([b"u1", b"u1", b"u2", b"u2", b"u3", b"u3", b"u3"], dtype=object)
POSITIONS = np.asarray([0, 1, 0, 2, 1, 2, 3])
TIMES = np.asarray([0, 9, 1, 8, 2, 9, 10]) * DAY


def fitted(**settings):
    return Baselines(QUERIES, POSITIONS, TIMES, 4, dict({"recent_days": 1}, **settings))


def test_popularity_counts_every_seen_row_and_breaks_ties_by_position():
    base = fitted()
    assert base.counts.tolist() == [2, 2, 2, 1]
    # all three at 2: the lower position first, then p3
    assert np.argsort(-base.rows["popularity"]).tolist() == [0, 1, 2, 3]


def test_recent_popularity_counts_the_last_days_before_the_cut():
    base = fitted()  # recent_days 1: rows after day 9, i.e. p3 @10 only
    assert base.about["cut"] == 10 * DAY and base.about["recent_rows"] == 1
    # p3 first; the rest (no recent row) by all-time popularity, then position
    assert np.argsort(-base.rows["recent_popularity"]).tolist() == [3, 0, 1, 2]
    three = fitted(recent_days=3)  # after day 7: p1 @9, p2 @8, p2 @9, p3 @10
    assert np.argsort(-three.rows["recent_popularity"]).tolist() == [2, 1, 3, 0]


def test_recent_and_global_popularity_differ_on_the_same_query_as_worked_out():
    # u2 had p0 and p2 (excluded); held out: p3. Popularity ranks p1, p3: recall@1 0, @2 1;
    # recent popularity ranks p3, p1: recall@1 1.
    found = fitted().evaluate([np.asarray([3])], [np.asarray([0, 2])], [1, 2])
    assert found["popularity"]["recall_at_1"] == 0.0
    assert found["popularity"]["recall_at_2"] == 1.0
    assert found["recent_popularity"]["recall_at_1"] == 1.0
    assert found["about"]["ease_items"] == 4


def test_ease_weights_on_two_items_match_the_closed_form_by_hand():
    # u1 {a, b}, u2 {a, b}, u3 {a}: G = [[3, 2], [2, 2]]; lambda 1: P = (G + I)^-1.
    # For two items B_ab = G_ab / (G_aa + l) = 2 / 4 and B_ba = G_ab / (G_bb + l) = 2 / 3.
    queries = np.asarray([b"u1", b"u1", b"u2", b"u2", b"u3"], dtype=object)
    columns, weights = fit_ease(queries, np.asarray([0, 1, 0, 1, 0]), 2, 2, 1.0)
    assert columns.tolist() == [0, 1]
    np.testing.assert_allclose(weights, [[0.0, 0.5], [2 / 3, 0.0]])


def test_ease_counts_a_repeat_once_and_covers_only_the_most_bought_items():
    # u1 bought a twice: binary X, so the same weights as above
    queries = np.asarray([b"u1", b"u1", b"u1", b"u2", b"u2", b"u3", b"u4"], dtype=object)
    columns, weights = fit_ease(queries, np.asarray([0, 0, 1, 0, 1, 0, 2]), 3, 2, 1.0)
    assert columns.tolist() == [0, 1]  # c (one row) left out: two items fit
    np.testing.assert_allclose(weights, [[0.0, 0.5], [2 / 3, 0.0]])


def test_ease_ranks_what_co_occurs_with_a_query_history():
    # over the four products: u1 had p0 only; p1 and p2 co-occur with p0 once each, p3 never
    base = fitted(ease_l2=1.0)
    scores = base.ease_scores([np.asarray([0])])[0]
    assert scores[3] < min(scores[1], scores[2])
    found = base.evaluate([np.asarray([1])], [np.asarray([0])], [1, 3])
    assert found["ease"]["recall_at_3"] == 1.0


def test_ease_items_fit_the_memory_budget():
    # 24 bytes per item pair: 1 MiB holds isqrt(2**20 / 24) = 209 items
    assert ease_items(1, 10_000) == 209
    assert ease_items(512, 300) == 300  # the whole catalog when it fits
    assert ease_items(512, 1_000_000) == 4729


def test_buy_again_recency_weights_halve_each_half_life():
    weights = recency_weights(np.asarray([10, 9, 8]) * DAY, 10 * DAY, 1.0)
    np.testing.assert_allclose(weights, [1.0, 0.5, 0.25])
    counts = query_weighted_counts([b"u", b"u", b"v"], [4, 4, 1], weights)
    assert counts == {b"u": {4: 1.5}, b"v": {1: 0.25}}


def test_coverage_counts_distinct_candidates_and_the_head_share():
    # two lists of two over four products; the most popular (p0) fills 2 of the 4 slots
    found = coverage(np.asarray([[0, 1], [0, 2]]), 2, np.asarray([5, 1, 3, 0]), head=1)
    assert (found["candidates"], found["catalog"], found["share"]) == (3, 4, 0.75)
    assert found["head_slots"] == 0.5


def test_best_of_names_the_strongest_and_prefers_the_simpler_on_a_tie():
    found = {"popularity": {"recall_at_10": 0.1}, "recent_popularity": {"recall_at_10": 0.2},
             "ease": {"recall_at_10": 0.2}}
    assert best_of(found, "recall_at_10") == "recent_popularity"


def metrics(model, popularity, ease):
    return {"status": "completed", "top_k": [10],
            "evaluation": {"split": "eval", "model": {"recall_at_10": model},
                           "popularity": {"recall_at_10": popularity},
                           "baselines": {"popularity": {"recall_at_10": popularity},
                                         "recent_popularity": {"recall_at_10": popularity / 2},
                                         "ease": {"recall_at_10": ease}}}}


def test_gate_against_best_names_the_baseline_that_decided():
    refused = decide(metrics(0.30, 0.10, 0.35), 1.0, [10], against="best")
    assert refused["blessed"] is False and refused["baseline"] == "ease"
    assert "EASE's 0.3500" in refused["reason"] and "gate_against: best" in refused["reason"]
    blessed = decide(metrics(0.40, 0.10, 0.35), 1.0, [10], against="best")
    assert blessed["blessed"] is True and "EASE's 0.3500, the strongest" in blessed["reason"]
    # the default judges against popularity alone, as before
    assert decide(metrics(0.30, 0.10, 0.35), 1.0, [10])["blessed"] is True


def test_gate_against_best_refuses_a_record_without_baselines():
    record = metrics(0.4, 0.1, 0.2)
    del record["evaluation"]["baselines"]
    assert decide(record, 1.0, [10], against="best")["blessed"] is False


@pytest.mark.parametrize("key,value", [("pipeline.gate_against", "ease"),
                                       ("pipeline.baselines.recent_days", 0),
                                       ("pipeline.baselines.item_item_memory_mb", 1),
                                       ("pipeline.baselines.ease_l2", -1.0)])
def test_validate_refuses_bad_baseline_settings(raw_config, key, value):
    from pipelines.config.schema import Config, ConfigError, apply_overrides
    from pipelines.validate import validate

    with pytest.raises(ConfigError) as err:
        validate(Config.from_dict(apply_overrides(raw_config, [f"{key}={value}"])),
                 check_data=False)
    assert key in [k for k, _ in err.value.problems]
