"""The demand prior: a learned score offset from each candidate's recent demand.

With ``model.demand_prior``, the score of candidate ``c`` for a query at
time ``t`` gains a term the model learns with the towers::

    score(q, c, t) = q . c / T  [+ b_c]  +  sum_w a_w * f_w(c, t)

where ``n_w(c, t)`` counts the interactions with ``c`` in the ``w`` whole UTC
days before ``t``'s day (one term per configured window, and one over all
earlier days with ``all_time``), ``a_w`` are learned weights (starting at
0: no prior), and ``f_w`` is the candidate's *smoothed share* of the window::

    f_w(c, t)   = log((n_w(c, t) + s * p_all(c, t)) / (N_w(t) + s))
    f_all(c, t) = log p_all(c, t),   p_all = (n_all(c, t) + 1) / (N_all(t) + C)

``N_w`` is every candidate's count in the window, ``C`` the catalog size and
``s`` the pseudo-count: ``smoothing`` times the fitted rows' mean rows per day.
A window with few rows (a holiday, a gap in the log) says little, and its term
falls back to the all-time share instead of ranking the handful of products
that happened to sell in it (Ta-Feng window 4: the five days before its eval
cut hold 400-800 rows against ~6,000 on a normal day; BENCHMARKS.md).
``smoothing: 0`` gives the earlier form, ``log1p(n_w)``. Only the rows the model is fitted on are counted, and a row
never counts its own day, so a training row's prior holds strictly earlier
interactions and a held-out row's holds nothing of the held-out split: every
moment at or after the fitted rows' last day reads the counts "as of the end"
(all fitted rows), which is also what evaluation and serving use.

Time is kept in buckets of whole days: one day each, unless the table
``[buckets + 1, num_candidates, windows]`` would exceed ``MAX_CELLS``; then
buckets widen (a log over decades), and a window of ``w`` days covers
``ceil(w / width)`` buckets.

Part of the runtime the generated Trainer module imports.
"""
import math

import numpy as np
import tensorflow as tf

DAY_SECONDS = 86_400
MAX_CELLS = 1 << 25  # 32M float32 (128 MiB) for the count table


