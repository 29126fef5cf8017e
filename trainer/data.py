"""Reading the Transform's output, and the deduplicated candidate table.

Transformed examples are gzipped TFRecords of ``tf.train.Example``; every
transformed feature is dense (``[batch]`` or ``[batch, max_length]``).

This module is copied verbatim into the generated Trainer module.
"""
import numpy as np
import tensorflow as tf

from transform.naming import CANDIDATE_KEY, QUERY_KEY


def list_files(patterns):
    """Expands file patterns; raises naming the patterns when nothing matches."""
    if isinstance(patterns, str):
        patterns = [patterns]
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {list(patterns)}; did the "
                                "Transform component run and produce this split?")
    return files


def make_dataset(patterns, feature_spec, batch_size, shuffle=False, seed=None):
    """A ``tf.data.Dataset`` of feature dicts, one pass over the files."""
    dataset = tf.data.TFRecordDataset(list_files(patterns), compression_type="GZIP")
    if shuffle:
        dataset = dataset.shuffle(50_000, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(lambda records: tf.io.parse_example(records, feature_spec),
                          num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def load_arrays(patterns, feature_spec, batch_size=4096):
    """All transformed rows as numpy arrays, ``{key: array [rows, ...]}``."""
    parts = {key: [] for key in feature_spec}
    for batch in make_dataset(patterns, feature_spec, batch_size):
        for key, value in batch.items():
            parts[key].append(value.numpy())
    rows = sum(len(p) for p in parts[CANDIDATE_KEY])
    if rows == 0:
        raise ValueError(f"the transformed examples {patterns} hold no rows")
    return {key: np.concatenate(value, axis=0) for key, value in parts.items()}


def unique_candidates(arrays, candidate_inputs, vocabulary_size):
    """The candidate table: one row per candidate id, ordered by vocabulary index.

    Args:
      arrays: transformed training rows, ``{key: [rows, ...]}``.
      candidate_inputs: keys the candidate tower reads.
      vocabulary_size: size of the candidate-id vocabulary (OOV excluded).

    Returns:
      ``{key: [num_candidates, ...]}`` with ``arrays[CANDIDATE_KEY]`` unique and
      equal to ``0..vocabulary_size-1``.

    Raises:
      ValueError: a candidate's features differ between rows (the candidate
        tower would see two versions of one candidate), or a vocabulary entry
        has no row.
    """
    keys = arrays[CANDIDATE_KEY]
    in_vocab = keys < vocabulary_size
    unique, first = np.unique(keys[in_vocab], return_index=True)
    rows = np.flatnonzero(in_vocab)[first]
    if len(unique) != vocabulary_size:
        raise ValueError(f"{vocabulary_size - len(unique)} candidate ids of the vocabulary have "
                         "no training row; the vocabulary must come from the training split")
    table = {CANDIDATE_KEY: keys[rows]}
    position = np.searchsorted(unique, keys[in_vocab])
    for key in candidate_inputs:
        if key == CANDIDATE_KEY:
            continue
        values = arrays[key][in_vocab]
        chosen = arrays[key][rows]
        if np.issubdtype(values.dtype, np.floating):  # batched float math may differ in ulps
            same = np.isclose(values, chosen[position], rtol=1e-5, atol=1e-6, equal_nan=True)
        else:
            same = values == chosen[position]
        differs = ~np.all(same.reshape(len(values), -1), axis=1)
        if differs.any():
            bad = int(keys[in_vocab][np.argmax(differs)])
            raise ValueError(f"candidate feature {key!r} takes different values for one "
                             f"candidate (vocabulary index {bad}, {int(differs.sum())} rows "
                             "disagree); candidate features must be attributes of the candidate")
        table[key] = chosen
    return table


def query_groups(arrays):
    """Maps each query key to the sorted candidate keys it interacted with."""
    order = np.lexsort((arrays[CANDIDATE_KEY], arrays[QUERY_KEY]))
    queries = arrays[QUERY_KEY][order]
    candidates = arrays[CANDIDATE_KEY][order]
    splits = np.flatnonzero(np.diff(queries)) + 1
    return {int(q[0]): np.unique(c) for q, c in zip(np.split(queries, splits),
                                                     np.split(candidates, splits)) if len(q)}
