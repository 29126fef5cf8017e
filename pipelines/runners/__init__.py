"""Running the built pipeline: here with LocalDagRunner (:mod:`.local`, with its lock,
scratch folder, ML Metadata and record readers), compiled for Vertex AI (:mod:`.compile`),
submitted (:mod:`.vertex`), and the learning-rate range test (:mod:`.lrcheck`).

May import: ``pipelines.config``, ``pipelines.data``, ``pipelines.vertex``,
``pipelines.build``, ``trainer``, ``transform``.
"""
