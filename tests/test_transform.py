"""Generated ``preprocessing_fn`` executed by tensorflow_transform on a few rows."""
import numpy as np
import pytest
import tensorflow as tf

from pipelines.build import codegen
from pipelines.config.schema import Config
from tft_helpers import load_module, run_preprocessing
from transform import naming

HOSTILE = "x'); import os; os.system('id') #"


def config():
    """Every transform the Transform stage has, on hostile column names."""
    return Config.from_dict({
        "data": {"path": "d.csv", "query_id": "user id", "candidate_id": 'item"id'},
        "query_tower": {"features": [
            {"name": "user", "column": "user id", "kind": "id"},
            {"name": "hostile", "column": HOSTILE, "kind": "categorical", "default": "none"},
            {"name": "amount_z", "column": "amount", "kind": "numeric", "transform": "zscore"},
            {"name": "amount_mm", "column": "amount", "kind": "numeric", "transform": "minmax"},
            {"name": "amount_log", "column": "amount", "kind": "numeric", "transform": "log"},
            {"name": "amount_b", "column": "amount", "kind": "numeric", "transform": "bucketize",
             "num_buckets": 2},
            {"name": "score", "column": "score", "kind": "numeric", "default": 4.0}]},
        "candidate_tower": {"features": [
            {"name": "item", "column": 'item"id', "kind": "id"},
            {"name": "genres", "column": "génres {x}", "kind": "multi_categorical",
             "max_length": 2},
            {"name": "brand", "column": "brand", "kind": "categorical", "max_vocab_size": 1}]},
    })


ROWS = [  # user id, hostile, amount, score (nullable), item"id, genres, brand
    ("u1", "a", 1.0, 2.0, 10, "Action|Comedy|Drama", "acme"),
    ("u2", None, 3.0, None, 20, "Comedy", "acme"),
    ("u1", "b", 5.0, 6.0, 20, " Comedy |", "bolt"),
    ("u3", "a", 7.0, None, 30, "", "acme"),
]


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tft")
    path = tmp / "transform_module.py"
    path.write_text(codegen.transform_module(config()))
    module = load_module(str(path), "generated_transform_for_test")
    spec = {"user id": tf.io.FixedLenFeature([1], tf.string),
            HOSTILE: tf.io.VarLenFeature(tf.string),
            "amount": tf.io.FixedLenFeature([1], tf.float32),
            "score": tf.io.VarLenFeature(tf.float32),
            'item"id': tf.io.FixedLenFeature([1], tf.int64),
            "génres {x}": tf.io.FixedLenFeature([1], tf.string),
            "brand": tf.io.FixedLenFeature([1], tf.string)}
    rows = []
    for user, hostile, amount, score, item, genres, brand in ROWS:
        rows.append({"user id": [user.encode()], HOSTILE: [hostile.encode()] if hostile else [],
                     "amount": [amount], "score": [score] if score is not None else [],
                     'item"id': [item], "génres {x}": [genres.encode()],
                     "brand": [brand.encode()]})
    out, output = run_preprocessing(module.preprocessing_fn, rows, spec, str(tmp))
    return out, output


def vocab(output, name):
    return [v.decode() for v in output.vocabulary_by_name(name)]


def test_outputs_follow_the_naming_contract(transformed):
    out, _ = transformed
    expected = {naming.QUERY_KEY, naming.CANDIDATE_KEY, naming.QUERY_ID, naming.CANDIDATE_ID} | {
        naming.transformed_name(n) for n in ("hostile", "amount_z", "amount_mm", "amount_log",
                                             "amount_b", "score", "genres", "brand")}
    assert set(out[0]) == expected  # id features on the id columns reuse the shared keys


def test_id_keys_index_the_shared_vocabularies(transformed):
    out, output = transformed
    users, items = vocab(output, naming.QUERY_VOCAB), vocab(output, naming.CANDIDATE_VOCAB)
    assert sorted(users) == ["u1", "u2", "u3"] and sorted(items) == ["10", "20", "30"]
    assert users[0] == "u1" and items[0] == "20"  # most frequent first
    for row, raw in zip(out, ROWS):
        assert users[row[naming.QUERY_KEY]] == raw[0]
        assert items[row[naming.CANDIDATE_KEY]] == str(raw[4])
        assert row[naming.QUERY_ID] == raw[0].encode()  # the raw ids pass through as strings
        assert row[naming.CANDIDATE_ID] == str(raw[4]).encode()


