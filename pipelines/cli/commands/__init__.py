"""The ``twotower`` commands, grouped by what they touch (files, the local pipeline, a
finished run, Vertex AI, a deployed index); :mod:`pipelines.cli.main` dispatches to them.

May import: what :mod:`pipelines.cli` may.
"""
