"""The user's data and the files twotower writes: the columns a config reads, CSV and
Parquet reading, the data preparation (the DuckDB/BigQuery SQL program, :mod:`.sql`),
synthetic purchases, and the write-then-rename rules for files the user names.

May import: ``pipelines.config``, ``pipelines.csvsafe``, ``trainer``, ``transform``.
"""
