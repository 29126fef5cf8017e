"""Evaluating a held-out split the way serving would have met it.

Each held-out query is embedded from its *snapshot*: the ``<split>_queries``
row the data preparation wrote, i.e. its query-tower columns and histories
as they stood before its first held-out interaction. Held-out interactions
therefore never reach a model input of what is scored. It is ranked against
the whole catalog, without the candidates it already had, and popularity is
ranked on the same queries, so every figure has its baseline beside it.

This module is copied verbatim into the generated Trainer module.
"""
import numpy as np
import tensorflow as tf

from transform.naming import QUERY_ID
from trainer.data import query_groups
from trainer.evaluation import evaluate_full_catalog, evaluation_queries

METRIC_PREFIX = "full_catalog/"  # per-epoch logs: val_full_catalog/recall_at_10, ...


def embed_table(tower, table, batch_size=4096):
    """Runs ``tower`` over a dict of arrays, ``[rows, dim]`` float32 numpy."""
    rows = len(next(iter(table.values())))
    if rows == 0:
        return np.zeros((0, tower.output_layer.units), np.float32)
    parts = [tower({k: v[i:i + batch_size] for k, v in table.items()}, training=False).numpy()
             for i in range(0, rows, batch_size)]
    return np.concatenate(parts, axis=0)


class HeldOutSet:
    """One held-out split, ready to score.

    Args:
      name: the split ('eval' or 'test').
      snapshots: the transformed ``<name>_queries`` rows, ``{key: [rows, ...]}``.
      query_keys: the transformed keys the query tower reads.
      held_queries, held_positions: per held-out interaction, the raw query id
        and the candidate's catalog position (-1 outside the catalog).
      seen_groups: ``{raw query id: positions it had before}``.
    """

    def __init__(self, name, snapshots, query_keys, held_queries, held_positions, seen_groups):
        self.name = name
        held_groups = query_groups(held_queries, held_positions)
        snapshot_ids = snapshots[QUERY_ID].tolist()
        self.queries, self.truth, self.exclude, self.counts = evaluation_queries(
            seen_groups, held_groups, snapshot_ids)
        self.counts["truth_outside_catalog"] = int((np.asarray(held_positions) < 0).sum())
        where = {query: row for row, query in enumerate(snapshot_ids)}
        rows = np.asarray([where[q] for q in self.queries], dtype=np.int64)
        self.inputs = {key: snapshots[key][rows] for key in query_keys}

    def evaluate(self, query_tower, candidate_embeddings, counts, ks, with_popularity=True):
        """Full-catalog metrics: ``{'split', 'queries', 'model', 'popularity', counts...}``.

        Raises:
          ValueError: no query can be evaluated (each is cold or had nothing new).
        """
        if not self.queries:
            raise ValueError(
                f"no {self.name} query can be evaluated: of {self.counts['held_out_queries']} "
                f"held-out queries, {self.counts['cold_queries']} have no earlier interaction "
                f"and {self.counts['queries_without_new_items']} only repeat what they had; "
                "use a larger data.split.eval_fraction or a user_time split")
        embeddings = embed_table(query_tower, self.inputs)
        result = evaluate_full_catalog(embeddings, candidate_embeddings, counts, self.truth,
                                       self.exclude, ks, with_popularity=with_popularity)
        result.update(split=self.name, **self.counts)
        return result


class HeldOutMetrics(tf.keras.callbacks.Callback):
    """After each epoch, the eval split's full-catalog metrics, into the epoch's logs.

    They are added as ``val_full_catalog/<metric>`` (e.g.
    ``val_full_catalog/recall_at_10``), so callbacks after this one in the
    list (the metrics recorder, early stopping) read them like Keras's own.
    """

    def __init__(self, held_out, query_tower, candidate_tower, catalog, counts, ks):
        super().__init__()
        self.held_out, self.counts, self.ks = held_out, counts, ks
        self.query_tower, self.candidate_tower, self.catalog = (query_tower, candidate_tower,
                                                                catalog)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.held_out.queries:
            return
        candidates = embed_table(self.candidate_tower, self.catalog)
        result = self.held_out.evaluate(self.query_tower, candidates, self.counts, self.ks,
                                        with_popularity=False)
        for name, value in result["model"].items():
            logs[f"val_{METRIC_PREFIX}{name}"] = value
