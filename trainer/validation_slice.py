"""The hyperparameter search's validation slice: the train split cut in two, by time.

The cut follows the split the gate judges on (``data.split.method``), so a
trial is scored the way the tuned model will be:

* a **global** time split (auto, time, days, dates: a purchase log judged on
  its future): the slice is the last ``tuning.validation_fraction`` of train
  by time, one cut for everybody (:func:`carve_slice`);
* a **per-query** split (``user_time``: ratings, users active at different
  times): each query's own latest part of its train rows, the user_time rule
  applied once more inside train (:func:`carve_per_query`). A global cut there
  scores the few users active at the end (12 queries on MovieLens).

Either way the rows of one query at one moment (a basket) fall on one side,
trials fit on the rows before each query's cut and never read the eval or
test splits, and a slice query is embedded from its first slice row, whose
features and history hold only what came strictly before it.

Part of the runtime the generated Trainer module imports.
"""
import math
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from transform.naming import CANDIDATE_POSITION, CATALOG_SPLIT, QUERY_ID, QUERY_KEY, TIMESTAMP, \
    TRAIN_SPLIT
from trainer.data import load_arrays, query_counts, query_groups
from trainer.evaluation import popularity
from trainer.held_out import HeldOutSet
from trainer.inputs import load_inputs
from trainer.model import require_legacy_keras
from trainer.towers import tower_inputs

NEVER = np.iinfo(np.int64).max  # the cut of a query with no slice rows: every row is fit
PER_QUERY_SPLITS = ("user_time",)  # data.split.method values whose slice is cut per query


def _require_times(times):
    times = np.asarray(times, dtype=np.int64)
    if not len(times) or (times < 0).any():
        raise ValueError("the validation slice is carved by time: every train row needs a "
                         "timestamp (data.timestamp)")
    return times


def carve_slice(times, fraction):
    """One global cut: the rows at or after it are about the last ``fraction`` of ``times``
    (every row of one moment on the same side).

    Args:
      times: ``[rows]`` int64 epoch seconds of the train split.

    Returns:
      ``(cut, fit_mask [rows] bool)``: fit rows are strictly before ``cut``.

    Raises:
      ValueError: no row before the cut, or none at or after it.
    """
    times = _require_times(times)
    ordered = np.sort(times)
    cut = int(ordered[min(len(ordered) - 1, int(math.floor(len(ordered) * (1 - fraction))))])
    fit = times < cut
    if not fit.any():
        raise ValueError(f"tuning.validation_fraction {fraction:g}: every train row is at the "
                         "slice's first moment, so no row is left to fit; use a smaller fraction")
    return cut, fit


def carve_per_query(queries, times, fraction):
    """A cut per query: its latest ``int(n * fraction)`` train rows (at least one when it
    has two or more), moved earlier to keep a moment whole, are its slice rows.

    A query whose cut would leave it no earlier row (one row, or all its rows at
    one moment) has no slice rows: it is all fit, as the user_time split keeps
    a one-interaction query in train.

    Args:
      queries: ``[rows]`` raw query ids.
      times: ``[rows]`` int64 epoch seconds.

    Returns:
      ``(cuts, fit_mask [rows] bool)``: ``cuts`` maps each query with slice rows to
      its first slice moment; a row is fit when its time is before its query's cut.

    Raises:
      ValueError: no query has slice rows (each has one row, or one moment).
    """
    times = _require_times(times)
    ids, codes = np.unique(np.asarray(queries), return_inverse=True)
    order = np.lexsort((times, codes))  # by query, then time
    sizes = np.bincount(codes, minlength=len(ids))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    held = np.where(sizes >= 2, np.maximum(1, np.floor(sizes * fraction).astype(np.int64)), 0)
    held = np.minimum(held, sizes - 1)
    ordered = times[order]
    first_slice = ordered[np.minimum(starts + sizes - np.maximum(held, 1), len(ordered) - 1)]
    cut = np.where((held > 0) & (first_slice > ordered[starts]), first_slice, NEVER)
    fit = times < cut[codes]
    if fit.all():
        raise ValueError("tuning.validation_fraction: no query has a train row after an earlier "
                         "one, so a per-query validation slice is empty; use data.split.method "
                         "time, or data with more than one moment per query")
    cuts = {ids[i]: int(cut[i]) for i in np.flatnonzero(cut != NEVER)}
    return cuts, fit


def _day(seconds):
    return time.strftime("%Y-%m-%d", time.gmtime(int(seconds)))