def bucket_width(days, num_candidates, terms, max_cells=MAX_CELLS):
    """Days per time bucket so that ``(buckets + 1) * candidates * terms <= max_cells``."""
    width = 1
    while (math.ceil(days / width) + 1) * max(num_candidates, 1) * terms > max_cells:
        width += max(1, width // 4)
    return width


class DemandPrior(tf.Module):
    """Counts of recent demand per candidate and time bucket, and their learned weights.

    Args:
      positions: ``[rows]`` int catalog positions of the fitted interactions
        (-1: outside the catalog, not counted).
      times: ``[rows]`` int epoch seconds of the same rows.
      num_candidates: catalog size.
      windows: window lengths in days, e.g. ``[1, 7, 28]``.
      all_time: add a term over every earlier day.
      smoothing: the pseudo-count of each window, in days of the fitted rows' mean
        volume (0: ``log1p`` of the raw counts).

    Raises:
      ValueError: no fitted row has a time (set ``data.timestamp``).
    """

    def __init__(self, positions, times, num_candidates, windows, all_time=True,
                 smoothing=0.0, max_cells=MAX_CELLS, name="demand_prior"):
        super().__init__(name=name)
        positions = np.asarray(positions, np.int64)
        times = np.asarray(times, np.int64)
        known = (positions >= 0) & (times >= 0)
        if not known.any():
            raise ValueError("model.demand_prior counts interactions by time, but no training "
                             "row has one: set data.timestamp (or remove model.demand_prior)")
        days = times[known] // DAY_SECONDS
        self.rows = int(known.sum())  # interactions counted
        self.first_day = int(days.min())
        span = int(days.max()) - self.first_day + 1
        terms = len(windows) + (1 if all_time else 0)
        self.width = bucket_width(span, num_candidates, terms, max_cells)
        buckets = (days - self.first_day) // self.width
        self.end = int(buckets.max()) + 1  # the bucket index "after every fitted row"
        counts = np.zeros((self.end + 1, num_candidates), np.float64)
        np.add.at(counts, (buckets + 1, positions[known]), 1.0)
        before = np.cumsum(counts, axis=0)  # before[k, c]: rows of c in buckets < k
        self.windows = [int(w) for w in windows]
        self.all_time = bool(all_time)
        self.terms = [f"{w}d" for w in self.windows] + (["all"] if all_time else [])
        self.smoothing = float(smoothing)
        # the pseudo-count: `smoothing` days of the fitted rows' mean volume
        self.pseudo_rows = self.smoothing * self.rows / max(span, 1)
        share = (before + 1.0) / (before.sum(axis=1, keepdims=True) + num_candidates)
        columns = []
        for w in self.windows:
            span_buckets = max(1, math.ceil(w / self.width))
            shifted = np.concatenate([np.zeros((span_buckets, num_candidates)),
                                      before[:-span_buckets]])[:self.end + 1]
            window = before - shifted  # [buckets + 1, num_candidates]
            if self.smoothing > 0:
                columns.append(np.log((window + self.pseudo_rows * share)
                                      / (window.sum(axis=1, keepdims=True) + self.pseudo_rows)))
            else:
                columns.append(np.log1p(window))
        if all_time:
            columns.append(np.log(share) if self.smoothing > 0 else np.log1p(before))
        # [buckets + 1, num_candidates, terms]: each term as of each bucket's start
        self.table = tf.constant(np.stack(columns, axis=2).astype(np.float32))
        self.weights = tf.Variable(tf.zeros([len(self.terms)]), name="weights")

    def moments(self, times):
        """``[batch]`` int64 bucket of each time; a time after the fitted rows (or -1) reads
        the end, i.e. every fitted row."""
        times = tf.cast(times, tf.int64)
        bucket = (tf.math.floordiv(times, DAY_SECONDS) - self.first_day) // self.width
        bucket = tf.where(times < 0, tf.constant(self.end, tf.int64), bucket)
        return tf.clip_by_value(bucket, 0, self.end)

    def combined(self):
        """``[buckets + 1, num_candidates]``: the prior of every candidate at every bucket."""
        return tf.tensordot(self.table, self.weights, axes=1)

    def pairwise(self, moments, positions=None):
        """``[batch, n]`` prior of candidates ``positions`` (``[n]``; None: the whole
        catalog) at each row's moment.

        With ``positions``, only their columns of the table are combined
        (``[buckets + 1, n, terms]``, not the whole catalog's): a sampled step's
        prior, and its gradient, cost ``n / num_candidates`` of the whole table's.
        """
        table = self.table if positions is None else tf.gather(self.table, positions, axis=1)
        return tf.gather(tf.tensordot(table, self.weights, axes=1), moments)

    def at(self, moments, positions):
        """``[batch]`` prior of each row's own candidate (``positions`` ``[batch]``): its
        ``[batch, terms]`` cells of the table, combined."""
        index = tf.stack([moments, tf.maximum(tf.cast(positions, tf.int64), 0)], axis=1)
        return tf.linalg.matvec(tf.gather_nd(self.table, index), self.weights)

    def static(self):
        """``[num_candidates]`` prior as of the end: what evaluation and serving add."""
        return tf.tensordot(self.table[self.end], self.weights, axes=1)

    @property
    def as_of(self):
        """Epoch seconds of the end: the start of the bucket after the last counted row."""
        return (self.first_day + self.end * self.width) * DAY_SECONDS

    def describe(self):
        """``{'weights': {term: learned weight}, 'rows', 'as_of', 'bucket_days'}``, e.g.
        weights ``{'1d': 0.31, '7d': 0.2, 'all': 0.03}``."""
        return {"weights": {t: float(w) for t, w in zip(self.terms, self.weights.numpy())},
                "rows": self.rows, "as_of": self.as_of, "bucket_days": self.width,
                "smoothing": self.smoothing, "pseudo_rows": round(self.pseudo_rows, 1)}
