"""The config: its typed schema (:mod:`.schema`), reading YAML/JSON with ``--set`` overrides
(:mod:`.loading`), the generic typed parser (:mod:`.parse`) and the learning-rate rules
(:mod:`.learning_rate`).

May import: ``pipelines.version``, ``pipelines.csvsafe``, ``trainer``, ``transform``; never
TensorFlow (a config is read on every command's fast path).
"""
