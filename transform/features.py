"""Per-feature TensorFlow Transform logic, one function per feature kind.

Inputs come from TFX as dense ``[batch, 1]`` tensors (columns present in every
row) or ``SparseTensor``s of dense shape ``[batch, 1]`` (nullable columns).
Every function returns a dense tensor with a leading batch dimension.

This module is copied verbatim into the generated Transform module.
"""
import tensorflow as tf
import tensorflow_transform as tft

from transform.naming import (CANDIDATE_KEY, CANDIDATE_VOCAB, PADDING, QUERY_KEY, QUERY_VOCAB,
                              shared_key, transformed_name, vocabulary_name)


def densify(x, default):
    """A ``[batch]`` tensor from a ``[batch]``/``[batch, 1]`` tensor or SparseTensor.

    Rows where a nullable column is empty get ``default`` (same dtype as ``x``).
    """
    if isinstance(x, tf.sparse.SparseTensor):
        shape = tf.stack([x.dense_shape[0], tf.constant(1, tf.int64)])
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, shape), default_value=default)
    if x.shape.rank == 2:
        x = tf.squeeze(x, axis=1)
    return x


def as_strings(x):
    """Casts a Tensor or SparseTensor of any dtype to strings (ints keep their digits)."""
    if x.dtype == tf.string:
        return x
    if isinstance(x, tf.sparse.SparseTensor):
        return tf.SparseTensor(x.indices, tf.strings.as_string(x.values), x.dense_shape)
    return tf.strings.as_string(x)


def string_column(x, default):
    """``[batch]`` strings; empty cells become ``default`` ('' if None)."""
    return densify(as_strings(x), "" if default is None else default)


def float_column(x, default):
    """``[batch]`` float32; empty cells become ``default`` (0.0 if None)."""
    if x.dtype == tf.string:
        raise ValueError("a numeric feature's column holds strings; declare it categorical, or "
                         "fix the column so that every value is a number")
    dense = densify(x, tf.cast(0.0 if default is None else default, x.dtype))
    return tf.cast(dense, tf.float32)


def id_index(x, vocabulary, top_k=None, frequency_threshold=0, oov_buckets=1):
    """``[batch]`` int64 vocabulary index of a string column (OOV in the last buckets)."""
    return tft.compute_and_apply_vocabulary(
        x, top_k=top_k, frequency_threshold=frequency_threshold or None,
        num_oov_buckets=oov_buckets, vocab_filename=vocabulary)


def multi_index(x, vocabulary, separator, max_length, top_k=None, frequency_threshold=0,
                oov_buckets=1):
    """``[batch, max_length]`` int64 indices of a separated multi-value string.

    ``'Action|Comedy'`` splits into two tokens (whitespace stripped, empty
    tokens dropped). Rows are truncated to ``max_length`` values and padded
    with ``PADDING`` (-1), which is never a vocabulary index.
    """
    tokens = tf.strings.strip(tf.strings.split(x, sep=separator))
    tokens = tf.ragged.boolean_mask(tokens, tf.not_equal(tokens, ""))
    indices = tft.compute_and_apply_vocabulary(
        tokens.to_sparse(), top_k=top_k, frequency_threshold=frequency_threshold or None,
        num_oov_buckets=oov_buckets, vocab_filename=vocabulary)
    dense = tf.sparse.to_dense(indices, default_value=PADDING)[:, :max_length]
    dense = tf.pad(dense, [[0, 0], [0, max_length - tf.shape(dense)[1]]],
                   constant_values=PADDING)
    return tf.reshape(dense, [-1, max_length])


def numeric_value(x, transform, num_buckets):
    """A ``[batch]`` float32 (zscore, minmax, log) or int64 bucket index (bucketize).

    ``log`` is the z-score of ``log1p(x - min(x))``, defined for any sign.
    """
    if transform == "zscore":
        return tft.scale_to_z_score(x)
    if transform == "minmax":
        return tft.scale_to_0_1(x)
    if transform == "log":
        return tft.scale_to_z_score(tf.math.log1p(x - tft.min(x)))
    if transform == "bucketize":
        return tft.bucketize(x, num_buckets)
    raise ValueError(f"unknown numeric transform {transform!r}")


def transform_feature(inputs, feature):
    """The Transform output of one configured feature (see the naming contract)."""
    x = inputs[feature["column"]]
    kind = feature["kind"]
    if kind == "numeric":
        return numeric_value(float_column(x, feature["default"]), feature["transform"],
                             feature["num_buckets"])
    text = string_column(x, feature["default"])
    options = dict(top_k=feature["max_vocab_size"],
                   frequency_threshold=feature["frequency_threshold"],
                   oov_buckets=feature["oov_buckets"])
    if kind in ("id", "categorical"):
        return id_index(text, vocabulary_name(feature["name"]), **options)
    if kind == "multi_categorical":
        return multi_index(text, vocabulary_name(feature["name"]), feature["separator"],
                           feature["max_length"], **options)
    raise ValueError(f"unknown feature kind {kind!r} for feature {feature['name']!r}")


def transform_all(inputs, spec):
    """All Transform outputs for a frozen config ``spec`` (``Config.to_dict()``).

    Always emits the reserved QUERY_KEY and CANDIDATE_KEY (indices in the
    shared id vocabularies), plus one output per feature that does not reuse
    one of those keys.
    """
    data = spec["data"]
    outputs = {
        QUERY_KEY: id_index(string_column(inputs[data["query_id"]], None), QUERY_VOCAB),
        CANDIDATE_KEY: id_index(string_column(inputs[data["candidate_id"]], None),
                                CANDIDATE_VOCAB),
    }
    for tower in ("query_tower", "candidate_tower"):
        for feature in spec[tower]["features"]:
            if shared_key(feature, data) is None:
                outputs[transformed_name(feature["name"])] = transform_feature(inputs, feature)
    return outputs
