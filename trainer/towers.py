"""One tower of the two-tower model: feature embeddings, a dense stack, an output.

Part of the runtime the generated Trainer module imports.
"""
import numpy as np
import tensorflow as tf

from transform.kinds import (dense_width, feature_input, feature_vocabulary, kind_of,
                             uses_embedding)
from transform.kinds.history import ATTENTION_HEADS, attention_key_dim
from transform.naming import CANDIDATE_KEY, CANDIDATE_VOCAB

SHARED_CANDIDATE_EMBEDDING = "candidate_id"


def tower_inputs(spec, tower):
    """Describes what ``tower`` reads, one dict per feature.

    Each has ``name``, ``key`` (transformed key), ``vocabulary`` (file name or
    None), ``embedded``, ``multi`` (a padded ``[batch, L]`` input to pool),
    ``shared`` (uses the candidate-id embedding shared by both towers) and
    ``embedding_dim``.
    """
    data, default_dim = spec["data"], spec["model"]["embedding_dim"]
    described = []
    for feature in spec[tower]["features"]:
        key, kind = feature_input(feature, data), kind_of(feature)
        described.append({
            "name": feature["name"],
            "key": key,
            "vocabulary": feature_vocabulary(feature, data),
            "embedded": uses_embedding(feature),
            "width": dense_width(feature),
            "rows": kind.table_rows(feature),
            "oov_buckets": feature["oov_buckets"] if kind.vocabulary == "own" else 1,
            "multi": kind.sequence,
            "shared": kind.vocabulary == "candidate" or key == CANDIDATE_KEY,
            "embedding_dim": feature["embedding_dim"] or default_dim,
            "pooling": kind.pooling(feature),
            "max_length": feature.get("max_length"),
        })
    return described


def embedding_rows(info, vocabulary_size):
    """Rows of a feature's embedding table: vocabulary + OOV buckets, buckets + 1, or hashes."""
    if info["shared"]:
        return vocabulary_size(CANDIDATE_VOCAB) + 1
    if info["vocabulary"] is not None:
        return vocabulary_size(info["vocabulary"]) + info["oov_buckets"]
    return info["rows"]


def oov_rows(info, rows):
    """``(first OOV row, number of OOV rows)`` of a vocabulary feature's table, or None.

    Vocabulary tables end with their OOV buckets (the shared candidate-id table
    with one); hashed crosses and numeric buckets have none.
    """
    if info["shared"]:
        return rows - 1, 1
    if info["vocabulary"] is not None:
        return rows - info["oov_buckets"], info["oov_buckets"]
    return None


def drop_to_oov(indices, first, count, rate):
    """Replaces a ``rate`` share of real indices (>= 0) by a random OOV row in training.

    This is what trains the OOV rows: without it they keep their random
    initial values, and every cold query, new candidate or unseen value at
    serving time would embed as noise.
    """
    drop = tf.random.uniform(tf.shape(indices)) < rate
    replacement = first if count == 1 else first + tf.random.uniform(
        tf.shape(indices), 0, count, dtype=indices.dtype)
    return tf.where(drop & (indices >= 0), tf.cast(replacement, indices.dtype), indices)


def pool(embedding, x, logits=None):
    """The weighted mean of a multi-valued input's real values, ``[batch, dim]``.

    ``x``: ``[batch, L]`` indices, padded with -1; ``logits``: ``[L]`` (recency
    pooling: weight ``exp(logit)`` by position, newest first) or None (each
    real value weighs 1). An all-padding row pools to zeros.

    Only the real values are looked up (``[nnz, dim]``, not ``[batch, L, dim]``),
    so the lookup, its gradient and the optimizer's sparse update grow with the
    values a batch holds, not with ``L`` (Ta-Feng's 50-long histories are 29%
    filled; BENCHMARKS.md, "The Trainer against the machine").
    """
    where = tf.where(x >= 0)  # [nnz, 2]: (row, position)
    rows = where[:, 0]
    weights = tf.ones(tf.shape(rows), tf.float32)
    if logits is not None:  # learned weights by position, newest first
        weights = tf.gather(tf.exp(logits - tf.reduce_max(logits)), where[:, 1])
    vectors = embedding(tf.gather_nd(x, where)) * weights[:, tf.newaxis]  # [nnz, dim]
    batch = tf.shape(x, out_type=tf.int64)[0]
    total = tf.math.unsorted_segment_sum(weights, rows, batch)[:, tf.newaxis]
    return tf.math.divide_no_nan(tf.math.unsorted_segment_sum(vectors, rows, batch), total)


