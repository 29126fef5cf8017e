"""The serving SavedModel: raw query features in, raw candidate ids and scores out.

Signatures:
  ``serving_default`` (exact, or a ScaNN index with ``pipeline.serving_index:
  scann``): one ``[batch]`` tensor per raw query input (the query id
  as ``query_id``, other query-tower columns by feature name, in their raw
  dtypes) -> ``candidate_ids`` ``[batch, k]`` string raw ids, best first, and
  ``scores`` ``[batch, k]`` float32.
  ``query_embedding``: the same inputs -> ``embedding`` ``[batch, dim]``, the
  query's scoring vector: its dot product with a row of the model's
  ``candidate_embeddings`` is that candidate's score (with
  ``model.candidate_bias``, both carry one more component: the temperature
  and the candidate's learned bias).
  ``recommend``: the same inputs plus ``exclude`` ``[batch, n]`` raw candidate
  ids never to return (pad with ``""``; unknown ids are ignored) and ``k``
  (int32 scalar) -> ``candidate_ids`` and ``scores`` ``[batch, k]``; where
  fewer than ``k`` candidates remain, the tail has id ``""`` and score -inf.
  ``buy_again``: the same inputs plus ``had`` ``[batch, n]`` raw ids the query
  already had (pad with ``""``) and ``k`` -> the best ``k`` of them by the
  model's score (``candidate_ids``, ``scores``; ``""`` and -inf where fewer).
  Ids outside the catalog are never returned.
The input names are :mod:`trainer.serving_names`' (``query_id``, ``exclude``, ``had`` and
``k`` are reserved: ``validate`` refuses a query feature that would take one).

``assets.extra/serving_inputs.json`` lists each input's raw column, dtype and
the default the model uses when a request sends ``""`` (strings) or NaN
(floats) for it, i.e. the value is unknown;
``assets.extra/config.json`` is the frozen config the model was trained with.
Candidate ids are the catalog's raw ids, exactly as written (never
vocabulary indices); every catalog candidate is servable, including those
without training interactions, and the embeddings are frozen into the model.

Part of the runtime the generated Trainer module imports.
"""
import json
import os

import tensorflow as tf

from trainer.export import strip_local_paths
from trainer.serving_names import EXCLUDE_INPUT, HAD_INPUT, K_INPUT
from transform.kinds import raw_columns
SERVING_INPUTS_FILE = "serving_inputs.json"
CONFIG_FILE = "config.json"
SCANN_MIN_CANDIDATES = 16  # its asymmetric hashing trains 16 clusters per block


def portable_spec(spec):
    """The config a model carries, without this machine's paths.

    The data files are named by file name only and the pipeline root is left
    out: a model is copied to other machines, and a path says who trained it
    where. (`twotower recommend ROOT` reads the full config from the run.)
    """
    out = json.loads(json.dumps(spec))
    data = out.get("data") or {}
    if data.get("path"):
        data["path"] = os.path.basename(data["path"])
    if data.get("candidates") and data["candidates"].get("path"):
        data["candidates"]["path"] = os.path.basename(data["candidates"]["path"])
    if "pipeline" in out:
        out["pipeline"]["root"] = None
    return out


def input_defaults(spec):
    """``{raw column: default}``: what the Transform uses for a missing query input.

    A request marks a value unknown with ``""`` (strings) or NaN (floats);
    the first query feature declaring a default for the column gives it
    (None: the feature kind's default, ``""`` or 0).
    """
    defaults = {}
    for feature in spec["query_tower"]["features"]:
        for column in raw_columns(feature):
            if defaults.get(column) is None:
                defaults[column] = feature.get("default")
    return defaults


def _raw_tensor(x, feature_spec):
    """Shapes a ``[batch]`` serving input as the Transform's parser would."""
    if isinstance(feature_spec, tf.io.VarLenFeature):
        batch = tf.shape(x, out_type=tf.int64)[0]
        indices = tf.stack([tf.range(batch), tf.zeros([batch], tf.int64)], axis=1)
        return tf.SparseTensor(indices, x, tf.stack([batch, tf.constant(1, tf.int64)]))
    if len(feature_spec.shape) == 1:
        return tf.expand_dims(x, 1)
    return x


