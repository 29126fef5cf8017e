"""Evaluating a held-out split the way serving would have met it.

Each held-out query is embedded from its *snapshot*: the ``<split>_queries``
row the data preparation wrote, i.e. its query-tower columns and histories
as they stood before its first held-out interaction. Held-out interactions
therefore never reach a model input of what is scored. It is ranked against
the whole catalog, without the candidates it already had, and popularity is
ranked on the same queries, so every figure has its baseline beside it.

Part of the runtime the generated Trainer module imports.
"""
import numpy as np
import tensorflow as tf

from transform.naming import CANDIDATE_POSITION, QUERY_ID, TIMESTAMP
from trainer.baselines import (Baselines, best_of, query_weighted_counts, recency_weights,
                               DEFAULTS as BASELINE_DEFAULTS)
from trainer.data import query_groups
from trainer.evaluation import (buy_again_metrics, coverage, evaluate_full_catalog,
                                evaluation_queries, rank_within)

METRIC_PREFIX = "full_catalog/"  # per-epoch logs: val_full_catalog/recall_at_10, ...


class HeldOutSet:
    """One held-out split, ready to score.

    Args:
      name: the split ('eval' or 'test').
      snapshots: the transformed ``<name>_queries`` rows, ``{key: [rows, ...]}``.
      query_keys: the transformed keys the query tower reads.
      held_queries, held_positions: per held-out interaction, the raw query id
        and the candidate's catalog position (-1 outside the catalog).
      seen_groups: ``{raw query id: positions it had before}``.
      seen_counts: ``{raw query id: (positions, rows of each)}`` before the
        cut, for the "buy again" evaluation (optional).
      seen_rows: the rows before the split (``load_pairs`` output, with TIMESTAMP
        when the data has one): the baselines of :mod:`trainer.baselines` are
        fitted on them, once, at the first evaluation that asks for them.
      num_candidates: the catalog's size (with ``seen_rows``).
      baselines: ``pipeline.baselines`` settings.
      held_times: ``[held-out rows]`` epoch seconds, for the split's period.

    Besides discovery (new candidates over the whole catalog), it evaluates
    "buy again": a query's held-out candidates that it already had, ranked
    among everything it had, by the model and by three baselines: how often the
    query had each (``frequency``), the same counts weighted by recency
    (``recency``, with a timestamp) and global ``popularity``.
    """

    def __init__(self, name, snapshots, query_keys, held_queries, held_positions, seen_groups,
                 seen_counts=None, seen_rows=None, num_candidates=None, baselines=None,
                 held_times=None):
        self.name = name
        self.seen_rows, self.num_candidates = seen_rows, num_candidates
        self.settings = dict(BASELINE_DEFAULTS, **(baselines or {}))
        self._baselines = None
        self.period = {}
        if held_times is not None and len(held_times) and (np.asarray(held_times) >= 0).any():
            valid = np.asarray(held_times)[np.asarray(held_times) >= 0]
            self.period = {"first": int(valid.min()), "last": int(valid.max())}
        seen_times = (seen_rows or {}).get(TIMESTAMP)
        recency = None
        if seen_times is not None and len(seen_times) and (seen_times >= 0).any():
            weights = recency_weights(seen_times, int(seen_times.max()),
                                      self.settings["recency_half_life_days"])
            recency = query_weighted_counts(seen_rows[QUERY_ID],
                                            seen_rows[CANDIDATE_POSITION], weights)
        held_groups = query_groups(held_queries, held_positions)
        snapshot_ids = snapshots[QUERY_ID].tolist()
        self.queries, self.truth, self.exclude, self.counts = evaluation_queries(
            seen_groups, held_groups, snapshot_ids)
        self.counts["truth_outside_catalog"] = int((np.asarray(held_positions) < 0).sum())
        where = {query: row for row, query in enumerate(snapshot_ids)}
        rows = np.asarray([where[q] for q in self.queries], dtype=np.int64)
        self.inputs = {key: snapshots[key][rows] for key in query_keys}
        self.again = {"queries": [], "truth": [], "candidates": [], "frequency": [],
                      "recency": [] if recency is not None else None}
        for query in sorted(held_groups):
            had = (seen_counts or {}).get(query)
            if query not in where or had is None:
                continue
            relevant = np.intersect1d(held_groups[query], had[0])
            if len(relevant):
                for key, value in (("queries", query), ("truth", relevant),
                                   ("candidates", had[0]), ("frequency", had[1])):
                    self.again[key].append(value)
                if recency is not None:
                    weighted = recency.get(query, {})
                    self.again["recency"].append(np.asarray([weighted.get(int(p), 0.0)
                                                             for p in had[0]]))
        rows = np.asarray([where[q] for q in self.again["queries"]], dtype=np.int64)
        self.again_inputs = {key: snapshots[key][rows] for key in query_keys}

    def baselines(self):
        """The fitted :class:`trainer.baselines.Baselines` (None without ``seen_rows``)."""
        if self._baselines is None and self.seen_rows is not None:
            self._baselines = Baselines(self.seen_rows[QUERY_ID],
                                        self.seen_rows[CANDIDATE_POSITION],
                                        self.seen_rows.get(TIMESTAMP), self.num_candidates,
                                        self.settings)
        return self._baselines

    def evaluate(self, embed_queries, candidate_vectors, counts, ks, with_popularity=True,
                 with_baselines=False):
        """Full-catalog metrics: ``{'split', 'queries', 'model', 'popularity', counts...}``.

        ``with_baselines`` (the final evaluation) adds ``'baselines'`` (each
        baseline's metrics on the same queries, ``'best'`` the strongest at the
        first cut-off's recall, ``'about'`` what they were fitted on),
        ``'coverage'`` of the model's top-k lists and the split's ``'period'``.

        Args:
          embed_queries: maps a dict of query-tower inputs to ``[rows, d]`` numpy
            scoring vectors (``TwoTowerModel.embed_queries``).
          candidate_vectors: ``[num_candidates, d]`` by catalog position; a
            query's score for a candidate is the dot product.

        Raises:
          ValueError: no query can be evaluated (each is cold or had nothing new).
        """
        if not self.queries:
            raise ValueError(
                f"no {self.name} query can be evaluated: of {self.counts['held_out_queries']} "
                f"held-out queries, {self.counts['cold_queries']} have no earlier interaction "
                f"and {self.counts['queries_without_new_items']} only repeat what they had; "
                "use a larger data.split.eval_fraction or a user_time split")
        if with_baselines and self.baselines() is not None:
            counts = self.baselines().counts  # popularity as of the split: every seen row
        result = evaluate_full_catalog(embed_queries(self.inputs), candidate_vectors, counts,
                                       self.truth,
                                       self.exclude, ks, with_popularity=with_popularity)
        result.update(split=self.name, **self.counts)
        if with_baselines and self.baselines() is not None:
            found = self.baselines().evaluate(self.truth, self.exclude, ks)
            about = found.pop("about")
            found["popularity"] = result.get("popularity", found["popularity"])
            result["baselines"] = found
            result["best_baseline"] = best_of(found, f"recall_at_{ks[0]}")
            result["baselines_about"] = about
            result["coverage"] = coverage(result.pop("model_top"), ks[0], counts)
        result.pop("model_top", None)
        if self.period:
            result["period"] = dict(self.period)
        if with_popularity and self.again["queries"]:
            result["buy_again"] = self.buy_again(embed_queries, candidate_vectors, counts, ks)
        return result

    def buy_again(self, embed_queries, candidate_vectors, counts, ks):
        """Recall of re-bought candidates among what each query had: model vs baselines."""
        queries = embed_queries(self.again_inputs)
        candidates = self.again["candidates"]
        model = [candidate_vectors[c] @ q for c, q in zip(candidates, queries)]
        rankings = {"model": rank_within(candidates, model, max(ks)),
                    "frequency": rank_within(candidates, self.again["frequency"], max(ks)),
                    "popularity": rank_within(candidates, [counts[c] for c in candidates],
                                              max(ks))}
        if self.again["recency"] is not None:
            rankings["recency"] = rank_within(candidates, self.again["recency"], max(ks))
        return buy_again_metrics(candidates, rankings, self.again["truth"], ks)


class HeldOutMetrics(tf.keras.callbacks.Callback):
    """After each epoch, the eval split's full-catalog metrics, into the epoch's logs.

    They are added as ``val_full_catalog/<metric>`` (e.g.
    ``val_full_catalog/recall_at_10``), so callbacks after this one in the
    list (the metrics recorder, early stopping) read them like Keras's own.
    """

    def __init__(self, held_out, scorer, catalog, counts, ks):
        super().__init__()
        self.held_out, self.counts, self.ks = held_out, counts, ks
        self.scorer, self.catalog = scorer, catalog  # a TwoTowerModel, its catalog table

    popularity = None  # popularity's metrics on the same queries: computed once

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.held_out.queries:
            return
        result = self.held_out.evaluate(self.scorer.embed_queries,
                                        self.scorer.catalog_vectors(self.catalog), self.counts,
                                        self.ks, with_popularity=self.popularity is None)
        if self.popularity is None:
            self.popularity = dict(result["popularity"])
        for name, value in result["model"].items():
            logs[f"val_{METRIC_PREFIX}{name}"] = value
        for name, value in self.popularity.items():  # beside the model's, in every epoch
            logs[f"val_{METRIC_PREFIX}popularity_{name}"] = value