def embed_table(tower, table, batch_size=4096):
    """Runs ``tower`` over a dict of arrays, ``[rows, dim]`` float32 numpy."""
    rows = len(next(iter(table.values())))
    parts = [tower({k: v[i:i + batch_size] for k, v in table.items()}, training=False).numpy()
             for i in range(0, rows, batch_size)]
    return np.concatenate(parts, axis=0)


class HistoryAttention(tf.keras.layers.Layer):
    """One self-attention block over a history: ``[batch, L, d]`` -> ``[batch, d]``.

    Each item's embedding plus a learned embedding of its position (newest
    first) attends to the real items of its row (two heads, a padding mask),
    with a residual connection and layer normalisation; the result is the
    mean over the real positions (an all-padding row pools to zeros).
    """

    def __init__(self, dim, max_length, name="history_attention"):
        super().__init__(name=name)
        self.positions = tf.keras.layers.Embedding(max_length, dim, name=f"{name}_positions")
        self.attention = tf.keras.layers.MultiHeadAttention(
            num_heads=ATTENTION_HEADS, key_dim=attention_key_dim(dim), name=f"{name}_heads")
        self.norm = tf.keras.layers.LayerNormalization(name=f"{name}_norm")

    def call(self, vectors, mask, training=False):
        """``vectors`` ``[batch, L, d]``; ``mask`` ``[batch, L]`` float, 1 for real items."""
        length = tf.shape(vectors)[1]
        x = vectors + self.positions(tf.range(length))[tf.newaxis, :, :]
        pairs = tf.cast(mask[:, :, tf.newaxis] * mask[:, tf.newaxis, :], tf.bool)
        x = self.norm(x + self.attention(x, x, attention_mask=pairs, training=training))
        weights = mask[:, :, tf.newaxis]
        return tf.math.divide_no_nan(tf.reduce_sum(x * weights, axis=1),
                                     tf.reduce_sum(weights, axis=1))