def require_scann():
    """Imports and returns scann (registers its TF ops); fails with what to install."""
    try:
        import scann  # optional: only with pipeline.serving_index: scann
    except ImportError as exc:
        raise ImportError("pipeline.serving_index: scann needs the scann package (pip install "
                          "scann==1.3.2) where the model trains and where it is served; or "
                          "use serving_index: exact") from exc
    return scann


def scann_parameters(n, k, num_leaves=None, leaves_to_search=None, reorder=None):
    """``{'num_leaves', 'leaves_to_search', 'reorder'}`` for a ScaNN index over ``n``
    candidates serving ``k``; each None (``pipeline.scann``'s nulls) is filled by the rule
    measured in BENCHMARKS.md ("Catalogs up to a million candidates"): ~sqrt(n) leaves,
    about a third of them searched up to 30, exact re-ranking of the best ``max(4k, 250)``.
    Values are clipped to the catalog (no more leaves than candidates)."""
    leaves = min(n, num_leaves or max(1, int(round(n ** 0.5))))
    searched = min(leaves, leaves_to_search or max(1, min(leaves // 3, 30)))
    ranked = min(n, max(k, reorder or max(4 * k, 250)))
    return {"num_leaves": leaves, "leaves_to_search": searched, "reorder": ranked}


def scann_index(candidate_embeddings, candidate_ids, k, options=None):
    """A TFRS ScaNN layer over ``[n, dim]`` embeddings, with :func:`scann_parameters`
    (``options``: ``pipeline.scann``, its nulls filled by the measured rule)."""
    require_scann()
    import tensorflow_recommenders as tfrs  # TFRS: only when this runs

    options = options or {}
    chosen = scann_parameters(len(candidate_ids), k, options.get("num_leaves"),
                              options.get("leaves_to_search"), options.get("reorder"))
    layer = tfrs.layers.factorized_top_k.ScaNN(
        k=k, num_leaves=chosen["num_leaves"], num_leaves_to_search=chosen["leaves_to_search"],
        num_reordering_candidates=chosen["reorder"])
    return layer.index(tf.constant(candidate_embeddings), tf.constant(candidate_ids))


class RetrievalServer(tf.Module):
    """Wraps the Transform layer, the query tower and the frozen candidate table."""

    def __init__(self, tft_layer, query_tower, raw_feature_spec, inputs, candidate_embeddings,
                 candidate_ids, k, index="exact", defaults=None, query_scale=None, scann=None):
        super().__init__(name="retrieval_server")
        self.tft_layer = tft_layer
        self.query_tower = query_tower
        self.candidate_embeddings = tf.Variable(candidate_embeddings, trainable=False,
                                                name="candidate_embeddings")
        self.candidate_ids = tf.Variable(candidate_ids, trainable=False, name="candidate_ids")
        self.positions = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(candidate_ids), tf.string),
            tf.range(len(candidate_ids), dtype=tf.int64)), default_value=-1)
        if not 1 <= k <= len(candidate_ids):
            raise ValueError(f"serving k {k} must be in 1..{len(candidate_ids)} (the catalog)")
        self.k = k
        self.scann = scann_index(candidate_embeddings, candidate_ids, self.k, scann) if (
            index == "scann") else None
        self.inputs = list(inputs)
        self.defaults = dict(defaults or {})
        # with a candidate bias, a query's scoring vector is [tower output, query_scale]
        self.query_scale = query_scale
        self.raw_specs = {column: raw_feature_spec[column] for _, column in self.inputs}
        signature = [{name: tf.TensorSpec([None], raw_feature_spec[column].dtype, name=name)
                      for name, column in self.inputs}]
        self.recommend = tf.function(self._recommend, input_signature=signature)
        self.embed = tf.function(self._embed, input_signature=signature)
        self.recommend_excluding = tf.function(self._recommend_excluding, input_signature=[
            signature[0], tf.TensorSpec([None, None], tf.string, name=EXCLUDE_INPUT),
            tf.TensorSpec([], tf.int32, name=K_INPUT)])
        self.rank_had = tf.function(self._rank_had, input_signature=[
            signature[0], tf.TensorSpec([None, None], tf.string, name=HAD_INPUT),
            tf.TensorSpec([], tf.int32, name=K_INPUT)])

    def _embed(self, features):
        raw = {column: _raw_tensor(features[name], self.raw_specs[column])
               for name, column in self.inputs}
        embedding = self.query_tower(self.tft_layer(raw), training=False)
        if self.query_scale is not None:
            scale = tf.fill([tf.shape(embedding)[0], 1], tf.constant(self.query_scale, tf.float32))
            embedding = tf.concat([embedding, scale], axis=1)
        return {"embedding": embedding}

    def _recommend(self, features):
        query = self._embed(features)["embedding"]
        if self.scann is not None:
            top_scores, ids = self.scann(query, k=self.k)
            return {"candidate_ids": ids, "scores": top_scores}
        scores = tf.linalg.matmul(query, self.candidate_embeddings, transpose_b=True)
        top_scores, positions = tf.math.top_k(scores, k=self.k)
        return {"candidate_ids": tf.gather(self.candidate_ids, positions), "scores": top_scores}

    def _recommend_excluding(self, features, exclude, k):
        query = self._embed(features)["embedding"]
        scores = tf.linalg.matmul(query, self.candidate_embeddings, transpose_b=True)
        positions = self.positions.lookup(exclude)  # [batch, n], -1 for padding or unknown
        known = positions >= 0
        rows = tf.broadcast_to(tf.range(tf.shape(positions, out_type=tf.int64)[0])[:, None],
                               tf.shape(positions, out_type=tf.int64))
        where = tf.stack([tf.boolean_mask(rows, known), tf.boolean_mask(positions, known)], 1)
        hits = tf.scatter_nd(where, tf.ones([tf.shape(where)[0]]),
                             tf.shape(scores, out_type=tf.int64))
        scores = tf.where(hits > 0, tf.constant(-float("inf")), scores)
        k = tf.minimum(k, tf.shape(scores)[1])
        top_scores, top = tf.math.top_k(scores, k=k)
        ids = tf.gather(self.candidate_ids, top)
        return {"candidate_ids": tf.where(tf.math.is_inf(top_scores), "", ids),
                "scores": top_scores}

    def _rank_had(self, features, had, k):
        query = self._embed(features)["embedding"]  # [batch, d]
        positions = self.positions.lookup(had)  # [batch, n], -1 for padding or unknown
        vectors = tf.gather(self.candidate_embeddings, tf.maximum(positions, 0))  # [b, n, d]
        scores = tf.reduce_sum(vectors * query[:, tf.newaxis, :], axis=2)
        scores = tf.where(positions >= 0, scores, tf.constant(-float("inf")))
        k = tf.minimum(k, tf.shape(scores)[1])
        top_scores, top = tf.math.top_k(scores, k=k)
        ids = tf.gather(had, top, batch_dims=1)
        return {"candidate_ids": tf.where(tf.math.is_inf(top_scores), "", ids),
                "scores": top_scores}

    def describe_inputs(self):
        """``[{'input', 'column', 'dtype', 'default'}]``: what each signature input carries.

        ``default`` is what the model uses where the input is ``""`` or NaN
        (None: the kind's default, ``""`` or 0).
        """
        return [{"input": name, "column": column, "dtype": self.raw_specs[column].dtype.name,
                 "default": self.defaults.get(column)} for name, column in self.inputs]

    def save(self, path, spec=None):
        """Saves the SavedModel, ``assets.extra/serving_inputs.json`` and the config."""
        tf.saved_model.save(self, path, signatures={
            "serving_default": self.recommend.get_concrete_function(),
            "query_embedding": self.embed.get_concrete_function(),
            "recommend": self.recommend_excluding.get_concrete_function(),
            "buy_again": self.rank_had.get_concrete_function()})
        strip_local_paths(path)  # Transform's table names hold the pipeline folder
        extra = os.path.join(path, "assets.extra")
        tf.io.gfile.makedirs(extra)
        with tf.io.gfile.GFile(os.path.join(extra, SERVING_INPUTS_FILE), "w") as handle:
            handle.write(json.dumps(self.describe_inputs(), indent=2))
        if spec is not None:
            with tf.io.gfile.GFile(os.path.join(extra, CONFIG_FILE), "w") as handle:
                handle.write(json.dumps(portable_spec(spec), indent=2, sort_keys=True))
