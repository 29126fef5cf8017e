"""``timestamp``: a moment (int64 epoch seconds), as sin/cos of its phase in the day, week
and year (``cyclical``) or an embedded quantile bucket (``bucketize``)."""
from transform.kinds.base import INT, MOMENT, FeatureKind, bucket_problems
from transform.naming import CYCLES

TRANSFORMS = ("cyclical", "bucketize")


class Timestamp(FeatureKind):
    name, order = "timestamp", 60
    options = ("transform", "num_buckets")
    defaults = {"transform": "cyclical"}
    choices = {"transform": TRANSFORMS}
    value_type, query_only, cells = INT, True, MOMENT

    def dense_width(self, feature):
        return 2 * len(CYCLES) if feature["transform"] == "cyclical" else 0

    def table_rows(self, feature):
        return feature["num_buckets"] + 1 if feature["transform"] == "bucketize" else None

    def problems(self, feature):
        return super().problems(feature) + bucket_problems(feature)

    def transform(self, inputs, feature, context):
        import tensorflow as tf  # TensorFlow: only when a Transform runs
        import tensorflow_transform as tft  # TF Transform: only when this runs

        from transform import features as tf_parts  # TF Transform: only when this runs

        seconds = tf.cast(tf_parts.float_column(inputs[feature["column"]], feature["default"]),
                          tf.float64)
        if feature["transform"] == "cyclical":
            return tf_parts.cyclical_time(seconds)
        return tft.bucketize(tf.cast(seconds, tf.float32), feature["num_buckets"])


KIND = Timestamp()
