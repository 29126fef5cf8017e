"""``text``: free text, its first ``max_length`` lower-cased words (runs of letters or
digits, any script) embedded from one vocabulary and pooled."""
import re

from transform.kinds.base import (STRING, VOCABULARY_OPTIONS, FeatureKind, length_problems,
                                  vocabulary_options, vocabulary_problems)
from transform.naming import vocabulary_name

WORDS = re.compile(r"[^\W_]+")  # runs of letters or digits, as the Transform's \pL\pN


class Text(FeatureKind):
    name, order = "text", 50
    options = VOCABULARY_OPTIONS + ("max_length",)
    defaults = {"max_length": 16}
    value_type, vocabulary, sequence = STRING, "own", True

    def tokens(self, feature, value):
        return WORDS.findall(value.lower())

    def problems(self, feature):
        return vocabulary_problems(feature) + length_problems(feature)

    def transform(self, inputs, feature, context):
        from transform import features as tf_parts  # TensorFlow: only when a Transform runs

        text = tf_parts.string_column(inputs[feature["column"]], feature["default"])
        return tf_parts.multi_index(tf_parts.word_tokens(text), vocabulary_name(feature["name"]),
                                    feature["max_length"], **vocabulary_options(feature))


KIND = Text()
