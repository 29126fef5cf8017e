"""Turns the configured CSV files into ExampleGen's input: typed Parquet splits.

Every row is checked before anything reaches TFX (ids present and without
line breaks, timestamps and numbers parse, every interaction's candidate in
the candidate table, each candidate's features single-valued); errors name
the file, the row (the CSV line number, header = 1) and the column. Ids are
kept exactly as written: never stripped, never re-typed.

Written under ``out_dir`` (see :mod:`pipelines.data.columns` for the types):

- ``train/``, ``eval/``, ``test/`` (with ``data.split.test_fraction``): the
  interactions, with history columns computed after the split
  (:mod:`pipelines.data.histories`);
- ``catalog/``: one row per servable candidate (every row of the candidate
  table, or else every candidate of the training split);
- ``eval_queries/``, ``test_queries/``: each held-out query as it stood
  before its first held-out interaction, which is what evaluation embeds;
- ``prepare_report.json``.

The files are written to a temporary directory and renamed into place, so a
failed run never leaves a complete-looking input; ``out_dir`` is only ever
replaced if this module created it (its marker file is there).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from typing import Dict, List

from pipelines.config import Config
from pipelines.data.columns import FLOAT, INT, STRING, column_types, output_columns
from pipelines.data.csvfile import DataError, check_number, parse_time, read_rows
from pipelines.data.histories import (RANKS, first_times, joined, query_states, repeats,
                                      row_histories)
from pipelines.data.splits import SPLITS, assign_splits
from transform.naming import CATALOG_SPLIT, history_column, queries_split, raw_columns

MARKER = ".twotower-prepared"
REPORT = "prepare_report.json"
__all__ = ["DataError", "output_columns", "prepare", "parse_time"]


def _feature_columns(cfg: Config, tower: str) -> List[str]:
    return [c for t, f in cfg.features() if t == tower for c in raw_columns(f.__dict__)]


def _read_candidates(cfg: Config, columns: List[str], numeric: List[str]) -> Dict[str, dict]:
    table = cfg.data.candidates
    found: Dict[str, dict] = {}
    for number, row in read_rows(table.path, [table.id] + columns):
        key = row[table.id]
        _check_id(key, f"{table.path} row {number}", table.id, "data.candidates.id")
        for column in numeric:
            check_number(row[column], f"{table.path} row {number}, column {column!r}")
        if key in found:
            raise DataError(f"{table.path} row {number}: candidate id {key!r} appears again "
                            f"(first at row {found[key]['_row']}); the candidate table needs "
                            "one row per candidate")
        row["_row"] = number
        found[key] = row
    return found


def _check_id(value: str, where: str, column: str, key: str) -> None:
    if not value.strip():
        raise DataError(f"{where}: column {column!r} ({key}) is empty; every interaction "
                        "needs both ids")
    if "\n" in value or "\r" in value:
        raise DataError(f"{where}: column {column!r} ({key}) holds a line break in "
                        f"{value!r}; ids must be on one line")


def _check_one_line(row: dict, where: str, columns) -> None:
    """Vocabulary files hold one value per line: a line break would be dropped silently."""
    for column in columns:
        if "\n" in row[column] or "\r" in row[column]:
            raise DataError(f"{where}, column {column!r}: {row[column]!r} holds a line break; "
                            "categorical values must be on one line")


def _typed(value: str, kind: str, where: str):
    """A cell as written to Parquet: None when empty, else the column's type."""
    if value == "" or (kind != STRING and not value.strip()):
        return None
    if kind == FLOAT:
        return float(value)
    if kind == INT:
        return int(math.floor(parse_time(value, where)))
    return value


