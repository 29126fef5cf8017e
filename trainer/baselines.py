"""The baselines every held-out evaluation ranks beside the model.

Each is fitted on the interactions before the held-out split (the *seen*
rows: train for the eval split, train and eval for the test split), never on
a held-out one, and ranked over the whole catalog with the same exclusions as
the model (a query's own earlier candidates), so a figure is comparable with
the model's on the same queries:

- ``popularity``: interactions per candidate, all seen time;
- ``recent_popularity``: interactions in the last ``recent_days`` days before
  the cut (the newest seen interaction), ties by all-time popularity (needs
  ``data.timestamp``);
- ``ease``: EASE (Steck 2019), an item-item model fitted in closed form,
  ``B = I - P / diag(P)`` with ``P = (X^T X + l2 I)^-1`` over the binary
  query x candidate matrix ``X``, restricted to the most frequent candidates
  that fit ``item_item_memory_mb`` (:func:`ease_items`); a query's score for
  a candidate is the sum of ``B``'s rows of the candidates it had.

For "buy again" (a query's held-out candidates among what it already had) the
baselines are the query's own counts (``frequency``) and its counts weighted
by recency (``recency``: each interaction counts ``0.5 ** (age / half_life)``).

numpy only. Part of the runtime the generated Trainer module imports.
"""
import math
import time

import numpy as np

from trainer.evaluation import ranking_metrics, top_k_excluding

DAY = 86_400
# EASE holds three [items, items] float64 matrices at its peak (the Gram matrix, its
# inverse and the weights computed in place of a copy): 24 bytes per item pair.
EASE_BYTES_PER_PAIR = 24
# The names a held-out evaluation's ``baselines`` holds, in the order screens show them.
DISCOVERY = ("popularity", "recent_popularity", "ease")
LABELS = {"popularity": "popularity", "recent_popularity": "recent popularity",
          "ease": "EASE", "frequency": "own counts", "recency": "own counts by recency"}
DEFAULTS = {"recent_days": 28, "item_item_memory_mb": 512, "ease_l2": 500.0,
            "recency_half_life_days": 28}


