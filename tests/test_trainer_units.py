"""Trainer building blocks (TensorFlow): candidate table, index, optimizer, towers, monitors."""
import copy
import time
import types
import math

import numpy as np
import pytest
import tensorflow as tf

from pipelines.config.schema import Config
from tests.conftest import demo_raw
from trainer.data import catalog_table, positions_of, query_groups
from trainer.model import ExactIndex, clip_statistic, make_optimizer
from trainer.monitoring import CollapseMonitor, MetricsRecorder
from trainer.towers import build_tower, drop_to_oov, embedding_rows, tower_inputs
from transform.naming import CANDIDATE_ID, CANDIDATE_KEY, CANDIDATE_POSITION, QUERY_KEY

# ---------------------------------------------------------------- data


def catalog_arrays():
    return {
        CANDIDATE_ID: np.array([b"P3", b"007", b" A1 ", b"P10"], dtype=object),
        "category_xf": np.array([7, 5, 6, 9], dtype=np.int64),
        "tags_xf": np.array([[1, -1], [0, 2], [3, -1], [5, 5]]),
        "unused_xf": np.array([1, 2, 3, 4]),
    }


def test_catalog_table_one_row_per_raw_id_ordered_by_id():
    table = catalog_table(catalog_arrays(), ["category_xf", "tags_xf"])
    assert set(table) == {CANDIDATE_ID, CANDIDATE_POSITION, "category_xf", "tags_xf"}
    assert table[CANDIDATE_ID].tolist() == [b" A1 ", b"007", b"P10", b"P3"]
    np.testing.assert_array_equal(table[CANDIDATE_POSITION], [0, 1, 2, 3])
    np.testing.assert_array_equal(table["category_xf"], [6, 5, 9, 7])
    np.testing.assert_array_equal(table["tags_xf"], [[3, -1], [0, 2], [5, 5], [1, -1]])


def test_catalog_table_rejects_a_repeated_id():
    arrays = catalog_arrays()
    arrays[CANDIDATE_ID][3] = b"007"
    with pytest.raises(ValueError, match="candidate id b'007' appears 2 times in the catalog"):
        catalog_table(arrays, ["category_xf"])


def test_positions_of_raw_ids_exactly():
    catalog = np.array([b" A1 ", b"007", b"P10"], dtype=object)
    got = positions_of(np.array([b"007", b"7", b"A1", b" A1 ", b"P10", b""], dtype=object), catalog)
    np.testing.assert_array_equal(got, [1, -1, -1, 0, 2, -1])


def test_query_groups_by_raw_id_without_outside_positions():
    groups = query_groups(np.array([b"u2", b"u0", b"u2", b"u1", b"u0", b"u2", b"u3"], dtype=object),
                          np.array([5, 4, 1, 3, 3, 5, -1]))
    assert sorted(groups) == [b"u0", b"u1", b"u2"]  # u3 had only an outside candidate
    for key, values in {b"u0": [3, 4], b"u1": [3], b"u2": [1, 5]}.items():
        np.testing.assert_array_equal(groups[key], values)


# ---------------------------------------------------------------- model

QUERIES = tf.constant([[1.0, 0.5], [-2.0, 1.0]])


def test_exact_index_top_k_and_reindex_in_place():
    layer = ExactIndex(np.array([10, 11, 12, 13], dtype=np.int64), dim=2, k=2)
    layer.index(tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]))
    compiled = tf.function(lambda q: layer(q))
    values, ids = compiled(QUERIES)
    # q0 scores 1, .5, 1.5, -1 ; q1 scores -2, 1, -1, 2
    np.testing.assert_array_equal(values.numpy(), [[1.5, 1.0], [2.0, 1.0]])
    np.testing.assert_array_equal(ids.numpy(), [[12, 10], [13, 11]])
    values, ids = layer(QUERIES, k=1)
    np.testing.assert_array_equal(values.numpy(), [[1.5], [2.0]])
    np.testing.assert_array_equal(ids.numpy(), [[12], [13]])

    variables = len(layer.variables)
    layer.index(tf.constant([[0.0, 1.0], [1.0, 0.0], [-1.0, -0.5], [0.0, 0.25]]),
                identifiers=np.array([20, 21, 22, 23], dtype=np.int64))
    assert len(layer.variables) == variables == 2
    values, ids = compiled(QUERIES)  # the traced function sees the new table
    # q0 scores .5, 1, -1.25, .125 ; q1 scores 1, -2, 1.5, .25
    np.testing.assert_array_equal(values.numpy(), [[1.0, 0.5], [1.5, 1.0]])
    np.testing.assert_array_equal(ids.numpy(), [[21, 20], [22, 20]])
    with pytest.raises(TypeError):
        layer.index_from_dataset(None)


