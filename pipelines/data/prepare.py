"""Turns the configured CSV files into ExampleGen's input: typed Parquet splits.

The preparation is one SQL program generated from the config
(:mod:`pipelines.data.sql.program`) and run by DuckDB
(:mod:`pipelines.data.sql.duck`): out of core, on every core. Every row is
checked before anything reaches TFX (ids present and without line breaks,
timestamps and numbers parse, every interaction's candidate in the candidate
table, each candidate's features single-valued); errors name the file, the row
(its record number, header = 1) and the column. Ids are kept exactly as
written: never stripped, never re-typed.

Written under ``out_dir`` (see :mod:`pipelines.data.columns` for the types):

- ``train/``, ``eval/``, ``test/`` (with ``data.split.test_fraction``): the
  interactions, with history columns computed after the split;
- ``catalog/``: one row per servable candidate (every row of the candidate
  table, or else every candidate of the training split);
- ``eval_queries/``, ``test_queries/``: each held-out query as it stood
  before its first held-out interaction, which is what evaluation embeds;
- ``prepare.sql`` (the program that ran) and ``prepare_report.json``.

The files are written to a temporary directory and renamed into place, so a
failed run never leaves a complete-looking input; ``out_dir`` is only ever
replaced if this module created it (its marker file is there).
"""
from __future__ import annotations

from pipelines.config.schema import Config
from pipelines.data.columns import output_columns
from pipelines.data.csvfile import DataError, parse_time
from pipelines.data.output import MARKER, REPORT, SQL_FILE
from pipelines.data.sql import duck

__all__ = ["DataError", "MARKER", "REPORT", "SQL_FILE", "output_columns", "prepare",
           "parse_time", "dropped_text", "check"]


def dropped_text(report: dict) -> str:
    """What the preparation dropped, for the screen: ``""`` or ``"; dropped: ..."``.

    Reads the report's ``filter_dropped_rows``, ``weight_zero_rows`` and
    ``missing_candidate_rows`` / ``missing_candidates`` (:func:`duck.dropped`),
    each present only when the config asks for that drop (then shown even at 0).
    """
    def rows(key):
        return f"{report[key]} row{'' if report[key] == 1 else 's'}"

    parts = []
    if "filter_dropped_rows" in report:
        parts.append(f"{rows('filter_dropped_rows')} by data.filter")
    if "weight_zero_rows" in report:
        parts.append(f"{rows('weight_zero_rows')} of weight 0 (data.weight)")
    if "missing_candidate_rows" in report:
        n = report["missing_candidates"]
        parts.append(f"{rows('missing_candidate_rows')} naming {n} candidate"
                     f"{'' if n == 1 else 's'} missing from the candidate table "
                     "(data.candidates.missing: drop)")
    return "; dropped " + ", ".join(parts) if parts else ""


def check(cfg: Config) -> dict:
    """``prepare``'s checks on the configured file, writing nothing (:func:`duck.check`)."""
    if cfg.data.bigquery:
        raise DataError(f"data.bigquery ({cfg.data.bigquery}): BigQuery checks its rows when "
                        "the pipeline runs; here only a file can be checked")
    return duck.check(cfg)


def prepare(cfg: Config, out_dir: str) -> dict:
    """Writes the typed splits under ``out_dir``; returns the report (also as JSON)."""
    if cfg.data.bigquery:
        raise DataError(f"data.bigquery ({cfg.data.bigquery}) is read on Vertex AI by "
                        "BigQueryExampleGen: compile it with `twotower compile --target "
                        "vertex`; to run here, export the table to CSV and set data.path")
    return duck.prepare(cfg, out_dir)
