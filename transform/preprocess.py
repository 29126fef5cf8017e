"""The Transform of a whole config: the reserved keys, then each feature by its kind.

``transform_all`` is what the generated ``preprocessing_fn`` calls. Each
feature's own output comes from its kind (:mod:`transform.kinds`); the keys
every model reads (ids, the row's time) are made here.

Part of the runtime the generated Transform module imports.
"""
import tensorflow as tf
import tensorflow_transform as tft

from transform.features import densify, id_index, string_column
from transform.kinds import kind_of, shared_key
from transform.naming import (CANDIDATE_ID, CANDIDATE_KEY, CANDIDATE_VOCAB, QUERY_ID, QUERY_KEY,
                              QUERY_VOCAB, TIMESTAMP, WEIGHT, WEIGHT_COLUMN, transformed_name)


def transform_all(inputs, spec):
    """All Transform outputs for a frozen config ``spec`` (the generated module's ``SPEC``).

    Always emits the reserved QUERY_KEY and CANDIDATE_KEY (int64 ``[batch]``
    indices in the shared id vocabularies, which the analysed split, train,
    defines), the raw ids QUERY_ID and CANDIDATE_ID (string ``[batch]``, exactly
    as written: evaluation groups queries and the Trainer finds catalog rows by
    them), the row's time TIMESTAMP (int64 ``[batch]`` epoch seconds, -1 where
    empty) when ``data.timestamp`` is set, the example weight WEIGHT (float32
    ``[batch]``: the prepared WEIGHT_COLUMN, already clipped; 0 where empty)
    when ``data.weight`` is set, plus one output per feature that
    does not reuse one of the keys (its kind's ``transform``).
    """
    data = spec["data"]
    queries = string_column(inputs[data["query_id"]], None)
    candidates = string_column(inputs[data["candidate_id"]], None)
    candidate_vocabulary = tft.vocabulary(candidates, vocab_filename=CANDIDATE_VOCAB)
    outputs = {
        QUERY_KEY: id_index(queries, QUERY_VOCAB),
        CANDIDATE_KEY: tft.apply_vocabulary(candidates, candidate_vocabulary, num_oov_buckets=1),
        QUERY_ID: queries,
        CANDIDATE_ID: candidates,
    }
    if data.get("timestamp"):
        seconds = inputs[data["timestamp"]]
        outputs[TIMESTAMP] = tf.cast(densify(seconds, tf.constant(-1, seconds.dtype)), tf.int64)
    if data.get("weight"):
        weight = inputs[WEIGHT_COLUMN]
        outputs[WEIGHT] = tf.cast(densify(weight, tf.constant(0, weight.dtype)), tf.float32)
    context = {"candidate_vocabulary": candidate_vocabulary}
    for tower in ("query_tower", "candidate_tower"):
        for feature in spec[tower]["features"]:
            if shared_key(feature, data) is None:
                outputs[transformed_name(feature["name"])] = kind_of(feature).transform(
                    inputs, feature, context)
    return outputs
