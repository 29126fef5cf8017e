"""``id``: a string identifier embedded from its own vocabulary.

On ``data.query_id`` or ``data.candidate_id`` it reads the shared id
vocabulary instead (:meth:`FeatureKind.shared_key`): no Transform output
of its own, and none of the vocabulary options.
"""
from transform.kinds.base import (ONE_LINE, STRING, VOCABULARY_OPTIONS, FeatureKind,
                                  vocabulary_options, vocabulary_problems)
from transform.naming import vocabulary_name


class Id(FeatureKind):
    name, order = "id", 10
    options = VOCABULARY_OPTIONS
    value_type, vocabulary = STRING, "own"
    shares_ids, cells = True, ONE_LINE

    def problems(self, feature):
        return vocabulary_problems(feature)

    def context_problems(self, feature, tower, spec):
        if self.shared_key(feature, spec["data"]) and (
                feature.get("max_vocab_size") is not None or feature.get("frequency_threshold")
                or feature.get("oov_buckets", 1) != 1):
            return [("", "an id feature on data.query_id/data.candidate_id uses the shared id "
                     "vocabulary; remove max_vocab_size, frequency_threshold and oov_buckets")]
        return []

    def transform(self, inputs, feature, context):
        from transform import features as tf_parts  # TensorFlow: only when a Transform runs

        text = tf_parts.string_column(inputs[feature["column"]], feature["default"])
        return tf_parts.id_index(text, vocabulary_name(feature["name"]),
                                 **vocabulary_options(feature))


KIND = Id()