def prepare(cfg: Config, out_dir: str) -> dict:
    """Writes the typed splits under ``out_dir``; returns the report (also as JSON)."""
    d = cfg.data
    types = column_types(cfg)
    histories = {history_column(f.name): f for _, f in cfg.features() if f.kind == "history"}
    base = [c for c in output_columns(cfg) if c not in histories]
    candidate_side = [c for c in dict.fromkeys(_feature_columns(cfg, "candidate_tower"))
                      if c != d.candidate_id]
    numeric = sorted({c for _, f in cfg.features() if f.kind == "numeric"
                      for c in raw_columns(f.__dict__)})
    one_line = sorted({c for _, f in cfg.features()
                       if f.kind in ("id", "categorical", "multi_categorical")
                       for c in raw_columns(f.__dict__)} - {d.query_id, d.candidate_id})
    stamps = sorted({c for _, f in cfg.features() if f.kind == "timestamp"
                     for c in raw_columns(f.__dict__)} - {d.timestamp})
    table = None
    if d.candidates:  # joined columns are checked where they live: in the candidate table
        table = _read_candidates(cfg, candidate_side, [c for c in numeric if c in candidate_side])
    wanted = [c for c in base if table is None or c not in candidate_side]

    rows: List[dict] = []
    times: List[float] = []
    lines: List[int] = []
    missing, first_missing = 0, None
    seen_values: Dict[tuple, tuple] = {}
    for number, row in read_rows(d.path, wanted):
        where = f"{d.path} row {number}"
        for key in ("query_id", "candidate_id"):
            _check_id(row[getattr(d, key)], where, getattr(d, key), f"data.{key}")
        cid = row[d.candidate_id]
        if table is not None:
            attrs = table.get(cid)
            if attrs is None:
                missing += 1
                first_missing = first_missing or (number, cid)
                continue
            for column in candidate_side:
                row[column] = attrs[column]
        else:
            for column in candidate_side:
                value = row[column]
                if seen_values.setdefault((column, cid), (value, number))[0] != value:
                    first = seen_values[(column, cid)]
                    raise DataError(
                        f"{where}: candidate {cid!r} has {column!r} = {value!r}, but "
                        f"{first[0]!r} at row {first[1]}; a candidate feature must have one "
                        "value per candidate (or give a candidate table)")
        for column in numeric:
            if table is None or column not in candidate_side:
                check_number(row[column], f"{where}, column {column!r}")
        _check_one_line(row, where, [c for c in one_line if c in row])
        for column in stamps:
            if row[column].strip():
                parse_time(row[column], f"{where}, column {column!r}")
        for f in histories.values():
            if f.separator in cid:
                raise DataError(f"{where}: candidate id {cid!r} contains the history "
                                f"separator {f.separator!r}; choose another separator")
        if d.timestamp:
            times.append(parse_time(row[d.timestamp], f"{where}, column {d.timestamp!r}"))
        rows.append(row)
        lines.append(number)
    if missing:
        raise DataError(f"{d.path} row {first_missing[0]}: candidate {first_missing[1]!r} is not "
                        f"in the candidate table {d.candidates.path} ({missing} interaction rows "
                        "name candidates it lacks); add them to the table, or drop those rows")
    if len(rows) < 2:
        raise DataError(f"{d.path}: {len(rows)} interaction rows; at least 2 are needed")
    if table is not None:
        for attrs in table.values():
            _check_one_line(attrs, f"{d.candidates.path} row {attrs['_row']}",
                            [c for c in one_line if c in candidate_side])

    labels, split_info = assign_splits(cfg, [[row[c] for c in base] for row in rows],
                                       base.index(d.query_id), times)
    held = SPLITS if d.split.test_fraction > 0 else SPLITS[:2]
    counts = {split: labels.count(split) for split in SPLITS}
    for split in held:
        if counts[split] == 0:
            raise DataError(f"{d.path}: the {split_info['split_method']} split leaves no {split} "
                            "rows; change data.split.eval_fraction, test_fraction or method")
    ranks = [RANKS[label] for label in labels]
    queries = [row[d.query_id] for row in rows]
    items = [row[d.candidate_id] for row in rows]
    clock = times or [0.0] * len(rows)
    cap = max([f.max_length for f in histories.values()] or [0])
    if histories:
        found = row_histories(queries, clock, ranks, items, cap)
        for row, past in zip(rows, found):
            for column, f in histories.items():
                row[column] = joined(past, f.separator, f.max_length)

    again = (repeats(queries, clock, ranks, items) if d.repeats == "first"
             else [False] * len(rows))
    splits = {split: [row for row, label, repeat in zip(rows, labels, again)
                      if label == split and not (repeat and split == "train")]
              for split in held}
    report = {"rows": len(rows), "columns": output_columns(cfg), "column_types": types}
    report.update({f"{split}_rows": len(splits[split]) for split in held})
    if d.repeats == "first":
        report["repeats_dropped"] = sum(1 for r, l in zip(again, labels) if r and l == "train")
    query_side = {d.query_id, d.timestamp} | set(_feature_columns(cfg, "query_tower"))
    for split in held[1:]:
        chosen = [label == split for label in labels]
        cutoffs = (first_times(queries, clock, chosen) if times else
                   {q: math.inf for q, pick in zip(queries, chosen) if pick})
        known = [rank < RANKS[split] for rank in ranks]
        states = query_states(queries, clock, items, known, cutoffs, cap)
        snapshot = []
        for query in sorted(states):
            latest = rows[states[query]["row"]]
            state = {c: (latest[c] if c in query_side else "") for c in base}
            for column, f in histories.items():
                state[column] = joined(states[query]["items"], f.separator, f.max_length)
            snapshot.append(state)
        if not snapshot:
            raise DataError(f"{d.path}: no {split} query has an interaction before its first "
                            f"{split} one, so the {split} evaluation would be empty; use a "
                            "user_time split or a larger eval_fraction")
        splits[queries_split(split)] = snapshot
        report[f"{split}_queries"] = len(snapshot)
        report[f"{split}_cold_queries"] = len(cutoffs) - len(snapshot)

    if table is not None:
        catalog = [dict(table[key], **{d.candidate_id: key}) for key in sorted(table)]
    else:
        first: Dict[str, dict] = {}
        for row in splits["train"]:
            first.setdefault(row[d.candidate_id], row)
        catalog = [first[key] for key in sorted(first)]
    splits[CATALOG_SPLIT] = [{c: (row[c] if c in candidate_side or c == d.candidate_id else "")
                              for c in base} for row in catalog]
    report["catalog_candidates"] = len(catalog)
    report.update(split_info)
    _write(out_dir, splits, types, report, d.path)
    return report


