"""twotower's pipeline side: one YAML config in, TFX pipelines out (run here or on Vertex AI).

Subpackages by job, each importing only those listed before it (the runtime packages
``trainer`` and ``transform`` below them all; tests/test_import_graph.py checks the order):

- ``version``, ``csvsafe``: the library version; spreadsheet-safe CSV cells (no imports).
- ``config``: the typed config, its reading and parsing, the learning-rate and tuning rules.
- ``data``: the user's data: columns, CSV and Parquet reading, the DuckDB/BigQuery SQL
  program that prepares the splits, synthetic data, and the files twotower writes.
- ``vertex``: Google Cloud's rules as data, the Vertex AI checks, the training image,
  Vector Search, the serving container's server, BigQuery dry runs, ``gs://`` on disk.
- ``build``: the TFX pipeline (components, Beam arguments, push gate) and the generated
  Transform/Trainer modules.
- ``runners``: running it here (LocalDagRunner), compiling it for Vertex AI, submitting it.
- ``inspect``: what a run shows: results, report, the runs list, tower sizes.
- ``terminal``: the few lines and live progress on the terminal, the rest in a log.
- ``local_paths``, ``validate``, ``recommend``: a config's local paths; semantic
  validation; recommendations from a trained model.
- ``tuning``: the hyperparameter search (``twotower tune``) and the tuned config it writes
  (the section itself is ``config.tuning``, its rules ``config.tuning_rules``, the Tuner
  step ``build.tuner``; the trials run in :mod:`trainer.tuning`).
- ``api``: what the commands do, as functions (a notebook's, and the commands' own).
- ``cli``: the ``twotower`` command on top.
"""