def training_cfg(**overrides):
    return {"learning_rate": 0.01, "optimizer": "adam", "clipping": "global_norm",
            "clip_value": 5.0, **overrides}


@pytest.mark.parametrize("mode,attribute", [("global_norm", "global_clipnorm"),
                                            ("norm", "clipnorm"), ("value", "clipvalue"),
                                            ("none", None)])
def test_make_optimizer_clipping(mode, attribute):
    optimizer = make_optimizer(training_cfg(clipping=mode, clip_value=2.5))
    assert isinstance(optimizer, tf.keras.optimizers.Adam)
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    for name in ("global_clipnorm", "clipnorm", "clipvalue"):
        assert getattr(optimizer, name) == (2.5 if name == attribute else None)


def test_make_optimizer_kinds_and_errors():
    assert isinstance(make_optimizer(training_cfg(optimizer="sgd")), tf.keras.optimizers.SGD)
    assert isinstance(make_optimizer(training_cfg(optimizer="adagrad")),
                      tf.keras.optimizers.Adagrad)
    for rate in (0, 0.0, -1, float("nan"), float("inf"), "0.1", None):
        with pytest.raises(ValueError, match=r"training\.learning_rate: .* (is out of range: "
                                             r"use \(0, 10\)|is not a number)"):
            make_optimizer(training_cfg(learning_rate=rate))
    with pytest.raises(ValueError, match="unknown training.clipping"):
        make_optimizer(training_cfg(clipping="sometimes"))


# ---------------------------------------------------------------- towers

VOCAB = {"_candidate_id": 6, "vocab_category": 3, "vocab_tags": 4, "_query_id": 9,
         "vocab_segment": 2, "vocab_region": 5}


def tower_spec():
    spec = copy.deepcopy(Config.from_dict(demo_raw("/nonexistent")).to_dict())
    tags = dict(spec["candidate_tower"]["features"][1], name="tags", column="tags",
                kind="multi_categorical", embedding_dim=4)
    spec["candidate_tower"]["features"].append(tags)
    spec["candidate_tower"]["layers"] = [16]
    spec["model"]["output_dim"] = 8
    return spec


FEATURES = {CANDIDATE_KEY: tf.constant([0, 1, 5], tf.int64),
            "category_xf": tf.constant([0, 2, 3], tf.int64),
            "price_xf": tf.constant([0.5, -1.0, 2.0]),
            "tags_xf": tf.constant([[0, 3, -1], [2, -1, -1], [-1, -1, -1]], tf.int64)}


