"""Turns the configured CSV files into ExampleGen's input: ``train/`` and ``eval/``.

Before anything reaches TFX, every row is checked: id cells must be present,
timestamps must parse, each candidate id appears once in the candidate table,
and candidate features have one value per candidate. Errors name the file,
the row (1-based, header = row 1) and the column. Only the columns the config
uses are written, and the split is time-based or hash-based (see
:class:`~pipelines.config.SplitConfig`).
"""
from __future__ import annotations

import csv
import datetime
import json
import math
import os
import shutil
from typing import Dict, List

from pipelines.config import Config
from pipelines.splits import SPLITS, assign_splits
from transform.naming import HISTORY_PREFIX



class DataError(ValueError):
    """The data does not fit the config; the message names file, row and column."""


def _parse_time(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is not None:
        if not math.isfinite(value):
            raise DataError(f"{where}: timestamp {text!r} is not a finite number")
        return value
    iso = text.strip()
    if iso.endswith(("Z", "z")):  # Python 3.10's fromisoformat doesn't read 'Z'
        iso = iso[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(iso)
    except ValueError:
        raise DataError(f"{where}: cannot read timestamp {text!r}: use epoch seconds or "
                        "ISO 8601 (2024-05-01T10:00:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _check_number(text: str, where: str) -> None:
    """Numeric feature cells are empty (-> the feature's default) or finite numbers."""
    if text.strip() == "":
        return
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: {text!r} is not a number, but the column feeds a numeric "
                        "feature; fix the cell or declare the feature categorical") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {text!r} is not a finite number")


def _read_candidates(cfg: Config, numeric):
    table = cfg.data.candidates
    rows: Dict[str, dict] = {}
    first_row: Dict[str, int] = {}
    with open(table.path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            if None in row.values() or None in row:
                raise DataError(f"{table.path} row {number}: the number of cells differs from "
                                "the header's")
            for column in numeric:
                _check_number(row.get(column) or "", f"{table.path} row {number}, column {column!r}")
            key = (row.get(table.id) or "").strip()
            if not key:
                raise DataError(f"{table.path} row {number}: column {table.id!r} "
                                "(data.candidates.id) is empty")
            if key in rows:
                raise DataError(f"{table.path} row {number}: candidate id {key!r} appears again "
                                f"(first at row {first_row[key]}); the candidate table needs "
                                "one row per candidate")
            rows[key], first_row[key] = row, number
    return rows


def feature_columns(feature) -> List[str]:
    """Raw columns a feature reads (a history's is the prepared history column)."""
    if feature.kind == "history":
        return [HISTORY_PREFIX + feature.name]
    return [feature.column] if feature.column is not None else list(feature.columns)


def output_columns(cfg: Config) -> List[str]:
    """Columns written for ExampleGen, in a fixed order, each once."""
    d = cfg.data
    columns = [d.query_id, d.candidate_id] + ([d.timestamp] if d.timestamp else [])
    for _, feature in cfg.features():
        for column in feature_columns(feature):
            if column not in columns:
                columns.append(column)
    return columns


def _epoch(value: float) -> str:
    """Epoch seconds as written for ExampleGen: an integer when whole."""
    return str(int(value)) if value == int(value) else repr(value)


def _histories(cfg: Config, rows: List[dict], times: List[float]) -> None:
    """Adds each history feature's column: the query's earlier candidates, newest first."""
    d = cfg.data
    features = [f for t, f in cfg.features() if f.kind == "history"]
    if not features:
        return
    order = sorted(range(len(rows)), key=lambda i: (times[i] if times else 0.0, i))
    earlier: Dict[str, List[str]] = {}
    for i in order:
        row = rows[i]
        past = earlier.setdefault(row[d.query_id], [])
        for f in features:
            row[HISTORY_PREFIX + f.name] = f.separator.join(reversed(past[-f.max_length:]))
        past.append(row[d.candidate_id].strip())


def prepare(cfg: Config, out_dir: str) -> dict:
    """Writes ``out_dir/{train,eval}/data.csv``; returns a report (also as JSON)."""
    d = cfg.data
    candidate_columns = sorted({f.column for t, f in cfg.features()
                                if t == "candidate_tower" and f.column != d.candidate_id})
    numeric_columns = sorted({f.column for _, f in cfg.features() if f.kind == "numeric"})
    candidates = None
    if d.candidates:  # joined columns are checked where they live: in the candidate table
        candidates = _read_candidates(cfg, [c for c in numeric_columns if c in candidate_columns])
        numeric_columns = [c for c in numeric_columns if c not in candidate_columns]
    columns = output_columns(cfg)
    timestamp_columns = sorted({f.column for _, f in cfg.features() if f.kind == "timestamp"})
    separators = sorted({f.separator for _, f in cfg.features() if f.kind == "history"})
    rows, times, missing = [], [], 0
    seen_values: Dict[tuple, tuple] = {}
    with open(d.path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            where = f"{d.path} row {number}"
            for key in ("query_id", "candidate_id"):
                if not (row.get(getattr(d, key)) or "").strip():
                    raise DataError(f"{where}: column {getattr(d, key)!r} (data.{key}) is empty; "
                                    "every interaction needs both ids")
            if None in row.values() or None in row:
                raise DataError(f"{where}: the number of cells differs from the header's")
            cid = row[d.candidate_id].strip()
            if candidates is not None:
                attrs = candidates.get(cid)
                if attrs is None:
                    missing += 1
                for column in candidate_columns:
                    row[column] = attrs[column] if attrs is not None else ""
            else:
                for column in candidate_columns:
                    key, value = (column, cid), row[column]
                    if seen_values.setdefault(key, (value, number))[0] != value:
                        first = seen_values[key]
                        raise DataError(
                            f"{where}: candidate {cid!r} has {column!r} = {value!r}, but "
                            f"{first[0]!r} at row {first[1]}; a candidate feature must have one "
                            "value per candidate (or give a candidate table)")
            for column in numeric_columns:
                _check_number(row[column], f"{where}, column {column!r}")
            for separator in separators:
                if separator in cid:
                    raise DataError(f"{where}: candidate id {cid!r} contains the history "
                                    f"separator {separator!r}; choose another separator")
            for column in timestamp_columns:
                if column != d.timestamp and row[column].strip():
                    row[column] = _epoch(_parse_time(row[column], f"{where}, column {column!r}"))
            if d.timestamp:
                times.append(_parse_time(row[d.timestamp], f"{where}, column {d.timestamp!r}"))
                row[d.timestamp] = _epoch(times[-1])
            rows.append(row)
    _histories(cfg, rows, times)
    rows = [[row[c] for c in columns] for row in rows]
    if len(rows) < 2:
        raise DataError(f"{d.path}: {len(rows)} interaction rows; at least 2 are needed")

    labels, split_info = assign_splits(cfg, rows, columns.index(d.query_id), times)
    counts = {split: labels.count(split) for split in SPLITS}
    method = split_info["split_method"]
    wanted = SPLITS if d.split.test_fraction > 0 else SPLITS[:2]
    for split in wanted:
        if counts[split] == 0:
            raise DataError(f"{d.path}: the {method} split leaves no {split} rows; change "
                            "data.split.eval_fraction, test_fraction or method")

    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    for split in wanted:
        os.makedirs(os.path.join(out_dir, split))
        path = os.path.join(out_dir, split, "data.csv")
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(r for r, label in zip(rows, labels) if label == split)
    report = {"rows": len(rows), "train_rows": counts["train"], "eval_rows": counts["eval"],
              "columns": columns, "interactions_without_candidate_row": missing}
    report.update(split_info)
    if d.split.test_fraction > 0:
        report["test_rows"] = counts["test"]
    with open(os.path.join(out_dir, "prepare_report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, sort_keys=True)
    return report
