"""Tower sizes before anything runs: input width and parameter counts.

``tower_summary`` mirrors how ``trainer.towers`` builds each tower (a test
checks it against the built Keras model); vocabulary sizes come from
``estimate_vocabularies``, which reads the CSV files the way the Transform will
(distinct values, tokens or words; capped by ``max_vocab_size``).
"""
from __future__ import annotations

import csv
from typing import Callable, Dict, Optional

from pipelines.config.schema import Config
from transform.kinds import dense_width, feature_vocabulary, kind_of, uses_embedding
from transform.kinds.history import pooling_parameters
from transform.naming import CANDIDATE_VOCAB, QUERY_VOCAB, vocabulary_name


def _feature_rows(cfg: Config, f, vocabulary_size: Callable[[str], int]) -> Optional[int]:
    """Embedding rows of a feature, None when it enters as values."""
    feature = f.__dict__
    if not uses_embedding(feature):
        return None
    vocabulary = feature_vocabulary(feature, cfg.to_dict()["data"])
    if vocabulary is None:
        return kind_of(feature).table_rows(feature)  # buckets or hashes
    if vocabulary in (QUERY_VOCAB, CANDIDATE_VOCAB):  # the shared tables: one OOV row
        return vocabulary_size(vocabulary) + 1
    return vocabulary_size(vocabulary) + f.oov_buckets


def tower_summary(cfg: Config, tower: str, vocabulary_size: Callable[[str], int]) -> dict:
    """``{'input_width', 'embedding_parameters', 'dense_parameters', 'parameters'}``.

    Counts trainable parameters the tower uses; the candidate-id table shared
    with a history feature counts in both towers; a history's pooling weights
    count as dense parameters.
    """
    tc, data = getattr(cfg, tower), cfg.to_dict()["data"]
    width, embedding, pooling, seen_shared = 0, 0, 0, False
    for f in tc.features:
        rows = _feature_rows(cfg, f, vocabulary_size)
        if rows is None:
            width += dense_width(f.__dict__)
            continue
        dim = f.embedding_dim or cfg.model.embedding_dim
        width += dim
        if getattr(f, "pooling", None):
            pooling += pooling_parameters(f.pooling, f.max_length, dim)
        shared = feature_vocabulary(f.__dict__, data) == CANDIDATE_VOCAB
        if shared and seen_shared:
            continue
        seen_shared = seen_shared or shared
        embedding += rows * dim
    dense, previous = pooling, width
    for units in tc.layers:
        dense += previous * units + units + (2 * units if tc.norm != "none" else 0)
        previous = units
    dense += previous * cfg.model.output_dim + cfg.model.output_dim
    return {"input_width": width, "embedding_parameters": embedding,
            "dense_parameters": dense, "parameters": embedding + dense}


def _tokens(f, value: str):
    """The vocabulary entries of one cell, as the feature's kind splits it (empty: default)."""
    return kind_of(f.__dict__).tokens(f.__dict__, value or (f.default or ""))


def _rows(path: str):
    """``(column names, rows as dicts of text)`` of a CSV or Parquet file."""
    if path.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq  # pyarrow: off the CLI's fast path

        table = pq.read_table(path)
        return table.column_names, [{k: "" if v is None else str(v) for k, v in row.items()}
                                    for row in table.to_pylist()]
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def estimate_vocabularies(cfg: Config) -> Dict[str, int]:
    """Vocabulary sizes by file name, estimated from the whole CSV or Parquet files."""
    d = cfg.data
    values: Dict[str, set] = {QUERY_VOCAB: set(), CANDIDATE_VOCAB: set()}
    vocab_features = [(t, f) for t, f in cfg.features()
                      if kind_of(f.__dict__).vocabulary == "own"
                      and f.column not in (d.query_id, d.candidate_id)]
    table_columns = set()
    if d.candidates is not None:
        fields, rows = _rows(d.candidates.path)
        table_columns = set(fields) - {d.candidates.id}
        for t, f in vocab_features:
            if t == "candidate_tower" and f.column in table_columns:
                bucket = values.setdefault(vocabulary_name(f.name), set())
                for row in rows:
                    bucket.update(_tokens(f, row[f.column]))
    for row in _rows(d.path)[1]:
        values[QUERY_VOCAB].add(row[d.query_id].strip())
        values[CANDIDATE_VOCAB].add(row[d.candidate_id].strip())
        for t, f in vocab_features:
            if t == "candidate_tower" and f.column in table_columns:
                continue
            bucket = values.setdefault(vocabulary_name(f.name), set())
            bucket.update(_tokens(f, row[f.column]))
    sizes = {name: len(found) for name, found in values.items()}
    for _, f in vocab_features:
        if f.max_vocab_size is not None:
            sizes[vocabulary_name(f.name)] = min(sizes[vocabulary_name(f.name)], f.max_vocab_size)
    return sizes
