"""``history``: the query's earlier candidate ids (newest first, at most ``max_length``),
embedded with the candidate id table and pooled (``pooling``)."""
from transform.kinds.base import STRING, FeatureKind, length_problems, shared_key
from transform.naming import CANDIDATE_KEY, history_column

POOLINGS = ("mean", "recency", "attention")
ATTENTION_HEADS = 2  # trainer.towers.HistoryAttention: heads of attention_key_dim(d) each


def attention_key_dim(dim: int) -> int:
    """Width of each attention head over ``dim``-wide history embeddings."""
    return max(1, dim // 2)


def pooling_parameters(pooling: str, max_length: int, dim: int) -> int:
    """Weights a history's pooling learns (``trainer.towers``): none for ``mean``, a logit
    per position for ``recency``; for ``attention`` a position table ``[L, d]``, the heads
    (query, key and value ``[d, h, k]`` with a bias each, output ``[h, k, d]`` with a bias)
    and a layer normalisation (``2 d``)."""
    if pooling == "recency":
        return max_length
    if pooling == "attention":
        heads, key = ATTENTION_HEADS, attention_key_dim(dim)
        return max_length * dim + 3 * (dim * heads * key + heads * key) \
            + heads * key * dim + dim + 2 * dim
    return 0


class History(FeatureKind):
    name, order = "history", 80
    reads = "history"
    options = ("separator", "max_length", "pooling")
    model_options = ("pooling",)
    defaults = {"max_length": 20, "pooling": "recency"}  # docs/config.md, "Defaults, and why"
    choices = {"pooling": POOLINGS}
    value_type, vocabulary, sequence, query_only = STRING, "candidate", True, True
    column_hint = ": it reads the query's earlier candidate ids"

    def history(self, feature):
        return feature["max_length"], feature["separator"]

    def pooling(self, feature):
        return feature["pooling"]

    def problems(self, feature):
        found = super().problems(feature) + length_problems(feature)
        if not feature.get("separator"):
            found.append(("separator", "must not be empty"))
        return found

    def context_problems(self, feature, tower, spec):
        found = []
        if tower != "query_tower":
            found.append(("", "a history feature belongs in the query tower"))
        data, model_dim = spec["data"], spec["model"]["embedding_dim"]
        if data.get("timestamp") is None:
            found.append(("", "a history holds the query's earlier interactions, so it needs "
                          "data.timestamp: without one, 'earlier' would be file order and a "
                          "history could hold held-out interactions; set data.timestamp or drop "
                          "the feature"))
        ids = [g for g in spec["candidate_tower"]["features"]
               if shared_key(g, data) == CANDIDATE_KEY]
        dim = feature.get("embedding_dim") or model_dim
        if ids and (ids[0].get("embedding_dim") or model_dim) != dim:
            found.append(("embedding_dim", "a history shares the candidate id embedding table: "
                          "its embedding_dim must equal the candidate id feature's"))
        return found

    def transform(self, inputs, feature, context):
        import tensorflow_transform as tft  # TensorFlow: only when a Transform runs

        from transform import features as tf_parts  # TF Transform: only when this runs

        tokens = tf_parts.split_tokens(
            tf_parts.string_column(inputs[history_column(feature["name"])], None),
            feature["separator"], strip=False)
        indices = tft.apply_vocabulary(tokens.to_sparse(), context["candidate_vocabulary"],
                                       num_oov_buckets=1)
        return tf_parts.padded(indices, feature["max_length"])


KIND = History()
