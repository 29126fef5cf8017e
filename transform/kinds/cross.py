"""``cross``: two or more columns' values joined and hashed into ``hash_buckets``
embedded rows (any column type: values are read as text)."""
from transform.kinds.base import FeatureKind


class Cross(FeatureKind):
    name, order = "cross", 70
    reads = "columns"
    options = ("hash_buckets",)
    value_type = None
    column_hint = "; list the crossed columns in 'columns'"

    def table_rows(self, feature):
        return feature["hash_buckets"]

    def problems(self, feature):
        found = []
        columns = feature.get("columns") or []
        if len(columns) < 2 or len(set(columns)) != len(columns) or not all(columns):
            found.append(("columns", "a cross needs two or more distinct, non-empty columns"))
        if not 2 <= feature.get("hash_buckets", 1000) <= 1_000_000:
            found.append(("hash_buckets", "must be in 2..1000000"))
        return found

    def transform(self, inputs, feature, context):
        from transform import features as tf_parts  # TensorFlow: only when a Transform runs

        return tf_parts.crossed(inputs, feature["columns"], feature["hash_buckets"])


KIND = Cross()
