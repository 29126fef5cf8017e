"""TensorFlow Transform building blocks that the feature kinds' transforms use.

Inputs come from TFX as dense ``[batch, 1]`` tensors (columns present in every
row) or ``SparseTensor``s of dense shape ``[batch, 1]`` (nullable columns).
Every function returns a dense tensor with a leading batch dimension.

Part of the runtime the generated Transform module imports.
"""
import math

import tensorflow as tf
import tensorflow_transform as tft

from transform.naming import CYCLES, PADDING


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
    """``[batch]`` strings; missing cells and ``""`` become ``default`` ('' if None).

    Training data marks an empty cell as missing; a serving request sends
    ``""``: both get the feature's configured default, so train and serve agree.
    """
    fill = "" if default is None else default
    dense = densify(as_strings(x), fill)
    return dense if fill == "" else tf.where(tf.equal(dense, ""), fill, dense)


def float_column(x, default):
    """``[batch]`` float32; missing cells, NaN and infinities become ``default`` (0.0 if None).

    Prepared data never holds a non-finite number (it is a data error), so a
    NaN here is a serving request's "unknown": it gets the default, and no NaN
    ever reaches a tower.
    """
    if x.dtype == tf.string:
        raise ValueError("a numeric feature's column holds strings; declare it categorical, or "
                         "fix the column so that every value is a number")
    fill = 0.0 if default is None else default
    dense = tf.cast(densify(x, tf.cast(fill, x.dtype)), tf.float32)
    return tf.where(tf.math.is_finite(dense), dense, tf.cast(fill, tf.float32))


def id_index(x, vocabulary, top_k=None, frequency_threshold=0, oov_buckets=1):
    """``[batch]`` int64 vocabulary index of a string column (OOV in the last buckets)."""
    return tft.compute_and_apply_vocabulary(
        x, top_k=top_k, frequency_threshold=frequency_threshold or None,
        num_oov_buckets=oov_buckets, vocab_filename=vocabulary)


def padded(indices, max_length):
    """``[batch, max_length]`` from a SparseTensor of indices, padded with PADDING (-1)."""
    dense = tf.sparse.to_dense(indices, default_value=PADDING)[:, :max_length]
    dense = tf.pad(dense, [[0, 0], [0, max_length - tf.shape(dense)[1]]],
                   constant_values=PADDING)
    return tf.reshape(dense, [-1, max_length])


def split_tokens(x, separator, strip=True):
    """Ragged ``[batch, None]`` non-empty tokens of ``x`` split on ``separator``.

    Tokens are stripped of surrounding whitespace unless ``strip`` is False
    (history tokens are candidate ids, kept exactly as written).
    """
    tokens = tf.strings.split(x, sep=separator)
    if strip:
        tokens = tf.strings.strip(tokens)
    return tf.ragged.boolean_mask(tokens, tf.not_equal(tokens, ""))


def word_tokens(x):
    """Ragged ``[batch, None]`` lower-cased words: runs of letters or digits (any script)."""
    words = tf.strings.regex_replace(tf.strings.lower(x, encoding="utf-8"), r"[^\pL\pN]+", " ")
    return split_tokens(words, " ")


def multi_index(tokens, vocabulary, max_length, top_k=None, frequency_threshold=0,
                oov_buckets=1):
    """``[batch, max_length]`` int64 vocabulary indices of ragged ``tokens``.

    Rows are truncated to ``max_length`` values (after the vocabulary has seen
    them all) and padded with ``PADDING`` (-1), never a vocabulary index.
    """
    indices = tft.compute_and_apply_vocabulary(
        tokens.to_sparse(), top_k=top_k, frequency_threshold=frequency_threshold or None,
        num_oov_buckets=oov_buckets, vocab_filename=vocabulary)
    return padded(indices, max_length)


def cyclical_time(seconds):
    """``[batch, 6]`` float32: sin and cos of the phase in the day, the week and the year."""
    parts = []
    for period in CYCLES:
        phase = 2.0 * math.pi * tf.math.floormod(seconds, period) / period
        parts += [tf.sin(phase), tf.cos(phase)]
    return tf.cast(tf.stack(parts, axis=1), tf.float32)


def crossed(inputs, columns, hash_buckets):
    """``[batch]`` int64 hash bucket of the columns' joined string values."""
    values = [string_column(inputs[c], None) for c in columns]
    return tf.strings.to_hash_bucket_fast(tf.strings.join(values, separator="\x1f"),
                                          hash_buckets)


def numeric_value(x, transform, num_buckets):
    """A ``[batch]`` float32 (zscore, minmax, log) or int64 bucket index (bucketize).

    ``log`` is the z-score of ``log1p(max(x - min(x), 0))``: defined for any
    sign, and a value below the training minimum (at serving) is read as the
    minimum instead of giving NaN.
    """
    if transform == "zscore":
        return tft.scale_to_z_score(x)
    if transform == "minmax":
        return tft.scale_to_0_1(x)
    if transform == "log":
        return tft.scale_to_z_score(tf.math.log1p(tf.maximum(x - tft.min(x), 0.0)))
    if transform == "bucketize":
        return tft.bucketize(x, num_buckets)
    raise ValueError(f"unknown numeric transform {transform!r}")
