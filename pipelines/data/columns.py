"""The prepared columns, their types, and the explicit TFX schema built from them.

Every column the towers read has one type, decided by the config and never
guessed from the data: ids and every categorical, text, multi-valued and
history column are strings (kept exactly as written: ``007`` stays ``007``),
numeric columns are floats, and timestamps (``data.timestamp`` and timestamp
features) are int64 epoch seconds. The same types are written to the prepared
Parquet files and declared in the schema that ImportSchemaGen gives TFX, so
no type inference ever touches an id.

This module imports neither TensorFlow nor TFX.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from pipelines.config.schema import Config
from transform.kinds import FLOAT, INT, STRING, kind_of, raw_columns
from transform.naming import WEIGHT_COLUMN



def output_columns(cfg: Config) -> List[str]:
    """Columns written for ExampleGen, in a fixed order, each once."""
    d = cfg.data
    columns = [d.query_id, d.candidate_id] + ([d.timestamp] if d.timestamp else [])
    for _, feature in cfg.features():
        for column in raw_columns(feature.__dict__):
            if column not in columns:
                columns.append(column)
    return columns


def type_conflicts(cfg: Config) -> List[Tuple[str, str]]:
    """``(key, message)`` for each column read both as a number and as a string."""
    uses: Dict[str, Dict[str, str]] = {}  # column -> {"number"/"string": first key}
    d = cfg.data
    for key, column in (("data.query_id", d.query_id), ("data.candidate_id", d.candidate_id)):
        uses.setdefault(column, {}).setdefault("string", key)
    if d.timestamp:
        uses.setdefault(d.timestamp, {}).setdefault("number", "data.timestamp")
    problems = []
    for tower, feature in cfg.features():
        key = f"{tower}.features.{getattr(cfg, tower).features.index(feature)}"
        value_type = kind_of(feature.__dict__).value_type
        if value_type is None:
            continue  # e.g. a cross hashes its columns' values, whatever their type
        kind = "string" if value_type == STRING else "number"
        for column in raw_columns(feature.__dict__):
            first = uses.setdefault(column, {})
            other = "string" if kind == "number" else "number"
            if other in first and kind not in first:
                problems.append((key, f"column {column!r} is read as a {kind} here but as a "
                                 f"{other} by {first[other]}; one column has one type: read "
                                 "it the same way, or copy it to a second column"))
            first.setdefault(kind, key)
    return problems


def column_types(cfg: Config) -> Dict[str, str]:
    """``{column: STRING | FLOAT | INT}`` for every output column, in output order.

    Ids and string-kind features' columns are STRING; numeric FLOAT; timestamps
    INT (epoch seconds). A column only crossed is STRING. With ``data.weight``, the
    clipped weight is a last FLOAT column, WEIGHT_COLUMN. Run :func:`type_conflicts`
    (validation does) before relying on this.
    """
    types = {column: STRING for column in output_columns(cfg)}
    numbers = {}
    for _, feature in cfg.features():
        value_type = kind_of(feature.__dict__).value_type
        if value_type in (FLOAT, INT):
            for column in raw_columns(feature.__dict__):
                # a column read both as a timestamp and as a numeric value stays INT
                if numbers.get(column) != INT:
                    numbers[column] = value_type
    if cfg.data.timestamp:
        numbers[cfg.data.timestamp] = INT
    types.update(numbers)
    if cfg.data.weight:
        types[WEIGHT_COLUMN] = FLOAT
    return types


_SCHEMA_TYPES = {STRING: "BYTES", FLOAT: "FLOAT", INT: "INT"}


def schema_text(cfg: Config) -> str:
    """The TFX schema (text proto) of the prepared examples.

    Every column is optional (an empty cell is a missing value, and the
    catalog and query splits leave the other side's columns empty) and holds
    at most one value, so the Transform reads each as a ``VarLenFeature`` of
    the column's type and fills missing values with the feature's default.
    """
    from google.protobuf import text_format  # protobuf: off the CLI's fast path
    from tensorflow_metadata.proto.v0 import schema_pb2  # TF Metadata: off the CLI's fast path

    schema = schema_pb2.Schema()
    for column, kind in column_types(cfg).items():
        feature = schema.feature.add()
        feature.name = column
        feature.type = schema_pb2.FeatureType.Value(_SCHEMA_TYPES[kind])
        feature.value_count.min = 1
        feature.value_count.max = 1
        feature.presence.min_count = 0
    return text_format.MessageToString(schema)