def test_tower_shapes_tables_and_l2_norm():
    tf.keras.utils.set_random_seed(1)
    spec = tower_spec()
    info = tower_inputs(spec, "candidate_tower")
    assert [i["key"] for i in info] == [CANDIDATE_KEY, "category_xf", "price_xf", "tags_xf"]
    tower = build_tower(spec, "candidate_tower", VOCAB.__getitem__)
    out = tower(FEATURES)
    assert out.shape == (3, 8)
    np.testing.assert_allclose(tf.norm(out, axis=1).numpy(), 1.0, rtol=1e-5)
    # tables: vocabulary + 1 OOV bucket; product uses model.embedding_dim (32)
    shapes = [(e.input_dim, e.output_dim) if e else None for e in tower.embeddings]
    assert shapes == [(7, 32), (4, 8), None, (5, 4)]
    bucketized = {"shared": False, "vocabulary": None, "rows": 11, "oov_buckets": 1}
    assert embedding_rows(bucketized, VOCAB.__getitem__) == 11
    shared = {"shared": True, "vocabulary": "_candidate_id", "rows": None, "oov_buckets": 1}
    assert embedding_rows(shared, VOCAB.__getitem__) == 7
    tower.l2_normalize = False
    raw = tower(FEATURES).numpy()
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(out.numpy(), raw / np.linalg.norm(raw, axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    query = build_tower(spec, "query_tower", VOCAB.__getitem__)
    got = query({QUERY_KEY: tf.constant([0, 8], tf.int64), "segment_xf": tf.constant([1, 2],
                 tf.int64), "region_xf": tf.constant([4, 0], tf.int64)})
    assert got.shape == (2, 8)


def test_multi_valued_input_mean_pools_real_values_only():
    tower = build_tower(tower_spec(), "candidate_tower", VOCAB.__getitem__)
    encoded = tower.encode_inputs(FEATURES).numpy()
    table = tower.embeddings[3].embeddings.numpy()
    pooled = encoded[:, 41:45]
    np.testing.assert_allclose(pooled[0], (table[0] + table[3]) / 2, rtol=1e-6)
    np.testing.assert_allclose(pooled[1], table[2], rtol=1e-6)
    np.testing.assert_array_equal(pooled[2], np.zeros(4))  # all padding: a zero vector
    np.testing.assert_array_equal(encoded[:, 40], [0.5, -1.0, 2.0])  # numeric enters as is
    category = tower.embeddings[1].embeddings.numpy()
    np.testing.assert_array_equal(encoded[:, 32:40], category[[0, 2, 3]])


def test_attention_pooling_ignores_padding_and_pools_an_empty_history_to_zeros():
    from trainer.towers import HistoryAttention

    tf.keras.utils.set_random_seed(1)
    block = HistoryAttention(4, 3)
    items = tf.random.normal([3, 3, 4])
    mask = tf.constant([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    other = tf.concat([items[:1, :2], 100.0 + tf.zeros([1, 1, 4])], axis=1)  # another pad value
    pooled = block(items, mask).numpy()
    np.testing.assert_allclose(block(other, mask[:1]).numpy()[0], pooled[0], rtol=1e-5)
    np.testing.assert_array_equal(pooled[2], np.zeros(4))
    assert np.isfinite(pooled).all()
    # the order matters (positions are embedded): swapping the two real items changes it
    swapped = tf.stack([items[0, 1], items[0, 0], items[0, 2]])[tf.newaxis]
    assert not np.allclose(block(swapped, mask[:1]).numpy()[0], pooled[0])


# ---------------------------------------------------------------- monitoring

def logs(loss=1.0, query=0.0, candidate=0.0, clipped=0.0):
    return {"batch_loss": tf.constant(loss), "query_grad_norm": tf.constant(query),
            "candidate_grad_norm": tf.constant(candidate),
            "grad_norm": tf.constant(math.hypot(query, candidate)),
            "clipped": tf.constant(clipped)}


def monitor_with(record, patience=3):
    monitor = CollapseMonitor(patience, 1e-7, record, learning_rate=0.01)
    monitor.set_model(types.SimpleNamespace(stop_training=False))
    return monitor


def test_collapse_monitor_streak_resets_then_stops():
    record = {"stopped": None, "collapse_detected": False}
    monitor = monitor_with(record)
    monitor.on_epoch_begin(1)
    at_threshold = {"batch_loss": 1.0, "query_grad_norm": 1e-7, "candidate_grad_norm": 0.0}
    for step, batch in enumerate([logs(), logs(), logs(candidate=1e-3), at_threshold,
                                  logs(candidate=1e-8)]):
        monitor.on_train_batch_end(step, batch)
        assert not monitor.model.stop_training and record["stopped"] is None
    monitor.on_train_batch_end(5, logs())  # third step in a row at or below 1e-7
    assert monitor.model.stop_training and record["collapse_detected"] is True
    stopped = record["stopped"]
    assert (stopped["reason"], stopped["step"], stopped["epoch"]) == ("gradient_collapse", 6, 2)
    assert "learning rate" in stopped["message"] and "0.01" in stopped["message"]


@pytest.mark.parametrize("batch", [logs(loss=float("nan"), query=1.0, candidate=1.0),
                                   logs(loss=float("inf"), query=1.0, candidate=1.0),
                                   logs(query=float("nan"), candidate=1.0)])
def test_collapse_monitor_stops_on_non_finite(batch):
    record = {"stopped": None, "collapse_detected": False}
    monitor = monitor_with(record)
    monitor.on_train_batch_end(0, logs(query=1.0))
    monitor.on_train_batch_end(1, batch)
    assert monitor.model.stop_training
    assert record["stopped"]["reason"] == "non_finite_loss" and record["stopped"]["step"] == 2
    assert record["collapse_detected"] is False


def run_callbacks(order):
    record = {"stopped": None, "collapse_detected": False}
    towers = {"query": types.SimpleNamespace(trainable_variables=[tf.Variable([3.0, 4.0])]),
              "candidate": types.SimpleNamespace(trainable_variables=[tf.Variable([[1.0]]),
                                                                      tf.Variable([0.0])])}
    model = types.SimpleNamespace(stop_training=False, optimizer=types.SimpleNamespace(
        learning_rate=tf.Variable(0.25)))
    callbacks = {"monitor": CollapseMonitor(2, 1e-7, record, 0.25),
                 "recorder": MetricsRecorder(record, towers)}
    callbacks = [callbacks[name] for name in order]
    for callback in callbacks:
        callback.set_model(model)
        callback.on_epoch_begin(0)
    for step, batch in enumerate([logs(query=2.0, candidate=1.0, clipped=1.0), logs(), logs()]):
        for callback in callbacks:
            callback.on_train_batch_end(step, batch)
    for callback in callbacks:
        callback.on_epoch_end(0, {"loss": 0.5, "val_top_10": 0.75})
    for epoch in record["epochs"]:  # wall time: positive, and not part of the comparison
        assert epoch.pop("seconds") >= epoch.pop("train_seconds") >= 0
    return record, model.stop_training


def test_an_epochs_train_seconds_leave_out_the_evaluation_after_its_last_step():
    """examples_per_second (trainer.training) divides by train_seconds: the eval split's
    metrics and the held-out pass, run after the last step, are not training speed."""
    record = {}
    towers = {"query": tf.keras.layers.Dense(1), "candidate": tf.keras.layers.Dense(1)}
    recorder = MetricsRecorder(record, towers)
    recorder.set_model(types.SimpleNamespace(optimizer=types.SimpleNamespace(
        learning_rate=tf.Variable(0.1))))
    recorder.on_epoch_begin(0)
    time.sleep(0.2)
    recorder.on_train_batch_end(0, logs())
    time.sleep(0.5)  # what an evaluation would take
    recorder.on_epoch_end(0, {"loss": 0.5})
    epoch = record["epochs"][0]
    assert 0.2 <= epoch["train_seconds"] < 0.5 <= epoch["seconds"] - epoch["train_seconds"]


def test_monitor_and_recorder_are_order_independent():
    first, stopped_a = run_callbacks(["monitor", "recorder"])
    second, stopped_b = run_callbacks(["recorder", "monitor"])
    assert first == second and stopped_a and stopped_b
    assert first["stopped"]["reason"] == "gradient_collapse" and first["stopped"]["step"] == 3
    assert first["epochs"] == [{
        "epoch": 1, "loss": 0.5, "eval": {"top_10": 0.75}, "steps": 3, "learning_rate": 0.25,
        "grad_norm": {"query": {"min": 0.0, "mean": pytest.approx(2 / 3), "max": 2.0, "last": 0.0},
                      "candidate": {"min": 0.0, "mean": pytest.approx(1 / 3), "max": 1.0,
                                    "last": 0.0},
                      "global": {"min": 0.0, "mean": pytest.approx(math.sqrt(5) / 3),
                                 "max": pytest.approx(math.sqrt(5)), "last": 0.0}},
        "clip_rate": pytest.approx(1 / 3),
        "weight_norm": {"query": 5.0, "candidate": 1.0}}]


def test_collapse_is_relative_to_each_towers_typical_peak():
    """15,000 falling to 1e-3 is a collapse although not exactly 0 (ratio 1e-4); a
    first-step spike (1e9) does not set the reference (peak of 10-step medians)."""
    record = {"stopped": None, "collapse_detected": False}
    monitor = CollapseMonitor(2, 1e-7, record, learning_rate=0.1, ratio=1e-4)
    monitor.set_model(types.SimpleNamespace(stop_training=False))
    monitor.on_epoch_begin(0)
    monitor.on_train_batch_end(0, logs(query=1e9, candidate=1e9))
    for step in range(1, 10):
        monitor.on_train_batch_end(step, logs(query=15_000.0, candidate=900.0))
        assert monitor.streak == 0
    assert monitor.peaks == [15_000.0, 900.0]  # medians of steps 1-10, not the 1e9 spike
    monitor.on_train_batch_end(10, logs(query=1e-3, candidate=0.5))  # candidate still learns
    assert monitor.streak == 0
    monitor.on_train_batch_end(11, logs(query=1e-3, candidate=0.08))  # 0.08 <= 1e-4 x 900
    assert monitor.streak == 1
    monitor.on_train_batch_end(12, logs(query=1.6, candidate=0.05))  # 1.6 > 1e-4 x 15,000
    assert monitor.streak == 0
    monitor.on_train_batch_end(13, logs(query=1.49, candidate=0.089))  # both just under
    assert monitor.streak == 1 and not monitor.model.stop_training
    monitor.on_train_batch_end(14, logs(query=0.0, candidate=0.0))
    assert monitor.model.stop_training and record["stopped"]["step"] == 15
    assert record["collapse_detected"]
    assert "typical peaks 1.5e+04 and 900" in record["stopped"]["message"]


def test_collapse_ratio_ignores_an_initial_spike():
    """Norms of ~2,000 after a 4e7 first step are healthy, not 'collapsed' (a false alarm
    the max-based reference raised on the demo data with [16, 8, 4] towers)."""
    record = {"stopped": None, "collapse_detected": False}
    monitor = CollapseMonitor(3, 1e-7, record, learning_rate=0.01, ratio=1e-4)
    monitor.set_model(types.SimpleNamespace(stop_training=False))
    monitor.on_epoch_begin(0)
    for step, norm in enumerate([4.27e7, 7.4e4] + [2_000.0, 300.0] * 20):
        monitor.on_train_batch_end(step, logs(query=norm, candidate=norm))
    assert not monitor.model.stop_training and record["stopped"] is None


def test_full_catalog_loss_is_the_exact_softmax_over_every_candidate_averaged():
    """logits = q . c / T over all 3 candidates; a row outside the catalog (-1) is left
    out of the mean, so the loss of a batch doesn't grow with its size."""
    from trainer.model import TwoTowerModel

    query_tower = tf.keras.layers.Lambda(lambda f: f["q"])
    candidate_tower = tf.keras.layers.Lambda(lambda f: f["c"])
    catalog = {"c": np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32),
               CANDIDATE_POSITION: np.arange(3)}
    queries = tf.constant([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    for temperature, row0, row1 in (
            (None, math.log(2 * math.e + 1) - 1, math.log(2 * math.e ** 2 + 1) - 2),
            (0.5, math.log(2 * math.e ** 2 + 1) - 2, math.log(2 * math.e ** 4 + 1) - 4)):
        model = TwoTowerModel(query_tower, candidate_tower, ExactIndex(np.arange(3), 2, k=1),
                              [1], temperature=temperature, catalog=catalog)
        loss = model.catalog_loss(queries, tf.constant([2, 1, -1], tf.int64))
        assert float(loss) == pytest.approx((row0 + row1) / 2, rel=1e-6)
        doubled = model.catalog_loss(tf.concat([queries] * 2, 0),
                                     tf.constant([2, 1, -1] * 2, tf.int64))
        assert float(doubled) == pytest.approx(float(loss), rel=1e-6)
        empty = model.catalog_loss(queries[:1], tf.constant([-1], tf.int64))
        assert float(empty) == 0.0


def test_clip_statistic_is_what_each_clipping_mode_compares():
    grads = [tf.constant([3.0, -4.0]), tf.IndexedSlices(tf.constant([[12.0]]),
                                                         tf.constant([0]), tf.constant([2, 1]))]
    cases = {"global_norm": 13.0, "norm": 12.0, "value": 12.0, "none": 13.0}
    for mode, expected in cases.items():
        optimizer = make_optimizer(training_cfg(clipping=mode, clip_value=2.5))
        statistic, limit = clip_statistic(optimizer, grads)
        assert float(statistic) == pytest.approx(expected)
        assert limit == (None if mode == "none" else 2.5)


def test_oov_dropout_sends_a_share_of_real_values_to_the_oov_rows():
    tf.keras.utils.set_random_seed(3)
    indices = tf.constant(np.tile([[0, 1, 2, -1]], (20_000, 1)), tf.int64)
    one = drop_to_oov(indices, 10, 1, 0.1).numpy()
    assert (one[:, 3] == -1).all()  # padding stays padding
    dropped = one[:, :3] == 10
    assert 0.09 < dropped.mean() < 0.11
    assert ((one[:, :3] == [0, 1, 2]) | dropped).all()
    many = drop_to_oov(indices, 10, 4, 0.5).numpy()[:, :3]
    replaced = many[many >= 10]
    assert set(replaced.tolist()) == {10, 11, 12, 13}  # every OOV bucket gets trained
    assert (drop_to_oov(indices, 10, 1, 0.0).numpy() == indices.numpy()).all()


def test_towers_apply_oov_dropout_in_training_only():
    spec = tower_spec()
    spec["model"]["oov_dropout"] = 0.5
    tf.keras.utils.set_random_seed(5)
    tower = build_tower(spec, "candidate_tower", VOCAB.__getitem__)
    assert tower.oov == [(6, 1), (3, 1), None, (4, 1)]  # (first OOV row, OOV rows) per input
    served = [tower(FEATURES).numpy() for _ in range(3)]
    assert all(np.array_equal(served[0], s) for s in served)  # deterministic when serving
    trained = [tower(FEATURES, training=True).numpy() for _ in range(3)]
    assert not all(np.array_equal(trained[0], t) for t in trained)


def test_in_batch_loss_is_a_mean_over_the_rows():
    """TFRS sums by default: a batch of the same rows twice used to have twice the loss."""
    from trainer.model import TwoTowerModel

    model = TwoTowerModel(tf.keras.layers.Lambda(lambda f: f["q"]),
                          tf.keras.layers.Lambda(lambda f: f["c"]),
                          ExactIndex(np.arange(2), 2, k=1), [1])
    batch = {"q": tf.constant([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]),
             "c": tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]),
             CANDIDATE_POSITION: tf.constant([0, 1, 0], tf.int64)}
    # rows 1 and 3 share candidate 0: an accidental hit, not a negative, for each other
    rows = [math.log(1 + math.exp(-1)),      # logits (1, 0, [1]): own first
            math.log(1 + 2 * math.exp(-1)),  # logits (0, 1, 0)
            math.log(1 + math.exp(-2))]      # logits ([2], 0, 2)
    loss = float(model.compute_loss(batch, training=True))
    assert loss == pytest.approx(sum(rows) / 3, rel=1e-6)  # the mean, not the sum


class Linear(tf.keras.Model):
    def __init__(self, key, units=2):
        super().__init__()
        self.key, self.dense = key, tf.keras.layers.Dense(units)

    def call(self, features, training=False):
        return self.dense(features[self.key])


@pytest.mark.parametrize("clip_value,clipped", [(1e-6, 1.0), (1e6, 0.0)])
def test_a_training_step_reports_whether_clipping_changed_its_gradients(clip_value, clipped):
    from trainer.model import TwoTowerModel

    tf.keras.utils.set_random_seed(2)
    model = TwoTowerModel(Linear("q"), Linear("c"), ExactIndex(np.arange(2), 2, k=1), [1])
    model.compile(optimizer=make_optimizer(training_cfg(clip_value=clip_value)))
    logs = model.train_step({"q": tf.constant([[1.0, 2.0], [0.5, -1.0]]),
                             "c": tf.constant([[0.0, 1.0], [1.0, 1.0]]),
                             CANDIDATE_POSITION: tf.constant([0, 1], tf.int64)})
    assert float(logs["clipped"]) == clipped
    assert float(logs["grad_norm"]) > 0
    assert float(logs["grad_norm"]) == pytest.approx(math.hypot(float(logs["query_grad_norm"]),
                                                                float(logs["candidate_grad_norm"])),
                                                     rel=1e-5)


def test_oov_rows_are_trained_by_the_dropout_and_untouched_without_it():
    from trainer.model import TwoTowerModel

    for rate, moves in ((0.5, True), (0.0, False)):
        spec = tower_spec()
        spec["model"]["oov_dropout"] = rate
        tf.keras.utils.set_random_seed(4)
        candidate = build_tower(spec, "candidate_tower", VOCAB.__getitem__)
        query = Linear("q", units=8)
        model = TwoTowerModel(query, candidate, ExactIndex(np.arange(3), 8, k=1), [1])
        model.compile(optimizer=make_optimizer(training_cfg(learning_rate=0.05)))
        features = dict(FEATURES, q=tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        features[CANDIDATE_KEY] = tf.constant([0, 1, 2], tf.int64)
        features[CANDIDATE_POSITION] = tf.constant([0, 1, 2], tf.int64)
        candidate(features), query(features)  # builds the towers
        oov = candidate.embeddings[0].embeddings[6].numpy().copy()  # the id table's OOV row
        for _ in range(20):
            model.train_step(features)
        changed = not np.allclose(candidate.embeddings[0].embeddings[6].numpy(), oov)
        assert changed is moves


def test_cut_offs_larger_than_the_catalog_are_an_error_not_dropped():
    """`top_k` above the catalog size used to vanish silently from the metrics."""
    from trainer.inputs import check_cutoffs

    spec = {"model": {"top_k": [10, 50, 100]}, "pipeline": {"serving_k": 10}}
    assert check_cutoffs(spec, 100) == [10, 50, 100]
    with pytest.raises(ValueError, match=r"model.top_k \[100\] exceeds the catalog's 60 "):
        check_cutoffs(spec, 60)
    spec = {"model": {"top_k": [10]}, "pipeline": {"serving_k": 70}}
    with pytest.raises(ValueError, match="pipeline.serving_k 70 exceeds the catalog's 60"):
        check_cutoffs(spec, 60)


def test_sampled_catalog_loss_is_the_exact_one_when_it_samples_everything():
    """m = n: the positive plus every other candidate, weight log(n/m) = 0: the full softmax,
    with and without the candidate bias."""
    from trainer.model import TwoTowerModel

    query_tower = tf.keras.layers.Lambda(lambda f: f["q"])
    candidate_tower = tf.keras.layers.Lambda(lambda f: f["c"])
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]], np.float32)
    catalog = {"c": vectors, CANDIDATE_POSITION: np.arange(4)}
    queries = tf.constant([[1.0, 0.0], [0.0, 2.0]])
    labels = tf.constant([2, 1], tf.int64)
    features = {"c": tf.constant(vectors[[2, 1]]), CANDIDATE_POSITION: labels}
    for bias in (None, np.array([0.5, -1.0, 0.0, 2.0], np.float32)):
        exact_model = TwoTowerModel(query_tower, candidate_tower, ExactIndex(np.arange(4), 3, k=1),
                                    [1], temperature=0.5, catalog=catalog, candidate_bias=bias)
        sampled_model = TwoTowerModel(query_tower, candidate_tower,
                                      ExactIndex(np.arange(4), 3, k=1), [1], temperature=0.5,
                                      catalog=catalog, candidate_bias=bias, sampled_negatives=4)
        exact = float(exact_model.catalog_loss(queries, labels, training=True))
        sampled = float(sampled_model.catalog_loss(queries, labels, training=True,
                                                   features=features))
        assert sampled == pytest.approx(exact, rel=1e-5)


def test_weighted_in_batch_loss_is_the_weighted_mean_and_evaluation_is_unweighted():
    """data.weight: rows of weight (3, 1, 0) give (3 l0 + l1) / 4 in training, the rows'
    own losses as in the test above (the TFRS task's sample_weight), and the plain mean in
    evaluation, where every held-out row counts once."""
    from trainer.model import TwoTowerModel
    from transform.naming import WEIGHT

    model = TwoTowerModel(tf.keras.layers.Lambda(lambda f: f["q"]),
                          tf.keras.layers.Lambda(lambda f: f["c"]),
                          ExactIndex(np.arange(2), 2, k=1), [1], weighted=True)
    batch = {"q": tf.constant([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]),
             "c": tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]),
             CANDIDATE_POSITION: tf.constant([0, 1, 0], tf.int64),
             WEIGHT: tf.constant([3.0, 1.0, 0.0])}
    rows = [math.log(1 + math.exp(-1)), math.log(1 + 2 * math.exp(-1)),
            math.log(1 + math.exp(-2))]
    assert float(model.compute_loss(batch, training=True)) == pytest.approx(
        (3 * rows[0] + rows[1]) / 4, rel=1e-6)
    model.index.index(tf.constant([[1.0, 0.0], [0.0, 1.0]]))
    unweighted = TwoTowerModel(model.query_tower, model.candidate_tower,
                               ExactIndex(np.arange(2), 2, k=1), [1])
    unweighted.index.index(tf.constant([[1.0, 0.0], [0.0, 1.0]]))
    assert float(model.compute_loss(batch, training=False)) == pytest.approx(
        float(unweighted.compute_loss(batch, training=False)), rel=1e-6)