def test_serving_unknowns_get_the_configured_defaults_and_never_nan(transformed):
    """A request's "" / NaN / a value below the training minimum: defaults, finite values."""
    _, output = transformed
    layer = output.transform_features_layer()
    raw = {"user id": tf.constant([["u1"], ["u9"], ["u1"]]),
           HOSTILE: tf.sparse.from_dense(tf.constant([["a"], [""], ["b"]])),
           "amount": tf.constant([[1.0], [-100.0], [float("nan")]]),
           "score": tf.sparse.from_dense(tf.constant([[2.0], [float("nan")], [float("inf")]]))}
    got = layer(raw)
    hostile = vocab(output, naming.vocabulary_name("hostile"))
    assert [hostile[i] for i in got["hostile_xf"].numpy()] == ["a", "none", "b"]
    logs = np.log1p(np.array([1.0, 3.0, 5.0, 7.0]) - 1.0)
    z = (0.0 - logs.mean()) / logs.std()  # below the minimum reads as the minimum: log1p(0)
    np.testing.assert_allclose(got["amount_log_xf"].numpy(), [z, z, z], rtol=1e-5)
    score = np.array([2.0, 4.0, 6.0, 4.0])
    np.testing.assert_allclose(got["score_xf"].numpy(),
                               (np.array([2.0, 4.0, 4.0]) - score.mean()) / score.std(), rtol=1e-5)
    for key, value in got.items():
        if value.dtype.is_floating:
            assert np.isfinite(value.numpy()).all(), key


def test_categorical_default_and_top_k(transformed):
    out, output = transformed
    hostile = vocab(output, naming.vocabulary_name("hostile"))
    assert [hostile[r["hostile_xf"]] for r in out] == ["a", "none", "b", "a"]
    brands = vocab(output, naming.vocabulary_name("brand"))
    assert brands == ["acme"]  # max_vocab_size 1: 'bolt' goes to the OOV bucket
    assert [r["brand_xf"] for r in out] == [0, 0, 1, 0]


def test_numeric_transforms_match_hand_computation(transformed):
    out, _ = transformed
    amount = np.array([1.0, 3.0, 5.0, 7.0])
    z = (amount - 4.0) / np.sqrt(5.0)  # mean 4, population variance 5
    np.testing.assert_allclose([r["amount_z_xf"] for r in out], z, rtol=1e-5)
    np.testing.assert_allclose([r["amount_mm_xf"] for r in out], [0, 1 / 3, 2 / 3, 1],
                               rtol=1e-5)
    logs = np.log1p(amount - 1.0)
    np.testing.assert_allclose([r["amount_log_xf"] for r in out],
                               (logs - logs.mean()) / logs.std(), rtol=1e-5)
    buckets = [r["amount_b_xf"] for r in out]
    assert buckets == sorted(buckets) and set(buckets) == {0, 1}
    score = np.array([2.0, 4.0, 6.0, 4.0])  # empty cells take the declared default 4.0
    np.testing.assert_allclose([r["score_xf"] for r in out],
                               (score - score.mean()) / score.std(), rtol=1e-5)


def test_multi_valued_strings_are_split_padded_and_truncated(transformed):
    out, output = transformed
    genres = vocab(output, naming.vocabulary_name("genres"))
    decoded = [[genres[i] for i in r["genres_xf"] if i != naming.PADDING] for r in out]
    assert decoded == [["Action", "Comedy"], ["Comedy"], ["Comedy"], []]
    assert [list(r["genres_xf"]).count(naming.PADDING) for r in out] == [0, 1, 1, 2]
    assert "Drama" in genres  # truncation happens after the vocabulary sees every value