def ease_items(memory_mb, num_candidates):
    """How many candidates EASE covers: all of them, or as many as fit ``memory_mb``."""
    fit = int(math.isqrt(int(memory_mb * 2 ** 20) // EASE_BYTES_PER_PAIR))
    return max(1, min(num_candidates, fit))


def rank_row(scores, tie_break):
    """One rank score per candidate: higher ``scores`` first, then higher ``tie_break``,
    then the lower position (so ties break exactly, whatever the magnitudes)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(tie_break, dtype=np.float64),
                        -np.asarray(scores, dtype=np.float64)))
    row = np.empty(len(scores), dtype=np.float64)
    row[order] = np.arange(len(scores), 0, -1)
    return row


def fit_ease(seen_queries, seen_positions, num_candidates, items, l2):
    """EASE's weights over the ``items`` most frequent candidates.

    Args:
      seen_queries: ``[rows]`` raw query ids; seen_positions: ``[rows]`` int64
        catalog positions (-1 outside the catalog, left out).
      items: how many candidates to cover (:func:`ease_items`); l2: EASE's lambda.

    Returns:
      ``(columns [items] int64 catalog positions, weights [items, items] float64)``,
      ``weights[i, j]``: how much having ``columns[i]`` scores ``columns[j]``.
    """
    valid = seen_positions >= 0
    queries, positions = np.asarray(seen_queries)[valid], seen_positions[valid]
    counts = np.bincount(positions, minlength=num_candidates)
    columns = np.lexsort((np.arange(num_candidates), -counts))[:items]
    columns = np.sort(columns[counts[columns] > 0])
    where = np.full(num_candidates, -1, dtype=np.int64)
    where[columns] = np.arange(len(columns))
    keep = where[positions] >= 0
    _, rows = np.unique(queries[keep], return_inverse=True)
    # the binary query x item matrix X as (row, column) pairs, a repeat counted once
    pairs = np.unique(rows.astype(np.int64) * len(columns) + where[positions[keep]])
    gram = np.zeros((len(columns), len(columns)))  # X^T X: co-occurrence counts
    for row_items in np.split(pairs % len(columns), np.flatnonzero(np.diff(pairs // len(
            columns))) + 1) if len(pairs) else []:
        gram[np.ix_(row_items, row_items)] += 1.0
    gram[np.diag_indices_from(gram)] += l2
    weights = np.linalg.inv(gram)
    del gram
    weights /= -np.diag(weights)[np.newaxis, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return columns, weights


class Baselines:
    """The discovery baselines of one held-out split, fitted on its seen rows.

    Args:
      seen: ``{QUERY_ID: [rows], CANDIDATE_POSITION: [rows]}`` and, with
        ``data.timestamp``, ``TIMESTAMP: [rows]`` epoch seconds: everything
        before the split.
      num_candidates: the catalog's size.
      settings: ``pipeline.baselines`` (:data:`DEFAULTS`'s keys).
    """

    def __init__(self, seen_queries, seen_positions, seen_times, num_candidates, settings):
        started = time.time()
        self.settings = dict(DEFAULTS, **(settings or {}))
        valid = seen_positions[seen_positions >= 0]
        counts = np.bincount(valid, minlength=num_candidates).astype(np.float64)
        self.counts = counts
        self.rows = {"popularity": rank_row(counts, np.zeros(num_candidates))}
        self.about = {"fitted_rows": int(len(valid))}
        if seen_times is not None and len(seen_times) and (seen_times >= 0).any():
            cut = int(seen_times.max())
            since = cut - int(self.settings["recent_days"]) * DAY
            recent = (seen_times > since) & (seen_positions >= 0)
            recent_counts = np.bincount(seen_positions[recent], minlength=num_candidates)
            self.rows["recent_popularity"] = rank_row(recent_counts, counts)
            self.about.update(cut=cut, recent_days=int(self.settings["recent_days"]),
                              recent_rows=int(recent.sum()))
        items = ease_items(self.settings["item_item_memory_mb"], num_candidates)
        self.ease = fit_ease(seen_queries, seen_positions, num_candidates, items,
                             float(self.settings["ease_l2"]))
        self.about.update(ease_items=int(len(self.ease[0])), ease_budget_items=items,
                          ease_memory_mb=float(self.settings["item_item_memory_mb"]),
                          ease_l2=float(self.settings["ease_l2"]),
                          catalog=int(num_candidates))
        self.fit_seconds = time.time() - started

    def ease_scores(self, exclude):
        """``[len(exclude), num_candidates]`` EASE scores; candidates it does not cover -inf."""
        columns, weights = self.ease
        where = np.full(len(self.counts), -1, dtype=np.int64)
        where[columns] = np.arange(len(columns))
        covered = np.zeros((len(exclude), len(columns)))
        for row, had in enumerate(exclude):  # a query's score: the sum of its items' rows
            inside = where[had]
            inside = inside[inside >= 0]
            if len(inside):
                covered[row] = weights[inside].sum(axis=0)
        out = np.full((len(exclude), len(self.counts)), -np.inf)
        # a covered candidate without signal still outranks an uncovered one; popularity's
        # rank breaks ties, far below any real difference
        out[:, columns] = covered + 1e-12 * self.rows["popularity"][columns] / len(self.counts)
        return out

    def evaluate(self, truth, exclude, ks, chunk=1024):
        """``{name: ranking_metrics}`` of each baseline on these queries, plus ``'about'``
        (what was fitted: rows, the cut, EASE's items and budget, seconds)."""
        started = time.time()
        k = max(ks)
        tops = {name: [] for name in list(self.rows) + ["ease"]}
        for start in range(0, len(truth), chunk):
            rows = slice(start, start + chunk)
            for name, row in self.rows.items():
                scores = np.broadcast_to(row, (len(exclude[rows]), len(row)))
                tops[name].append(top_k_excluding(scores, exclude[rows], k))
            tops["ease"].append(top_k_excluding(self.ease_scores(exclude[rows]),
                                                exclude[rows], k))
        out = {name: ranking_metrics(np.concatenate(parts), truth, ks)
               for name, parts in tops.items()}
        out["about"] = dict(self.about, seconds=round(self.fit_seconds + time.time() - started,
                                                      3))
        return out


def best_of(baselines, metric):
    """The name of the strongest discovery baseline at ``metric`` (ties: the simpler one,
    in :data:`DISCOVERY`'s order)."""
    found = [n for n in DISCOVERY if n in baselines]
    return max(found, key=lambda n: (baselines[n][metric], -found.index(n))) if found else None


def recency_weights(times, cut, half_life_days):
    """``0.5 ** (age / half_life)`` per row, age = ``cut - times`` (epoch seconds)."""
    age = np.maximum(cut - np.asarray(times, dtype=np.float64), 0.0)
    return np.power(0.5, age / (float(half_life_days) * DAY))


def query_weighted_counts(queries, positions, weights):
    """``{raw query id: {position: summed weight}}``, positions outside the catalog left out."""
    out = {}
    for query, position, weight in zip(np.asarray(queries).tolist(),
                                       np.asarray(positions).tolist(),
                                       np.asarray(weights).tolist()):
        if position >= 0:
            found = out.setdefault(query, {})
            found[position] = found.get(position, 0.0) + weight
    return out