def _write(out_dir: str, splits: Dict[str, List[dict]], types: Dict[str, str], report: dict,
           source: str) -> None:
    """Writes every split to a temporary directory, then swaps it into ``out_dir``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if os.path.exists(out_dir) and not os.path.exists(os.path.join(out_dir, MARKER)):
        raise DataError(f"{out_dir} exists but was not written by twotower (no {MARKER} in it); "
                        "it is left untouched: move it away or set another pipeline.root")
    arrow = {"string": pa.string(), "float": pa.float64(), "int": pa.int64()}
    schema = pa.schema([(column, arrow[kind]) for column, kind in types.items()])
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.partial-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    try:
        for split, rows in splits.items():
            where = f"{source} ({split} split)"
            data = {column: [_typed(row.get(column) or "", kind, where) for row in rows]
                    for column, kind in types.items()}
            os.makedirs(os.path.join(tmp, split))
            pq.write_table(pa.table(data, schema=schema),
                           os.path.join(tmp, split, "data.parquet"))
        with open(os.path.join(tmp, REPORT), "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, sort_keys=True)
        with open(os.path.join(tmp, MARKER), "w", encoding="utf-8") as handle:
            handle.write("written by twotower prepare; the directory is replaced on each run\n")
        old = None
        if os.path.exists(out_dir):
            old = tmp + ".old"
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        if old:
            shutil.rmtree(old)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
