"""``numeric``: a number, as one standardised value (``zscore``, ``minmax``, ``log``) or,
with ``transform: bucketize``, an embedded quantile bucket."""
from transform.kinds.base import FLOAT, NUMBER, FeatureKind, bucket_problems

TRANSFORMS = ("zscore", "minmax", "log", "bucketize")


class Numeric(FeatureKind):
    name, order = "numeric", 40
    options = ("transform", "num_buckets")
    defaults = {"transform": "zscore"}
    choices = {"transform": TRANSFORMS}
    value_type, cells = FLOAT, NUMBER

    def dense_width(self, feature):
        return 0 if feature["transform"] == "bucketize" else 1

    def table_rows(self, feature):
        return feature["num_buckets"] + 1 if feature["transform"] == "bucketize" else None

    def problems(self, feature):
        found = super().problems(feature) + bucket_problems(feature)
        if feature.get("transform") != "bucketize" and feature.get("embedding_dim") is not None:
            found.append(("embedding_dim", "a numeric feature enters as a value; embedding_dim "
                          "needs transform: bucketize"))
        return found

    def transform(self, inputs, feature, context):
        from transform import features as tf_parts  # TensorFlow: only when a Transform runs

        return tf_parts.numeric_value(tf_parts.float_column(inputs[feature["column"]],
                                                            feature["default"]),
                                      feature["transform"], feature["num_buckets"])


KIND = Numeric()
