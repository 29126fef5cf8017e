"""The evaluation embeds each held-out query as it stood before its held-out interactions.

Issue 9, item 1: the evaluation used to embed a query from an arbitrary row of the
held-out split, whose history already held the query's earlier held-out items, which
are also its truth. Here a user's second eval row has exactly that leaking history;
the data goes through the real preparation and the generated Transform, and a query
tower that is the plain mean of its history's (fixed) item vectors makes every score,
and so every metric, computable by hand.
"""
import numpy as np
import pytest
import tensorflow as tf

from pipelines.build import codegen
from pipelines.config.schema import Config
from pipelines.data.prepare import prepare
from tft_helpers import load_module, run_preprocessing
from trainer.data import positions_of, query_groups
from trainer.held_out import HeldOutSet
from transform.naming import (CANDIDATE_ID, CANDIDATE_KEY, CANDIDATE_VOCAB, QUERY_ID, QUERY_KEY,
                              history_column)

#   train: U a@1, V d@2, W b@3, W c@4 | eval (t >= 10): U b@10, U c@11, V a@12, W d@13
PURCHASES = ("customer_id,product_id,timestamp\n"
             "U,a,1\nV,d,2\nW,b,3\nW,c,4\nU,b,10\nU,c,11\nV,a,12\nW,d,13\n")
VECTORS = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [0.0, 1.0], "d": [0.9, -0.5]}
CONFIG = {
    "data": {"path": "", "query_id": "customer_id", "candidate_id": "product_id",
             "timestamp": "timestamp", "split": {"method": "time", "eval_fraction": 0.5}},
    "query_tower": {"features": [{"name": "recent", "kind": "history", "max_length": 5}]},
    "candidate_tower": {"features": [{"name": "product", "column": "product_id",
                                      "kind": "id"}]},
    "model": {"top_k": [1, 2]},
}