class Tower(tf.keras.Model):
    """Maps transformed features to an embedding ``[batch, output_dim]``.

    Id and categorical inputs (``[batch]`` int64) are embedded; multi-valued
    inputs (``[batch, L]``, padded with -1) are embedded and mean-pooled over
    their real values (an all-padding row pools to zeros), or, for a history
    with ``pooling: recency``, averaged with a learned weight per position
    (newest first; the weights start equal), or with ``pooling: attention``
    passed through a :class:`HistoryAttention` block first; numeric inputs
    (``[batch]`` float32) enter as they are. The concatenation goes through
    ``layers`` dense layers with dropout, then a linear output layer, then
    optional L2 normalisation. In training, ``oov_dropout`` of every
    vocabulary input's values go to the OOV rows (:func:`drop_to_oov`).
    """

    def __init__(self, inputs_info, rows, layers, output_dim, activation="relu", dropout=0.0,
                 l2_normalize=True, norm="none", l2=0.0, shared=None, name="tower",
                 oov_dropout=0.0):
        super().__init__(name=name)
        self.inputs_info = list(inputs_info)
        self.oov_dropout = oov_dropout
        self.oov = [oov_rows(i, rows[i["name"]]) if i["embedded"] else None
                    for i in self.inputs_info]
        # one logit per history position (softmax over the real positions = the weights)
        self.position_logits = [
            self.add_weight(name=f"{i['name']}_position_logits", shape=(i["max_length"],),
                            initializer="zeros") if i["pooling"] == "recency" else None
            for i in self.inputs_info]
        self.attention = [
            HistoryAttention(info["embedding_dim"], info["max_length"],
                             name=f"{info['name']}_attention")
            if info["pooling"] == "attention" else None for info in self.inputs_info]
        self.embeddings = []
        for info in self.inputs_info:
            if not info["embedded"]:
                self.embeddings.append(None)
            elif info["shared"]:
                self.embeddings.append(shared[SHARED_CANDIDATE_EMBEDDING])
            else:
                self.embeddings.append(tf.keras.layers.Embedding(
                    rows[info["name"]], info["embedding_dim"], name=f"{info['name']}_embedding"))
        regularizer = tf.keras.regularizers.l2(l2) if l2 else None
        self.hidden = [tf.keras.layers.Dense(width, activation=activation, name=f"dense_{i}",
                                             kernel_regularizer=regularizer)
                       for i, width in enumerate(layers)]
        norms = {"batch": tf.keras.layers.BatchNormalization,
                 "layer": tf.keras.layers.LayerNormalization}
        self.norms = [norms[norm]() for _ in layers] if norm != "none" else []
        self.dropouts = [tf.keras.layers.Dropout(dropout) for _ in layers] if dropout else []
        self.output_layer = tf.keras.layers.Dense(output_dim, name="output",
                                                  kernel_regularizer=regularizer)
        self.l2_normalize = l2_normalize

    def encode_inputs(self, features, training=False):
        """The concatenated input vector ``[batch, input_width]``."""
        parts = []
        for info, embedding, oov, logits, attention in zip(
                self.inputs_info, self.embeddings, self.oov, self.position_logits,
                self.attention):
            x = features[info["key"]]
            if training and oov is not None and self.oov_dropout > 0:
                x = drop_to_oov(x, oov[0], oov[1], self.oov_dropout)
            if embedding is None:
                parts.append(tf.reshape(tf.cast(x, tf.float32), [-1, info["width"]]))
            elif attention is not None:  # a history through one self-attention block
                parts.append(attention(embedding(tf.maximum(x, 0)),
                                       tf.cast(x >= 0, tf.float32), training=training))
            elif info["multi"]:
                parts.append(pool(embedding, x, logits))
            else:
                parts.append(embedding(tf.reshape(x, [-1])))
        return tf.concat(parts, axis=1)

    def call(self, features, training=False):
        h = self.encode_inputs(features, training=training)
        for i, layer in enumerate(self.hidden):
            h = layer(h)
            if self.norms:
                h = self.norms[i](h, training=training)
            if self.dropouts:
                h = self.dropouts[i](h, training=training)
        out = self.output_layer(h)
        if self.l2_normalize:
            out = tf.math.l2_normalize(out, axis=1)
        return out


def shared_embeddings(spec, vocabulary_size):
    """The candidate-id embedding table both towers may use, keyed by name.

    The candidate tower's id feature and every history feature of the query
    tower look candidates up in this one table (validation makes their
    embedding_dim agree), so a query's history lives in the candidates' space.
    """
    shared = [i for t in ("candidate_tower", "query_tower") for i in tower_inputs(spec, t)
              if i["shared"] and i["embedded"]]
    if not shared:
        return {}
    return {SHARED_CANDIDATE_EMBEDDING: tf.keras.layers.Embedding(
        embedding_rows(shared[0], vocabulary_size), shared[0]["embedding_dim"],
        name="candidate_id_embedding")}


def build_tower(spec, tower, vocabulary_size, shared=None):
    """Builds ``spec[tower]`` as a Tower; ``vocabulary_size(name)`` sizes tables."""
    info = tower_inputs(spec, tower)
    rows = {i["name"]: embedding_rows(i, vocabulary_size) for i in info if i["embedded"]}
    model, cfg = spec["model"], spec[tower]
    return Tower(info, rows, cfg["layers"], model["output_dim"], model["activation"],
                 cfg["dropout"], model["l2_normalize"], cfg["norm"], cfg["l2"],
                 shared=shared if shared is not None else shared_embeddings(spec, vocabulary_size),
                 name=tower, oov_dropout=model["oov_dropout"])


def build_towers(spec, vocabulary_size):
    """``(query_tower, candidate_tower)`` sharing one candidate-id embedding table."""
    shared = shared_embeddings(spec, vocabulary_size)
    return (build_tower(spec, "query_tower", vocabulary_size, shared),
            build_tower(spec, "candidate_tower", vocabulary_size, shared))
