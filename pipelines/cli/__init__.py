"""The ``twotower`` command: its parser (:mod:`.main`), one module per group of commands
(:mod:`.commands`, which call :mod:`pipelines.api` where the library does the same) and
every error as one line (:mod:`.errors`).

May import: every other part of ``pipelines``.
"""
