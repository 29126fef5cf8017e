"""One tower of the two-tower model: feature embeddings, a dense stack, an output.

This module is copied verbatim into the generated Trainer module.
"""
import tensorflow as tf

from transform.naming import feature_input, feature_vocabulary, uses_embedding


def tower_inputs(spec, tower):
    """Describes what ``tower`` reads, one dict per feature.

    Each has ``name``, ``key`` (transformed key), ``vocabulary`` (file name or
    None), ``multi`` (padded multi-value input) and ``embedding_dim``.
    """
    data, default_dim = spec["data"], spec["model"]["embedding_dim"]
    described = []
    for feature in spec[tower]["features"]:
        described.append({
            "name": feature["name"],
            "key": feature_input(feature, data),
            "vocabulary": feature_vocabulary(feature, data),
            "embedded": uses_embedding(feature),
            "buckets": feature["num_buckets"] if feature["kind"] == "numeric" else None,
            "oov_buckets": feature["oov_buckets"],
            "multi": feature["kind"] == "multi_categorical",
            "embedding_dim": feature["embedding_dim"] or default_dim,
        })
    return described


def embedding_rows(inputs_info, vocabulary_size):
    """Rows of a feature's embedding table: vocabulary + OOV buckets, or buckets + 1."""
    if inputs_info["vocabulary"] is not None:
        return vocabulary_size(inputs_info["vocabulary"]) + inputs_info["oov_buckets"]
    return inputs_info["buckets"] + 1


class Tower(tf.keras.Model):
    """Maps transformed features to an embedding ``[batch, output_dim]``.

    Id and categorical inputs (``[batch]`` int64) are embedded; multi-valued
    inputs (``[batch, L]``, padded with -1) are embedded and mean-pooled over
    their real values (an all-padding row pools to zeros); numeric inputs
    (``[batch]`` float32) enter as they are. The concatenation goes through
    ``layers`` dense layers with dropout, then a linear output layer, then
    optional L2 normalisation.
    """

    def __init__(self, inputs_info, rows, layers, output_dim, activation="relu", dropout=0.0,
                 l2_normalize=True, name="tower"):
        super().__init__(name=name)
        self.inputs_info = list(inputs_info)
        self.embeddings = []
        for info in self.inputs_info:
            if info["embedded"]:
                self.embeddings.append(tf.keras.layers.Embedding(
                    rows[info["name"]], info["embedding_dim"], name=f"{info['name']}_embedding"))
            else:
                self.embeddings.append(None)
        self.hidden = [tf.keras.layers.Dense(width, activation=activation, name=f"dense_{i}")
                       for i, width in enumerate(layers)]
        self.dropouts = [tf.keras.layers.Dropout(dropout) for _ in layers] if dropout else []
        self.output_layer = tf.keras.layers.Dense(output_dim, name="output")
        self.l2_normalize = l2_normalize

    def encode_inputs(self, features):
        """The concatenated input vector ``[batch, input_width]``."""
        parts = []
        for info, embedding in zip(self.inputs_info, self.embeddings):
            x = features[info["key"]]
            if embedding is None:
                parts.append(tf.reshape(tf.cast(x, tf.float32), [-1, 1]))
            elif info["multi"]:
                mask = tf.cast(x >= 0, tf.float32)[:, :, tf.newaxis]
                vectors = embedding(tf.maximum(x, 0)) * mask
                count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
                parts.append(tf.reduce_sum(vectors, axis=1) / count)
            else:
                parts.append(embedding(tf.reshape(x, [-1])))
        return tf.concat(parts, axis=1)

    def call(self, features, training=False):
        h = self.encode_inputs(features)
        for i, layer in enumerate(self.hidden):
            h = layer(h)
            if self.dropouts:
                h = self.dropouts[i](h, training=training)
        out = self.output_layer(h)
        if self.l2_normalize:
            out = tf.math.l2_normalize(out, axis=1)
        return out


def build_tower(spec, tower, vocabulary_size):
    """Builds ``spec[tower]`` as a Tower; ``vocabulary_size(name)`` sizes tables."""
    info = tower_inputs(spec, tower)
    rows = {i["name"]: embedding_rows(i, vocabulary_size) for i in info if i["embedded"]}
    model = spec["model"]
    return Tower(info, rows, spec[tower]["layers"], model["output_dim"], model["activation"],
                 spec[tower]["dropout"], model["l2_normalize"], name=tower)