def test_weighted_catalog_loss_counts_a_row_of_weight_two_as_two_rows():
    """The full-catalog softmax with weights (2, 1): the same loss as the batch with its
    first row written twice, unweighted; a row outside the catalog stays out."""
    from trainer.model import TwoTowerModel
    from transform.naming import WEIGHT

    catalog = {"c": np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32),
               CANDIDATE_POSITION: np.arange(3)}
    towers = (tf.keras.layers.Lambda(lambda f: f["q"]), tf.keras.layers.Lambda(lambda f: f["c"]))
    weighted = TwoTowerModel(*towers, ExactIndex(np.arange(3), 2, k=1), [1], catalog=catalog,
                             weighted=True)
    plain = TwoTowerModel(*towers, ExactIndex(np.arange(3), 2, k=1), [1], catalog=catalog)
    queries = tf.constant([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    got = weighted.catalog_loss(queries, tf.constant([2, 1, -1], tf.int64), training=True,
                                features={WEIGHT: tf.constant([2.0, 1.0, 5.0])})
    want = plain.catalog_loss(tf.gather(queries, [0, 0, 1]), tf.constant([2, 2, 1], tf.int64))
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    assert float(want) != pytest.approx(float(plain.catalog_loss(
        queries, tf.constant([2, 1, -1], tf.int64))), rel=1e-3)  # the weight changed it


def test_pool_weights_real_values_by_position_and_empty_rows_pool_to_zeros():
    from trainer.towers import pool

    table = np.arange(12, dtype=np.float32).reshape(6, 2)
    embedding = tf.keras.layers.Embedding(6, 2, embeddings_initializer=tf.constant_initializer(table))
    x = tf.constant([[4, 1, -1], [-1, -1, -1], [2, -1, 5]], tf.int64)
    logits = tf.constant([0.0, np.log(3.0), np.log(2.0)], tf.float32)  # weights 1, 3, 2
    pooled = pool(embedding, x, logits).numpy()
    np.testing.assert_allclose(pooled[0], (1 * table[4] + 3 * table[1]) / 4, rtol=1e-6)
    np.testing.assert_array_equal(pooled[1], np.zeros(2))  # all padding: a zero vector
    np.testing.assert_allclose(pooled[2], (1 * table[2] + 2 * table[5]) / 3, rtol=1e-6)
    np.testing.assert_allclose(pool(embedding, x).numpy()[2], (table[2] + table[5]) / 2,
                               rtol=1e-6)


def test_a_training_step_reports_the_norms_tf_computes():
    from trainer.model import TwoTowerModel

    tf.keras.utils.set_random_seed(3)
    model = TwoTowerModel(Linear("q"), Linear("c"), ExactIndex(np.arange(2), 2, k=1), [1])
    model.compile(optimizer=make_optimizer(training_cfg(clip_value=1e6)))
    features = {"q": tf.constant([[1.0, 2.0], [0.5, -1.0]]),
                "c": tf.constant([[0.0, 1.0], [1.0, 1.0]]),
                CANDIDATE_POSITION: tf.constant([0, 1], tf.int64)}
    with tf.GradientTape() as tape:  # the same step's gradients, before it updates anything
        loss = model.compute_loss(features, training=True)
    query, candidate = tape.gradient(loss, [model.query_tower.trainable_variables,
                                            model.candidate_tower.trainable_variables])
    logs = model.train_step(features)
    assert float(logs["query_grad_norm"]) == pytest.approx(float(tf.linalg.global_norm(query)),
                                                           rel=1e-5)
    assert float(logs["candidate_grad_norm"]) == pytest.approx(
        float(tf.linalg.global_norm(candidate)), rel=1e-5)
    assert float(logs["grad_norm"]) == pytest.approx(
        float(tf.linalg.global_norm(query + candidate)), rel=1e-5)