class HistoryMean(tf.keras.Model):
    """The mean of the history items' fixed vectors: a query tower scored by hand."""

    def __init__(self, table):
        super().__init__()
        self.table = tf.constant(table, tf.float32)

    def call(self, features, training=False):
        indices = features["recent_xf"]
        mask = tf.cast(indices >= 0, tf.float32)[:, :, None]
        vectors = tf.gather(self.table, tf.maximum(indices, 0)) * mask
        return tf.reduce_sum(vectors, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    import pyarrow.parquet as pq

    tmp = tmp_path_factory.mktemp("held_out")
    (tmp / "purchases.csv").write_text(PURCHASES)
    raw = dict(CONFIG, data=dict(CONFIG["data"], path=str(tmp / "purchases.csv")))
    cfg = Config.from_dict(raw)
    prepare(cfg, str(tmp / "input"))
    path = tmp / "transform_module.py"
    path.write_text(codegen.transform_module(cfg))
    module = load_module(str(path), "generated_transform_for_held_out_test")
    history = history_column("recent")
    spec = {"customer_id": tf.io.VarLenFeature(tf.string),
            "product_id": tf.io.VarLenFeature(tf.string),
            "timestamp": tf.io.VarLenFeature(tf.int64), history: tf.io.VarLenFeature(tf.string)}

    def examples(split):
        rows = pq.read_table(str(tmp / "input" / split)).to_pylist()
        return [{k: [] if row[k] is None else [row[k].encode() if isinstance(row[k], str)
                                               else row[k]] for k in spec} for row in rows]

    train, (evals, snapshots), output = run_preprocessing(
        module.preprocessing_fn, examples("train"), spec, str(tmp),
        extra=[examples("eval"), examples("eval_queries")])
    return {"train": train, "eval": evals, "snapshots": snapshots, "output": output}


def arrays(rows, keys):
    return {k: np.asarray([r[k] for r in rows], dtype=object if isinstance(
        rows[0][k], bytes) else None) for k in keys}


def test_held_out_queries_are_embedded_as_they_stood_before_the_cut(transformed):
    output = transformed["output"]
    vocabulary = [v.decode() for v in output.vocabulary_by_name(CANDIDATE_VOCAB)]
    tower = HistoryMean([VECTORS[item] for item in vocabulary] + [[0.0, 0.0]])
    catalog = np.asarray([b"a", b"b", b"c", b"d"], dtype=object)
    train = arrays(transformed["train"], [QUERY_ID, CANDIDATE_ID])
    held = arrays(transformed["eval"], [QUERY_ID, CANDIDATE_ID, "recent_xf"])
    snapshots = arrays(transformed["snapshots"], [QUERY_ID, "recent_xf", QUERY_KEY])
    seen = query_groups(train[QUERY_ID], positions_of(train[CANDIDATE_ID], catalog))
    evaluation = HeldOutSet("eval", snapshots, ["recent_xf"], held[QUERY_ID],
                            positions_of(held[CANDIDATE_ID], catalog), seen)
    candidates = np.asarray([VECTORS[k.decode()] for k in catalog], np.float32)
    counts = np.ones(4)  # popularity ties break by catalog position: a, b, c, d
    got = evaluation.evaluate(lambda inputs: tower(inputs).numpy(), candidates, counts, [1, 2])
    # U: history [a] -> q (1, 0); a seen; d 0.9, b 0, c 0 -> d, b: truth {b, c}: 0 then 1/2
    # V: history [d] -> q (.9, -.5); d seen; a .9 first: truth {a}: 1, 1
    # W: history [c, b] -> q (0, 1); b, c seen; a 0, d -.5: truth {d}: 0, 1
    assert got["queries"] == 3 and got["split"] == "eval"
    assert got["model"]["recall_at_1"] == pytest.approx(1 / 3)
    assert got["model"]["recall_at_2"] == pytest.approx((0.5 + 1 + 1) / 3)
    # popularity: U b, c -> 1/2, 1; V a -> 1, 1; W a, d -> 0, 1
    assert got["popularity"]["recall_at_1"] == pytest.approx(0.5)
    assert got["popularity"]["recall_at_2"] == pytest.approx(1.0)
    assert (got["held_out_queries"], got["cold_queries"], got["queries_without_new_items"],
            got["truth_outside_catalog"]) == (3, 0, 0, 0)

    # What the old evaluation could embed instead: U's second eval row, whose history
    # holds b, one of the two answers. It moves b to the top: recall@1 1/3 -> 1/2.
    row = next(i for i, r in enumerate(transformed["eval"])
               if r[QUERY_ID] == b"U" and r[CANDIDATE_ID] == b"c")
    decoded = [vocabulary[i] for i in held["recent_xf"][row] if i >= 0]
    assert decoded == ["b", "a"]
    leaked = tower({"recent_xf": held["recent_xf"][row:row + 1]}).numpy()[0]
    scores = candidates @ leaked
    assert np.argmax(np.where([False, True, True, True], scores, -np.inf)) == 1  # b first


def test_queries_sharing_the_oov_key_are_evaluated_one_by_one():
    """Cold queries all map to the OOV query key; grouped by it they used to merge into one
    pseudo-query. Grouped by raw id, each is its own query."""
    snapshots = {QUERY_ID: np.asarray([b"new1", b"new2"], dtype=object),
                 QUERY_KEY: np.asarray([7, 7]), "x": np.asarray([[1.0, 0.0], [0.0, 1.0]])}
    evaluation = HeldOutSet("test", snapshots, ["x"],
                            np.asarray([b"new1", b"new2", b"new2", b"old"], dtype=object),
                            np.asarray([0, 1, -1, 0]), {b"new1": np.asarray([1])})
    assert evaluation.queries == [b"new1", b"new2"]
    assert [t.tolist() for t in evaluation.truth] == [[0], [1]]
    assert evaluation.counts == {"held_out_queries": 3, "cold_queries": 1,
                                 "queries_without_new_items": 0, "truth_outside_catalog": 1}
    tower = tf.keras.layers.Lambda(lambda f: tf.cast(f["x"], tf.float32))
    got = evaluation.evaluate(lambda inputs: tower(inputs).numpy(), np.eye(2, dtype=np.float32),
                              np.asarray([5.0, 1.0]), [1])
    assert got["model"]["recall_at_1"] == 1.0  # each query finds its own item
    assert got["popularity"]["recall_at_1"] == 0.5  # new1: 0 first; new2: 0 first (miss)
    assert CANDIDATE_KEY not in evaluation.inputs


def test_buy_again_ranks_what_a_query_had_model_beside_frequency_and_popularity():
    snapshots = {QUERY_ID: np.asarray([b"q"], dtype=object), "x": np.asarray([[0.0, 1.0]])}
    # q had 0 (once), 1 (three times), 3 (once); held out: 1 (a re-order) and 2 (new)
    evaluation = HeldOutSet("eval", snapshots, ["x"], np.asarray([b"q", b"q"], dtype=object),
                            np.asarray([1, 2]), {b"q": np.asarray([0, 1, 3])},
                            {b"q": (np.asarray([0, 1, 3]), np.asarray([1.0, 3.0, 1.0]))})
    tower = tf.keras.layers.Lambda(lambda f: tf.cast(f["x"], tf.float32))
    vectors = np.asarray([[0.0, 0.5], [0.0, 0.1], [1.0, 0.0], [0.0, 0.9]], np.float32)
    got = evaluation.evaluate(lambda inputs: tower(inputs).numpy(), vectors,
                              np.asarray([9.0, 1.0, 1.0, 5.0]), [1, 2])
    again = got["buy_again"]
    # model scores of 0, 1, 3: .5, .1, .9 -> 3, 0, 1: the re-order 1 is third
    assert again["model"]["recall_at_1"] == 0.0 and again["model"]["recall_at_2"] == 0.0
    # frequency: 1 (3 times) first
    assert again["frequency"]["recall_at_1"] == 1.0
    # popularity 9, 1, 5 -> 0, 3, 1
    assert again["popularity"]["recall_at_2"] == 0.0
    assert again["queries"] == 1 and got["queries"] == 1  # discovery still scores item 2
