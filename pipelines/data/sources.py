"""What a config reads: a file or a BigQuery table each, and the columns it names in them."""
from __future__ import annotations

import os
import shlex
from typing import List

from pipelines.config.loading import DEMO_CONFIG, read_raw
from pipelines.config.schema import Config, ConfigError
from pipelines.data import textcheck
from pipelines.data.csvfile import DataError
from pipelines.data.sql.bigquery import table_problems
from pipelines.data.sql.duck import header as parquet_header
from pipelines.data.textcheck import repeated_message
from transform.kinds import kind_of


def source_problems(d) -> List[tuple]:
    """The interactions and the candidate table: one file each, or one BigQuery table each."""
    out = []
    if bool(d.path) == bool(d.bigquery):
        out.append(("data.path", "give the interactions as data.path (a CSV file) or as "
                    "data.bigquery (project.dataset.table), one of the two"))
    if d.bigquery:
        out += table_problems(d.bigquery, "data.bigquery")
    t = d.candidates
    if t is not None:
        if bool(t.path) == bool(t.bigquery):
            out.append(("data.candidates.path", "give the candidate table as path (a CSV "
                        "file) or as bigquery (project.dataset.table), one of the two"))
        elif bool(t.bigquery) != bool(d.bigquery):
            out.append(("data.candidates." + ("bigquery" if t.bigquery else "path"),
                        "the candidate table must be read where the interactions are: "
                        + ("a BigQuery table, as data.bigquery is" if d.bigquery
                           else "a file, as data.path is")))
        if t.bigquery:
            out += table_problems(t.bigquery, "data.candidates.bigquery")
    return out


def configured_columns(cfg: Config) -> List[tuple]:
    """``(key, column)`` for every raw column the config names."""
    d = cfg.data
    out = [(f"data.{k}", getattr(d, k)) for k in ("query_id", "candidate_id", "timestamp")
           if getattr(d, k)]
    if d.candidates is not None:
        out.append(("data.candidates.id", d.candidates.id))
    out += interaction_only(cfg)
    for tower in ("query_tower", "candidate_tower"):
        for i, f in enumerate(getattr(cfg, tower).features):
            key = f"{tower}.features.{i}"
            if f.column:
                out.append((f"{key}.column", f.column))
            out += [(f"{key}.columns.{j}", c) for j, c in enumerate(f.columns or [])]
    return out


def interaction_only(cfg: Config) -> List[tuple]:
    """``(key, column)`` of the columns read from the interactions alone: data.filter's and
    data.weight (never the candidate table's)."""
    d = cfg.data
    out = [(f"data.filter.{i}.column", f.column) for i, f in enumerate(d.filter)
           if isinstance(f.column, str) and f.column]
    return out + ([("data.weight", d.weight)] if d.weight else [])


def demo_data_hint(path: str) -> str:
    """For a missing file that is one of the demo config's own data files (a fresh clone,
    before `twotower demo` or `twotower synth` wrote them): what to run, else ''."""
    if not os.path.isfile(DEMO_CONFIG):
        return ""
    data = read_raw(DEMO_CONFIG)["data"]
    demo = [data["path"], data["candidates"]["path"]]
    if os.path.abspath(path) not in {os.path.abspath(p) for p in demo}:
        return ""
    folder = os.path.dirname(data["path"])
    return (f": the demo's synthetic data, not written yet; run `twotower demo` (writes it, "
            f"then runs the demo) or `twotower synth --out {shlex.quote(folder)}` (writes it "
            "only) in this folder first")


def read_header(path: str, key: str) -> List[str]:
    """The column names of a CSV (its first row) or Parquet file; ConfigError naming ``key``
    if unreadable."""
    if not os.path.isfile(path):
        raise ConfigError([(key, f"file not found: {path}" + demo_data_hint(path))])
    if path.lower().endswith((".parquet", ".pq")):
        try:
            return parquet_header(path)
        except DataError as exc:
            raise ConfigError([(key, str(exc))]) from None

    try:  # only the header record's bytes: a bad byte in row 42 is row 42's, found later
        header = textcheck.header(path)
    except DataError as exc:
        raise ConfigError([(key, str(exc))]) from None
    if not header:
        raise ConfigError([(key, f"{path} is empty: a CSV with a header row is needed")])
    return header


def check_columns(cfg: Config) -> None:
    d = cfg.data
    header = read_header(d.path, "data.path")

    problems = []
    if repeated_message(d.path, header):
        problems.append(("data.path", repeated_message(d.path, header)))
    for key in ("query_id", "candidate_id", "timestamp"):
        col = getattr(d, key)
        if col is not None and col not in header:
            problems.append((f"data.{key}", f"column {col!r} is not in {d.path} "
                             f"(columns: {header})"))
    for key, col in interaction_only(cfg):
        if col not in header:
            problems.append((key, f"column {col!r} is not in {d.path} (columns: {header}); "
                             "data.filter and data.weight read the interaction file"))
    table = []
    if d.candidates is not None:
        table = read_header(d.candidates.path, "data.candidates.path")
        if repeated_message(d.candidates.path, table):
            problems.append(("data.candidates.path", repeated_message(d.candidates.path, table)))
        if d.candidates.id not in table:
            problems.append(("data.candidates.id", f"column {d.candidates.id!r} is not in "
                             f"{d.candidates.path} (columns: {table})"))
        both = sorted(set(header) & set(table) - {d.candidate_id, d.candidates.id})
        if both:
            problems.append(("data.candidates.path", f"column(s) {both} are in both files; "
                             "rename them in one so that each feature has one source"))
    for tower, f in cfg.features():
        i = getattr(cfg, tower).features.index(f)
        key = f"{tower}.features.{i}.column" + ("s" if kind_of(f.__dict__).reads == "columns" else "")
        for column in ([f.column] if f.column else f.columns):
            if (tower == "candidate_tower" and d.candidates is not None
                    and column != d.candidate_id):
                if column not in table:
                    problems.append((key, f"column {column!r} is not in the candidate table "
                                     f"{d.candidates.path} (columns: {table})"))
            elif column not in header:
                problems.append((key, f"column {column!r} is not in {d.path} "
                                 f"(columns: {header})"))
    if problems:
        raise ConfigError(problems)
