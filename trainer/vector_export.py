"""The serving model split for Vertex AI Vector Search: the catalog's vectors, the query tower.

Beside the serving SavedModel's signatures, the Trainer writes, inside the serving model
folder (so the Pusher pushes them with it):

  ``vector_search/embeddings-NNNNN.json``: the batch root of a Vector Search index, JSON
  lines, one per catalog candidate: ``{"id": raw id exactly as written, "embedding":
  [d floats], "restricts": [{"namespace": feature name, "allow": [values]}]}``. The
  embedding is the candidate's row of the model's ``candidate_embeddings`` (its scoring
  vector, ``[d]``, with the learned bias as the last component under
  ``model.candidate_bias``); its dot product with the query tower's output is the served
  score, so the index uses ``DOT_PRODUCT_DISTANCE``. Restricts come from the candidate
  tower's ``categorical`` and ``multi_categorical`` features: each candidate's values in the
  feature's vocabulary (values the vocabulary left out, e.g. past ``max_vocab_size`` or
  unseen in the analysed split, are out-of-vocabulary and not listed).
  ``query_tower/``: a SavedModel whose ``serving_default`` takes the serving inputs
  (``assets.extra/serving_inputs.json``, the same as the full model's) and returns
  ``embedding`` ``[batch, d]`` only, the query's scoring vector. (TFX's Pusher copies only
  the top ``saved_model.pb`` to the serving folder: there ``query_tower/`` lacks its graph;
  the PushedModel artifact's copy and the Trainer's model are whole.)
  ``assets.extra/vector_search.json``: ``{"dimensions", "count", "files",
  "distance_measure", "namespaces"}`` for creating the index.

This module is copied verbatim into the generated Trainer module.
"""
import json
import os

import numpy as np
import tensorflow as tf

from trainer.export import strip_local_paths
from transform.kinds import feature_input, kind_of
from transform.naming import vocabulary_name

VECTOR_DIR = "vector_search"
QUERY_TOWER_DIR = "query_tower"
MANIFEST_FILE = "vector_search.json"
ROWS_PER_FILE = 100_000  # a batch root holds at most 5,000 files: 500M candidates


def restricts(spec, tft_output, table):
    """``[n]`` lists of ``{'namespace', 'allow'}``, one list per catalog row of ``table``
    (the Trainer's catalog: transformed keys -> ``[n, ...]`` arrays, by position)."""
    n = len(table[next(iter(table))])
    out = [[] for _ in range(n)]
    for feature in spec["candidate_tower"]["features"]:
        if not kind_of(feature).restricts:
            continue
        vocabulary = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                      for v in tft_output.vocabulary_by_name(vocabulary_name(feature["name"]))]
        indices = np.asarray(table[feature_input(feature, spec["data"])]).reshape(n, -1)
        for row, values in enumerate(indices):
            allow = list(dict.fromkeys(vocabulary[i] for i in values.tolist()
                                       if 0 <= i < len(vocabulary)))
            if allow:
                out[row].append({"namespace": feature["name"], "allow": allow})
    return out


def _write(path, text):
    with tf.io.gfile.GFile(path + ".partial", "w") as handle:
        handle.write(text)
    tf.io.gfile.rename(path + ".partial", path, overwrite=True)


def _number(value):
    """A float32 as JSON that reads back as the same float32 (9 significant digits; a
    decimal point kept, so ``-0.0`` stays negative zero)."""
    text = "%.9g" % value
    return text if ("." in text or "e" in text) else text + ".0"


def write_vectors(folder, ids, embeddings, restricts_per_row=None, rows_per_file=ROWS_PER_FILE):
    """Writes ``folder/embeddings-NNNNN.json`` (JSON lines, see above); returns the file
    names. ``ids``: ``[n]`` raw ids (str); ``embeddings``: ``[n, d]`` float32. Floats are
    written with 9 significant digits: each reads back as the same float32."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if not np.isfinite(embeddings).all():
        row = int(np.flatnonzero(~np.isfinite(embeddings).all(axis=1))[0])
        raise ValueError(f"candidate {ids[row]!r} has a non-finite embedding; Vector Search "
                         "takes finite numbers only (retrain: the model diverged)")
    if len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} ids for {len(embeddings)} embeddings")
    tf.io.gfile.makedirs(folder)
    names = []
    for part, start in enumerate(range(0, len(ids), rows_per_file)):
        lines = []
        for row in range(start, min(start + rows_per_file, len(ids))):
            record = {"id": str(ids[row]), "embedding": "@"}
            if restricts_per_row is not None and restricts_per_row[row]:
                record["restricts"] = restricts_per_row[row]
            vector = "[" + ",".join(map(_number, embeddings[row].tolist())) + "]"
            lines.append(json.dumps(record, ensure_ascii=False).replace('"@"', vector, 1))
        name = f"embeddings-{part:05d}.json"
        _write(os.path.join(folder, name), "\n".join(lines) + "\n")
        names.append(name)
    return names


def read_vectors(folder):
    """``(ids, [n, d] float32 embeddings, restricts)`` from the files of :func:`write_vectors`."""
    ids, vectors, tags = [], [], []
    for name in sorted(tf.io.gfile.listdir(folder)):
        if not name.endswith(".json"):
            continue
        with tf.io.gfile.GFile(os.path.join(folder, name)) as handle:
            for line in handle:
                record = json.loads(line)
                ids.append(record["id"])
                vectors.append(record["embedding"])
                tags.append(record.get("restricts", []))
    return ids, np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1), tags


class QueryTower(tf.Module):
    """The serving model's query side alone: serving inputs -> ``embedding`` ``[batch, d]``."""

    def __init__(self, server):
        super().__init__(name="query_tower_model")
        self.tft_layer = server.tft_layer
        self.query_tower = server.query_tower
        self.embed = server.embed  # traced on the server; captures only the query side

    def save(self, path, described_inputs):
        tf.saved_model.save(self, path,
                            signatures={"serving_default": self.embed.get_concrete_function()})
        strip_local_paths(path)
        extra = os.path.join(path, "assets.extra")
        tf.io.gfile.makedirs(extra)
        _write(os.path.join(extra, "serving_inputs.json"), json.dumps(described_inputs, indent=2))


def export_for_vector_search(spec, tft_output, server, table, serving_dir):
    """Writes the vectors, the query tower and the manifest into ``serving_dir`` (above);
    returns the manifest."""
    ids = [v.decode("utf-8") if isinstance(v, bytes) else str(v)
           for v in server.candidate_ids.numpy().tolist()]
    embeddings = server.candidate_embeddings.numpy()
    names = write_vectors(os.path.join(serving_dir, VECTOR_DIR), ids, embeddings,
                          restricts(spec, tft_output, table))
    QueryTower(server).save(os.path.join(serving_dir, QUERY_TOWER_DIR), server.describe_inputs())
    manifest = {"dimensions": int(embeddings.shape[1]), "count": len(ids), "files": names,
                "distance_measure": "DOT_PRODUCT_DISTANCE",
                "namespaces": [f["name"] for f in spec["candidate_tower"]["features"]
                               if kind_of(f).restricts]}
    extra = os.path.join(serving_dir, "assets.extra")
    tf.io.gfile.makedirs(extra)
    _write(os.path.join(extra, MANIFEST_FILE), json.dumps(manifest, indent=2))
    return manifest