class Slice:
    """The train split cut in two: the rows trials fit on, the slice they are scored on.

    Built once per search (the slice's baselines, EASE included, are fitted once).

    Args:
      spec: the frozen config (``data.split.method`` picks the cut: :data:`PER_QUERY_SPLITS`).
      files: ``{split: patterns}`` with the train and catalog splits (no other is read).
      transform_dir: the Transform's graph.
      fraction: ``tuning.validation_fraction``.
    """

    def __init__(self, spec, files, transform_dir, fraction):
        require_legacy_keras()
        self.spec, self.files = spec, files
        self.tft_output = tft.TFTransformOutput(transform_dir)
        inputs = load_inputs(spec, self.tft_output, {TRAIN_SPLIT: files[TRAIN_SPLIT],
                                                     CATALOG_SPLIT: files[CATALOG_SPLIT]})
        rows = inputs["train"]
        if TIMESTAMP not in rows:
            raise ValueError("the validation slice is carved by time: set data.timestamp")
        self.per_query = spec["data"]["split"]["method"] in PER_QUERY_SPLITS
        if self.per_query:
            self.cuts, fit = carve_per_query(rows[QUERY_ID], rows[TIMESTAMP], fraction)
            self.cut = None
        else:
            self.cut, fit = carve_slice(rows[TIMESTAMP], fraction)
            self.cuts = None
        fitted = {key: value[fit] for key, value in rows.items()}
        held = {key: value[~fit] for key, value in rows.items()}
        num = len(inputs["catalog"][next(iter(inputs["catalog"]))])
        self.inputs = dict(inputs, train=fitted,
                           counts=popularity(fitted[CANDIDATE_POSITION], num))
        feature_spec = inputs["feature_spec"]
        query_keys = list(dict.fromkeys(
            [i["key"] for i in tower_inputs(spec, "query_tower")] + [QUERY_KEY]))
        wanted = list(dict.fromkeys(query_keys + [QUERY_ID, TIMESTAMP]))
        arrays = load_arrays(files[TRAIN_SPLIT], {k: feature_spec[k] for k in wanted})
        # a query with no fit row is cold, as in the eval split: no snapshot, not scored
        warm = set(fitted[QUERY_ID].tolist())
        self.set = HeldOutSet("validation slice", self._snapshots(arrays, query_keys, warm),
                              query_keys,
                              held[QUERY_ID], held[CANDIDATE_POSITION],
                              query_groups(fitted[QUERY_ID], fitted[CANDIDATE_POSITION]),
                              query_counts(fitted[QUERY_ID], fitted[CANDIDATE_POSITION]),
                              seen_rows=fitted, num_candidates=num,
                              baselines=spec["pipeline"].get("baselines"),
                              held_times=held[TIMESTAMP])
        self.about = {
            "per_query": self.per_query,
            "fit_rows": int(fit.sum()), "slice_rows": int((~fit).sum()),
            "fit_first": _day(fitted[TIMESTAMP].min()), "fit_last": _day(fitted[TIMESTAMP].max()),
            "slice_first": _day(held[TIMESTAMP].min()), "slice_last": _day(held[TIMESTAMP].max()),
            "cut": None if self.per_query else int(self.cut), "fraction": float(fraction),
            "queries": len(self.set.queries),
            **{k: int(v) for k, v in self.set.counts.items()}}

    def fit_mask(self, queries, times):
        """``[rows]`` bool: which of these (query, time) rows trials fit on."""
        times = np.asarray(times, dtype=np.int64)
        if not self.per_query:
            return times < self.cut
        return times < np.asarray([self.cuts.get(q, NEVER) for q in queries.tolist()],
                                  dtype=np.int64).reshape(times.shape)

    def _snapshots(self, arrays, query_keys, warm):
        """Each ``warm`` slice query's first slice row (its features and history as they
        stood just before its first slice interaction), ``{key: [queries, ...]}``."""
        times = arrays[TIMESTAMP]
        order = np.lexsort((np.arange(len(times)), times))  # by time, then file order
        sliced = ~self.fit_mask(arrays[QUERY_ID], times)
        first = {}
        for row in order[sliced[order]].tolist():
            if arrays[QUERY_ID][row] in warm:
                first.setdefault(arrays[QUERY_ID][row], row)
        rows = np.asarray(sorted(first.values()), dtype=np.int64)
        return {key: arrays[key][rows] for key in dict.fromkeys(query_keys + [QUERY_ID])}

    def dataset(self, batch_size, seed):
        """The fit rows, shuffled, in batches of ``batch_size``."""
        from trainer.data import make_dataset

        rows = make_dataset(self.files[TRAIN_SPLIT], self.inputs["feature_spec"], 4096,
                            shuffle=True, seed=seed, positions=self.inputs["positions"])
        if self.per_query:
            keys = sorted(self.cuts)
            table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys or [b""], tf.string),
                tf.constant([self.cuts[k] for k in keys] or [NEVER], tf.int64)),
                default_value=tf.constant(NEVER, tf.int64))
            kept = rows.unbatch().filter(
                lambda row: row[TIMESTAMP] < table.lookup(row[QUERY_ID]))
        else:
            cut = tf.constant(self.cut, tf.int64)
            kept = rows.unbatch().filter(lambda row: row[TIMESTAMP] < cut)
        return kept.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def baselines(self, objective):
        """Each discovery baseline's ``objective`` on the slice, ``{name: value}``."""
        from trainer.baselines import DISCOVERY

        found = self.set.baselines().evaluate(self.set.truth, self.set.exclude,
                                              [int(objective.rsplit("_", 1)[1])])
        return {name: float(found[name][objective]) for name in DISCOVERY if name in found}
