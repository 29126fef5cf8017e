"""``multi_categorical``: ``separator``-joined values (``a|b|c``), the first ``max_length``
embedded from one vocabulary and pooled."""
from transform.kinds.base import (ONE_LINE, STRING, VOCABULARY_OPTIONS, FeatureKind,
                                  length_problems, vocabulary_options, vocabulary_problems)
from transform.naming import vocabulary_name


class MultiCategorical(FeatureKind):
    name, order = "multi_categorical", 30
    options = VOCABULARY_OPTIONS + ("separator", "max_length")
    defaults = {"max_length": 8}
    value_type, vocabulary, sequence = STRING, "own", True
    cells, restricts = ONE_LINE, True

    def tokens(self, feature, value):
        return [t.strip() for t in value.split(feature["separator"]) if t.strip()]

    def problems(self, feature):
        found = vocabulary_problems(feature) + length_problems(feature)
        if not feature.get("separator"):
            found.append(("separator", "must not be empty"))
        return found

    def transform(self, inputs, feature, context):
        from transform import features as tf_parts  # TensorFlow: only when a Transform runs

        text = tf_parts.string_column(inputs[feature["column"]], feature["default"])
        return tf_parts.multi_index(tf_parts.split_tokens(text, feature["separator"]),
                                    vocabulary_name(feature["name"]), feature["max_length"],
                                    **vocabulary_options(feature))


KIND = MultiCategorical()