def config_more_kinds():
    return Config.from_dict({
        "data": {"path": "d.csv", "query_id": "user", "candidate_id": "item", "timestamp": "ts"},
        "query_tower": {"features": [
            {"name": "hour", "column": "ts", "kind": "timestamp"},
            {"name": "ts_bucket", "column": "ts", "kind": "timestamp", "transform": "bucketize",
             "num_buckets": 2},
            {"name": "seg_region", "kind": "cross", "columns": ["segment", "region"],
             "hash_buckets": 50},
            {"name": "recent", "kind": "history", "max_length": 3}]},
        "candidate_tower": {"features": [
            {"name": "item", "column": "item", "kind": "id"},
            {"name": "title", "column": "title", "kind": "text", "max_length": 4}]},
    })


MORE_ROWS = [  # user, ts, segment, region, item, title, history (newest first)
    ("u1", 0, "smb", "north", "a", "The Big Lebowski", ""),
    ("u1", 6 * 3600, "smb", "north", "b", "Amélie (2001)", "a"),
    ("u2", 86_400 + 12 * 3600, "ent", "north", "a", "The Big Lebowski", ""),
    ("u1", 3 * 86_400, "smb", "south", "a", "The Big Lebowski", "b|a"),
    ("u2", 4 * 86_400, "ent", "south", " c ", "Up", " c |a"),  # ids kept exactly, spaces too
]


@pytest.fixture(scope="module")
def transformed_more(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tft_more")
    path = tmp / "transform_module.py"
    path.write_text(codegen.transform_module(config_more_kinds()))
    module = load_module(str(path), "generated_transform_more_for_test")
    history = naming.history_column("recent")
    spec = {name: tf.io.FixedLenFeature([1], tf.string)
            for name in ("user", "segment", "region", "item", "title")}
    spec["ts"] = tf.io.FixedLenFeature([1], tf.int64)
    spec[history] = tf.io.VarLenFeature(tf.string)
    rows = [{"user": [u.encode()], "ts": [t], "segment": [s.encode()], "region": [r.encode()],
             "item": [i.encode()], "title": [title.encode()],
             history: [h.encode()] if h else []}
            for u, t, s, r, i, title, h in MORE_ROWS]
    return run_preprocessing(module.preprocessing_fn, rows, spec, str(tmp))


def test_cyclical_timestamp_is_sin_cos_of_day_week_and_year(transformed_more):
    out, _ = transformed_more
    for row, raw in zip(out, MORE_ROWS):
        expected = []
        for period in naming.CYCLES:
            phase = 2 * np.pi * (raw[1] % period) / period
            expected += [np.sin(phase), np.cos(phase)]
        np.testing.assert_allclose(row["hour_xf"], expected, atol=1e-6)
    np.testing.assert_allclose(out[1]["hour_xf"][:2], [1.0, 0.0], atol=1e-6)  # 6 h: a quarter day


def test_timestamp_buckets_are_ordered(transformed_more):
    out, _ = transformed_more
    buckets = [r["ts_bucket_xf"] for r in out]
    assert buckets == sorted(buckets) and set(buckets) == {0, 1}


def test_cross_hashes_the_joined_columns(transformed_more):
    out, _ = transformed_more
    crosses = [r["seg_region_xf"] for r in out]
    joined = [f"{r[2]}\x1f{r[3]}" for r in MORE_ROWS]
    assert crosses == tf.strings.to_hash_bucket_fast(joined, 50).numpy().tolist()
    assert crosses[0] == crosses[1] and all(0 <= c < 50 for c in crosses)


def test_history_indexes_the_candidate_vocabulary(transformed_more):
    out, output = transformed_more
    items = vocab(output, naming.CANDIDATE_VOCAB)
    decoded = [[items[i] for i in r["recent_xf"] if i != naming.PADDING] for r in out]
    assert decoded == [[], ["a"], [], ["b", "a"], [" c ", "a"]]
    assert [list(r["recent_xf"]).count(naming.PADDING) for r in out] == [3, 2, 3, 1, 1]


def test_text_is_lowercased_words_of_any_script(transformed_more):
    out, output = transformed_more
    words = vocab(output, naming.vocabulary_name("title"))
    decoded = [[words[i] for i in r["title_xf"] if i != naming.PADDING] for r in out]
    assert decoded[0] == ["the", "big", "lebowski"]
    assert decoded[1] == ["amélie", "2001"]
