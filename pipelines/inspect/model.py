"""The trained towers, rebuilt from the frozen config and the run's checkpoint.

:func:`towers` builds both towers exactly as the Trainer did (the same
``trainer.towers`` code, the run's vocabulary sizes) and restores the weights
the Trainer saved (``<model_run>/towers/``). From them: parameter counts per
tower and per feature, the embeddings of the catalog and of the held-out
queries, their norms, a candidate's nearest neighbours, and a query's top-k
beside what it actually had.

Scores are the Trainer's: the dot product of the (normalised) embeddings
divided by the temperature, plus the candidate's learned bias and demand prior
(as of the end of the train split) when the model has them.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np

from transform.naming import (CANDIDATE_ID, CANDIDATE_POSITION, CATALOG_SPLIT, EVAL_SPLIT,
                              QUERY_ID, TIMESTAMP, queries_split)


class Towers:
    """Both trained towers of a run, and the catalog and held-out queries they embed."""

    def __init__(self, run: dict):
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf  # TensorFlow: only when this runs
        import tensorflow_transform as tft  # TF Transform: only when this runs

        from trainer.data import load_arrays  # TensorFlow: only when this runs
        from trainer.towers import build_towers  # TensorFlow: only when this runs

        if not run.get("towers"):
            raise FileNotFoundError(f"{run['root']}: the Trainer saved no towers (it did not "
                                    "finish training, or ran before towers were saved)")
        self.run, self.spec = run, run["spec"]
        self.output = tft.TFTransformOutput(run["transform_graph"])
        feature_spec = self.output.transformed_feature_spec()
        self.query, self.candidate = build_towers(self.spec,
                                                  self.output.vocabulary_size_by_name)
        self.catalog = load_arrays([os.path.join(run["examples"][CATALOG_SPLIT], "*")],
                                   feature_spec)
        self.catalog[CANDIDATE_POSITION] = np.arange(len(self.catalog[CANDIDATE_ID]))
        self.query(self.catalog_rows(1), training=False)  # create the variables
        self.candidate(self.catalog_rows(1), training=False)
        bias = (tf.Variable(tf.zeros(len(self.catalog[CANDIDATE_ID])), name="candidate_bias")
                if self.spec["model"]["candidate_bias"] else None)
        prior = self._prior(feature_spec) if self.spec["model"].get("demand_prior") else None
        parts = {"query_tower": self.query, "candidate_tower": self.candidate}
        if bias is not None:
            parts["candidate_bias"] = bias
        if prior is not None:
            parts["demand_prior"] = prior.weights
        tf.train.Checkpoint(**parts).read(run["towers"]).assert_existing_objects_matched()
        # the score's offset per candidate: the learned bias plus the demand prior as of the
        # end of the train split (what the eval split was scored with); None without either
        self.bias = None
        if bias is not None or prior is not None:
            self.bias = np.zeros(len(self.catalog[CANDIDATE_ID]), np.float32)
            self.bias += bias.numpy() if bias is not None else 0.0
            self.bias += prior.static().numpy() if prior is not None else 0.0
        self.candidate_ids = [v.decode("utf-8") for v in self.catalog[CANDIDATE_ID]]
        self._feature_spec = feature_spec
        self._candidates = None

    def _prior(self, feature_spec):
        """The demand prior over the train split's rows (its weights: the checkpoint's)."""
        from trainer.data import load_pairs  # TensorFlow: only when this runs
        from trainer.prior import DemandPrior  # TensorFlow: only when this runs

        options = self.spec["model"]["demand_prior"]
        rows = load_pairs([os.path.join(self.run["examples"]["train"], "*")], feature_spec,
                          self.catalog[CANDIDATE_ID], with_time=True)
        return DemandPrior(rows[CANDIDATE_POSITION], rows[TIMESTAMP],
                           len(self.catalog[CANDIDATE_ID]), options["windows"],
                           options["all_time"], options["smoothing"])

    def catalog_rows(self, n: Optional[int] = None) -> Dict[str, np.ndarray]:
        return {k: v[:n] for k, v in self.catalog.items()}

    def parameters(self) -> Dict[str, Dict[str, int]]:
        """Per tower: ``total``, ``dense`` (hidden and output layers) and each feature's
        embedding table (a table both towers share counts in both)."""
        out = {}
        for name, tower in (("query_tower", self.query), ("candidate_tower", self.candidate)):
            features = {}
            for info, embedding in zip(tower.inputs_info, tower.embeddings):
                features[info["name"]] = (int(np.prod(embedding.embeddings.shape))
                                           if embedding is not None else 0)
            dense = sum(int(np.prod(w.shape)) for layer in tower.hidden + [tower.output_layer]
                        for w in layer.weights)
            out[name] = {"total": int(sum(int(np.prod(w.shape)) for w in tower.weights)),
                         "dense": dense, "features": features}
        return out

    def embed(self, tower, table, normalised: bool = True) -> np.ndarray:
        """``[rows, dim]`` embeddings (``normalised=False``: before the L2 normalisation)."""
        from trainer.towers import embed_table  # TensorFlow: only when this runs

        keep = tower.l2_normalize
        tower.l2_normalize = keep and normalised
        try:
            return embed_table(tower, {k: v for k, v in table.items()
                                       if k != CANDIDATE_POSITION})
        finally:
            tower.l2_normalize = keep

    def candidate_vectors(self) -> np.ndarray:
        if self._candidates is None:
            self._candidates = self.embed(self.candidate, self.catalog)
        return self._candidates

    def held_out_queries(self, split: str = EVAL_SPLIT) -> Dict[str, np.ndarray]:
        """The transformed rows of the split's query snapshots (what evaluation embeds)."""
        from trainer.data import load_arrays  # TensorFlow: only when this runs

        return load_arrays([os.path.join(self.run["examples"][queries_split(split)], "*")],
                           self._feature_spec)

    def norms(self, split: str = EVAL_SPLIT) -> Dict[str, np.ndarray]:
        """Embedding norms before the L2 normalisation: ``{'query', 'candidate'}``."""
        queries = self.held_out_queries(split)
        return {"query": np.linalg.norm(self.embed(self.query, queries, False), axis=1),
                "candidate": np.linalg.norm(self.embed(self.candidate, self.catalog, False),
                                            axis=1)}

    def scores(self, query_vectors: np.ndarray) -> np.ndarray:
        """``[queries, catalog]`` scores as the Trainer ranks them."""
        temperature = self.spec["model"]["temperature"] or 1.0
        out = query_vectors @ self.candidate_vectors().T / temperature
        return out + self.bias[np.newaxis, :] if self.bias is not None else out

    def evaluate(self, ks=None) -> Dict[str, object]:
        """The eval split's full-catalog evaluation, recomputed with these towers by the
        Trainer's own code (``trainer.held_out``): equal to the run's record when the towers
        are the ones that ran."""
        # TensorFlow: only when this runs
        from trainer.inputs import held_out_set, load_inputs, split_files

        examples = self.run["examples"]
        files = split_files(self.spec, [os.path.join(examples["train"], "*")],
                            [os.path.join(examples[EVAL_SPLIT], "*")])
        inputs = load_inputs(self.spec, self.output, files)
        held, _ = held_out_set(self.spec, EVAL_SPLIT, files, inputs["feature_spec"],
                               inputs["catalog"][CANDIDATE_ID], inputs["train"])
        vectors = self.candidate_vectors()
        if self.bias is not None:  # the Trainer scores [q * T, 1] . [c, b] / T
            vectors = np.concatenate([vectors, self.bias[:, np.newaxis]], axis=1)

        def embed(table):
            q = self.embed(self.query, table)
            if self.bias is None:
                return q
            scale = self.spec["model"]["temperature"] or 1.0
            return np.concatenate([q, np.full((len(q), 1), scale, q.dtype)], axis=1)

        return held.evaluate(embed, vectors, inputs["counts"],
                             list(ks or self.spec["model"]["top_k"]))

    def nearest(self, candidate_id: str, k: int = 10) -> List[Dict[str, object]]:
        """The ``k`` catalog candidates closest to ``candidate_id`` (cosine), itself excluded."""
        if candidate_id not in self.candidate_ids:
            raise KeyError(f"{candidate_id!r} is not in the catalog "
                           f"({len(self.candidate_ids)} candidates)")
        vectors = self.candidate_vectors()
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        me = self.candidate_ids.index(candidate_id)
        similarity = unit @ unit[me]
        similarity[me] = -np.inf
        order = np.argsort(-similarity, kind="stable")[:k]
        return [{"rank": r + 1, "candidate": self.candidate_ids[i],
                 "cosine": float(similarity[i])} for r, i in enumerate(order)]

    def query_top_k(self, query_id: str, k: int = 10,
                    split: str = EVAL_SPLIT) -> Dict[str, object]:
        """A held-out query's top ``k`` (without what it already had, as evaluation ranks)
        beside the candidates it actually had in ``split``."""
        import pyarrow.parquet as pq  # pyarrow: only when this runs

        queries = self.held_out_queries(split)
        ids = [v.decode("utf-8") for v in queries[QUERY_ID]]
        if query_id not in ids:
            raise KeyError(f"{query_id!r} is not a {split} query with earlier interactions "
                           f"({len(ids)} are)")
        row = {key: value[ids.index(query_id):ids.index(query_id) + 1]
               for key, value in queries.items()}
        score = self.scores(self.embed(self.query, row))[0]
        input_dir = os.path.join(self.run["root"], "input")
        truth = _items_of(os.path.join(input_dir, split), self.spec, query_id, pq)
        earlier = {"eval": ["train"], "test": ["train", "eval"]}.get(split, [])
        had = set().union(set(), *[_items_of(os.path.join(input_dir, s), self.spec, query_id, pq)
                                   for s in earlier])
        order = [i for i in np.argsort(-score, kind="stable")
                 if self.candidate_ids[i] not in had][:k]
        return {"query": query_id, "split": split, "held_out": sorted(truth),
                "already_had": len(had), "had": sorted(had),
                "top": [{"rank": r + 1, "candidate": self.candidate_ids[i],
                         "score": float(score[i]), "hit": self.candidate_ids[i] in truth}
                        for r, i in enumerate(order)]}


def _items_of(split_dir: str, spec: dict, query_id: str, pq) -> set:
    if not os.path.isdir(split_dir):
        return set()
    d = spec["data"]
    table = pq.read_table(split_dir, columns=[d["query_id"], d["candidate_id"]]).to_pydict()
    return {c for q, c in zip(table[d["query_id"]], table[d["candidate_id"]]) if q == query_id}
