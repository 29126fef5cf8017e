"""Reading the Transform's output: datasets, arrays, the catalog and raw-id groups.

Transformed examples are gzipped TFRecords of ``tf.train.Example``; every
transformed feature is dense (``[batch]`` or ``[batch, max_length]``), and
the raw ids (QUERY_ID, CANDIDATE_ID) are strings exactly as written.

The *catalog* is every servable candidate, one row each, ordered by raw id;
a candidate's *position* is its row. Positions, not vocabulary indices,
identify candidates in the loss, the index, the metrics and serving: the
vocabulary only covers candidates with training interactions (the others
share its OOV row), while the catalog covers them all.

Part of the runtime the generated Trainer module imports.
"""
import numpy as np
import tensorflow as tf

from transform.naming import CANDIDATE_ID, CANDIDATE_POSITION, QUERY_ID, TIMESTAMP, WEIGHT


# Records shuffled in memory per epoch. The prepared train split is already a uniform
# shuffle of the log (pipelines.data.sql.queries.shuffle_key), so the buffer only makes
# each epoch's order differ; it need not cover the data.
SHUFFLE_BUFFER = 50_000


def list_files(patterns):
    """Expands file patterns; raises naming the patterns when nothing matches."""
    if isinstance(patterns, str):
        patterns = [patterns]
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {list(patterns)}; did the "
                                "Transform component run and produce this split?")
    return files


def position_table(catalog_ids):
    """A lookup table raw candidate id (bytes) -> catalog position, -1 if absent."""
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(catalog_ids), tf.string),
        tf.range(len(catalog_ids), dtype=tf.int64)), default_value=-1)


def make_dataset(patterns, feature_spec, batch_size, shuffle=False, seed=None, positions=None):
    """A ``tf.data.Dataset`` of feature dicts, one pass over the files.

    With ``positions`` (a :func:`position_table`), each batch also carries
    CANDIDATE_POSITION ``[batch]`` int64. ``shuffle``: the files in a new order
    each epoch, interleaved, and the records through a ``SHUFFLE_BUFFER``.
    """
    files = list_files(patterns)
    if shuffle:  # the files in a fresh order each epoch, their records through a buffer
        dataset = tf.data.Dataset.from_tensor_slices(files).shuffle(
            len(files), seed=seed, reshuffle_each_iteration=True).interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
            cycle_length=min(len(files), 4), deterministic=True)
        dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    else:
        dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    dataset = dataset.batch(batch_size)

    def parse(records):
        features = tf.io.parse_example(records, feature_spec)
        if positions is not None:
            features[CANDIDATE_POSITION] = positions.lookup(features[CANDIDATE_ID])
        return features

    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def load_arrays(patterns, feature_spec, batch_size=4096):
    """All transformed rows as numpy arrays, ``{key: array [rows, ...]}`` (bytes for strings)."""
    parts = {key: [] for key in feature_spec}
    for batch in make_dataset(patterns, feature_spec, batch_size):
        for key, value in batch.items():
            parts[key].append(value.numpy())
    rows = sum(len(p) for p in parts[QUERY_ID])
    if rows == 0:
        raise ValueError(f"the transformed examples {patterns} hold no rows")
    return {key: np.concatenate(value, axis=0) for key, value in parts.items()}


def load_pairs(patterns, feature_spec, catalog_ids, batch_size=8192, with_time=False):
    """Each transformed row's raw query id and catalog position, without the other features.

    Only the two id columns are parsed, batch by batch, and each distinct
    query id is one shared object, so memory grows by ~16 bytes per row
    (a pointer and a position) whatever the features hold: popularity,
    exclusions and evaluation truth need no more.

    Returns:
      ``{QUERY_ID: object [rows], CANDIDATE_POSITION: int64 [rows]}``
      (position -1: not in the catalog), plus ``'outside'``: the number of
      such rows and the first such raw id (or None); ``with_time``, also
      ``TIMESTAMP: int64 [rows]`` (epoch seconds, -1 where none).

    Raises:
      ValueError: the files hold no rows.
    """
    keys = (QUERY_ID, CANDIDATE_ID) + ((TIMESTAMP,) if with_time else ())
    missing_keys = [key for key in keys if key not in feature_spec]
    if missing_keys:
        raise ValueError(f"the transformed examples have no {missing_keys[0]!r}; the Transform "
                         "emits it when data.timestamp is set")
    spec = {key: feature_spec[key] for key in keys}
    index = {key: i for i, key in enumerate(np.asarray(catalog_ids).tolist())}
    interned, queries, positions, times = {}, [], [], []
    outside, first = 0, None
    for batch in make_dataset(patterns, spec, batch_size):
        ids = batch[CANDIDATE_ID].numpy().tolist()
        found = np.fromiter((index.get(key, -1) for key in ids), dtype=np.int64, count=len(ids))
        missing = np.flatnonzero(found < 0)
        if len(missing):
            outside += len(missing)
            first = ids[missing[0]] if first is None else first
        queries.append(np.asarray([interned.setdefault(key, key)
                                   for key in batch[QUERY_ID].numpy().tolist()], dtype=object))
        positions.append(found)
        if with_time:
            times.append(batch[TIMESTAMP].numpy().astype(np.int64))
    if not positions or sum(len(p) for p in positions) == 0:
        raise ValueError(f"the transformed examples {patterns} hold no rows")
    out = {QUERY_ID: np.concatenate(queries), CANDIDATE_POSITION: np.concatenate(positions),
           "outside": (outside, first)}
    if with_time:
        out[TIMESTAMP] = np.concatenate(times)
    return out


