"""The data preparation as one SQL program: built from the config as identifiers and
literals (:mod:`.template`), run by DuckDB here (:mod:`.duck`) or written for BigQuery
(:mod:`.bigquery`).

May import: ``pipelines.config``, the rest of ``pipelines.data``, ``transform``.
"""
