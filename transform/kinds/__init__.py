"""The feature kinds: one module per kind, each defining ``KIND`` (a :class:`FeatureKind`).

Adding a kind is adding one module here (and its tests): the config's list of
kinds, validation, the prepared column types, the summary, the Transform and
the towers read this registry. No TensorFlow: the config imports it.
"""
import importlib
import pkgutil

from transform.kinds.base import (COMMON_OPTIONS, FLOAT, INT, KINDS, MOMENT, NUMBER, ONE_LINE,
                                  STRING, FeatureKind, feature_input, kind_of, shared_key)
from transform.naming import (CANDIDATE_KEY, CANDIDATE_VOCAB, QUERY_KEY, QUERY_VOCAB,
                              history_column, vocabulary_name)

__all__ = ["COMMON_OPTIONS", "FLOAT", "INT", "STRING", "ONE_LINE", "NUMBER", "MOMENT",
           "FeatureKind", "KINDS", "kind_of", "shared_key", "feature_input", "frozen_feature",
           "transform_feature", "feature_vocabulary", "raw_columns", "history_of", "dense_width",
           "uses_embedding"]


def _discover():
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            kind = importlib.import_module(f"{__name__}.{info.name}").KIND
            found.append(kind)
    return {kind.name: kind for kind in sorted(found, key=lambda k: k.order)}


KINDS.update(_discover())  # the one registry (transform.kinds.base.KINDS), filled once


def frozen_feature(feature):
    """The feature with only the options that apply to its kind, in the config's order."""
    kind = kind_of(feature)
    return {k: v for k, v in feature.items() if kind.applies(k)}


def transform_feature(feature):
    """The feature with only the options its Transform reads (no tower-only options)."""
    kind = kind_of(feature)
    return {k: v for k, v in feature.items() if kind.transform_reads(k)}


def feature_vocabulary(feature, data):
    """The vocabulary file behind ``feature``, or None (numeric, timestamp, cross).

    ``data``: the config's ``data`` section (an id feature on an id column
    reads the shared id vocabulary, :func:`shared_key`).
    """
    key = shared_key(feature, data)
    if key == QUERY_KEY:
        return QUERY_VOCAB
    vocabulary = kind_of(feature).vocabulary
    if key == CANDIDATE_KEY or vocabulary == "candidate":
        return CANDIDATE_VOCAB
    return vocabulary_name(feature["name"]) if vocabulary == "own" else None


def raw_columns(feature):
    """The raw (prepared) columns a feature reads, in order."""
    reads = kind_of(feature).reads
    if reads == "history":
        return [history_column(feature["name"])]
    return list(feature["columns"]) if reads == "columns" else [feature["column"]]


def reads_history(feature):
    """Whether ``feature`` (a raw mapping, maybe malformed) is of a kind that reads the
    query's earlier candidates rather than a column."""
    kind = KINDS.get(feature.get("kind")) if isinstance(feature.get("kind"), str) else None
    return kind is not None and kind.reads == "history"


def history_of(feature):
    """``(max_length, separator)`` of the history the SQL program builds for ``feature``, or
    None (:meth:`FeatureKind.history`)."""
    return kind_of(feature).history(feature)


def dense_width(feature):
    """Width of a feature that enters the tower as values, 0 if it is embedded."""
    return kind_of(feature).dense_width(feature)


def uses_embedding(feature):
    """Whether the Trainer embeds this feature (else it is a dense float input)."""
    return dense_width(feature) == 0