def weight_summary(patterns, feature_spec, batch_size=8192):
    """The example weights (WEIGHT) the training loss reads from ``patterns``: ``{'rows',
    'sum', 'mean', 'min', 'max'}`` (floats), one pass over that column alone.

    Raises:
      ValueError: the examples carry no WEIGHT (the Transform emits it with data.weight).
    """
    if WEIGHT not in feature_spec:
        raise ValueError(f"the transformed examples have no {WEIGHT!r}; the Transform emits it "
                         "when data.weight is set")
    parts = [batch[WEIGHT].numpy() for batch in
             make_dataset(patterns, {WEIGHT: feature_spec[WEIGHT]}, batch_size)]
    weights = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if not len(weights):
        raise ValueError(f"the transformed examples {patterns} hold no rows")
    return {"rows": int(len(weights)), "sum": float(weights.sum()),
            "mean": float(weights.mean()), "min": float(weights.min()),
            "max": float(weights.max())}


def catalog_table(arrays, keys):
    """The catalog from the transformed catalog split: one row per candidate, by raw id.

    Args:
      arrays: the catalog split's transformed rows, ``{key: [rows, ...]}``.
      keys: the transformed keys the candidate tower reads.

    Returns:
      ``{key: [num_candidates, ...]}`` for ``keys``, CANDIDATE_ID and
      CANDIDATE_POSITION (``0..num_candidates-1``), ordered by raw id.

    Raises:
      ValueError: a raw id appears twice or is empty (the catalog split is
        built with one row per candidate).
    """
    ids = arrays[CANDIDATE_ID]
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    if len(ordered) and ordered[0] == b"":
        raise ValueError("the catalog holds a candidate without an id")
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(repeated):
        raise ValueError(f"candidate id {repeated[0]!r} appears {int((ids == repeated[0]).sum())} "
                         "times in the catalog; it needs one row per candidate")
    table = {key: arrays[key][order] for key in dict.fromkeys(list(keys) + [CANDIDATE_ID])}
    table[CANDIDATE_POSITION] = np.arange(len(order), dtype=np.int64)
    return table


def positions_of(raw_ids, catalog_ids):
    """Catalog positions of raw candidate ids, ``[n]`` int64, -1 where not in the catalog."""
    index = {key: i for i, key in enumerate(catalog_ids.tolist())}
    return np.fromiter((index.get(key, -1) for key in raw_ids.tolist()), dtype=np.int64,
                       count=len(raw_ids))


def query_counts(queries, positions):
    """``{raw query id: (positions, how many rows of each)}``, positions sorted; -1 left out."""
    counts = {}
    for query, position in zip(np.asarray(queries).tolist(), np.asarray(positions).tolist()):
        if position >= 0:
            found = counts.setdefault(query, {})
            found[position] = found.get(position, 0) + 1
    return {query: (np.asarray(sorted(found), dtype=np.int64),
                    np.asarray([found[p] for p in sorted(found)], dtype=np.float64))
            for query, found in counts.items()}


def query_groups(queries, positions):
    """Maps each raw query id (bytes) to the sorted catalog positions it interacted with.

    Rows whose candidate is outside the catalog (position -1) are left out.
    """
    groups = {}
    for query, position in zip(np.asarray(queries).tolist(), np.asarray(positions).tolist()):
        if position >= 0:
            groups.setdefault(query, set()).add(position)
    return {query: np.asarray(sorted(found), dtype=np.int64) for query, found in groups.items()}
