"""``twotower recommend``: top-k candidates for a list of queries, from a trained model.

The model is a pushed serving SavedModel (or a pipeline root: its newest
pushed model). Its ``assets.extra/config.json`` says which columns it reads.
Each query's features come from its rows in a history CSV (by default the
config's ``data.path``, i.e. everything the model was trained on, whatever
the split): the latest row's columns, and for each history feature the
query's newest ``max_length`` candidates, newest first. The query's
candidates in that CSV are excluded from its recommendations unless
``include_seen``. A query with no rows is served cold (empty history).

Output: CSV ``user_id,item_id,rank`` (rank 1 best), queries in input order.
"""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Dict, List, Optional

from pipelines.config import Config, ConfigError
from pipelines.local import results
from pipelines.prepare import DataError, _parse_time
from transform.naming import HISTORY_PREFIX

HEADER = ("user_id", "item_id", "rank")


def find_model(path: str) -> str:
    """A serving SavedModel directory, given it or a pipeline root."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    pushed = results(os.path.abspath(path))["serving_model"] if os.path.isdir(path) else ""
    if not pushed:
        raise ConfigError([("--model", f"{path!r} is neither a serving SavedModel nor a pipeline "
                            "root with a pushed model; run `twotower run` first")])
    return pushed


def model_config(model_dir: str) -> Config:
    path = os.path.join(model_dir, "assets.extra", "config.json")
    if not os.path.exists(path):
        raise ConfigError([("--model", f"{model_dir} has no assets.extra/config.json; it was "
                            "exported by an older version: re-run the pipeline")])
    with open(path, encoding="utf-8") as handle:
        return Config.from_dict(json.load(handle))


def read_queries(path: str, column: str) -> List[str]:
    """Distinct query ids of ``path`` in order of first appearance."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        name = column if column in (reader.fieldnames or []) else "user_id"
        if name not in (reader.fieldnames or []):
            raise DataError(f"{path}: no column {column!r} (data.query_id) or 'user_id'; "
                            f"columns are {reader.fieldnames}")
        seen: Dict[str, None] = {}
        for row in reader:
            value = (row[name] or "").strip()
            if not value:
                raise DataError(f"{path} line {reader.line_num}: column {name!r} is empty")
            seen.setdefault(value, None)
    return list(seen)


def query_histories(cfg: Config, path: str, wanted: set) -> Dict[str, dict]:
    """``{query: {'row': latest row, 'items': candidates oldest first}}`` from ``path``."""
    d = cfg.data
    found: Dict[str, list] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            query = (row.get(d.query_id) or "").strip()
            if query not in wanted:
                continue
            when = (_parse_time(row[d.timestamp], f"{path} row {number}, column "
                                f"{d.timestamp!r}") if d.timestamp else 0.0)
            found.setdefault(query, []).append((when, number, row))
    out = {}
    for query, rows in found.items():
        rows.sort(key=lambda r: (r[0], r[1]))
        out[query] = {"row": rows[-1][2], "items": [r[2][d.candidate_id].strip() for r in rows]}
    return out


def serving_values(cfg: Config, described: List[dict], query: str, seen: Optional[dict]) -> dict:
    """One query's value for each serving input (``described``: serving_inputs.json)."""
    history = {HISTORY_PREFIX + f.name: f for _, f in cfg.features() if f.kind == "history"}
    timestamps = {f.column for _, f in cfg.features() if f.kind == "timestamp"}
    values = {}
    for d in described:
        column, dtype = d["column"], d["dtype"]
        if d["input"] == "query_id":
            value = query
        elif column in history:
            f = history[column]
            items = seen["items"] if seen else []
            value = f.separator.join(reversed(items[-f.max_length:]))
        else:
            value = (seen["row"].get(column) or "").strip() if seen else ""
            if column in timestamps and value:
                value = _parse_time(value, f"column {column!r} of query {query!r}")
        if dtype == "string":
            values[d["input"]] = str(value)
        else:
            number = float(value) if value != "" else 0.0
            values[d["input"]] = int(number) if dtype.startswith("int") else number
    return values


def recommend(model: str, users: str, k: int, out: str, history: Optional[str] = None,
              include_seen: bool = False, batch_size: int = 256, log=print) -> dict:
    """Writes ``out``; returns ``{'queries', 'rows', 'model', 'cold'}``."""
    if not 1 <= k <= 10_000:
        raise ConfigError([("--k", f"must be in 1..10000, got {k}")])
    model_dir = find_model(model)
    cfg = model_config(model_dir)
    history = history or cfg.data.path
    with open(os.path.join(model_dir, "assets.extra", "serving_inputs.json"),
              encoding="utf-8") as handle:
        described = json.load(handle)
    queries = read_queries(users, cfg.data.query_id)
    seen = query_histories(cfg, history, set(queries))
    log(f"model {model_dir}; {len(queries)} queries, {len(seen)} with rows in {history}")

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    if cfg.pipeline.serving_index == "scann":
        from trainer.serving import require_scann

        require_scann()  # registers the ScaNN ops the SavedModel uses
    signature = tf.saved_model.load(model_dir).signatures["recommend"]
    dtypes = {d["input"]: tf.as_dtype(d["dtype"]) for d in described}
    written = 0
    tmp = out + ".partial"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for start in range(0, len(queries), batch_size):
            chunk = queries[start:start + batch_size]
            rows = [serving_values(cfg, described, q, seen.get(q)) for q in chunk]
            inputs = {name: tf.constant([r[name] for r in rows], dtype)
                      for name, dtype in dtypes.items()}
            excluded = [[] if include_seen or q not in seen else sorted(set(seen[q]["items"]))
                        for q in chunk]
            width = max(1, max(len(e) for e in excluded))
            inputs["exclude"] = tf.constant([e + [""] * (width - len(e)) for e in excluded])
            inputs["k"] = tf.constant(k, tf.int32)
            answer = signature(**inputs)
            ids = answer["candidate_ids"].numpy()
            scores = answer["scores"].numpy()
            for query, row_ids, row_scores in zip(chunk, ids, scores):
                rank = 0
                for cid, score in zip(row_ids, row_scores):
                    if not cid or not math.isfinite(float(score)):
                        continue
                    rank += 1
                    writer.writerow([query, cid.decode("utf-8"), rank])
                    written += 1
    os.replace(tmp, out)  # a crash leaves no complete-looking file behind
    report = {"queries": len(queries), "rows": written, "model": model_dir,
              "cold": len(queries) - len(seen)}
    log(f"wrote {written} recommendations for {len(queries)} queries to {out}")
    return report
