"""The ``twotower`` command: its parser (:mod:`.main`), one module per group of commands
(:mod:`.commands`), the quiet terminal and its log (:mod:`.console`, :mod:`.progress`), and
every error as one line (:mod:`.errors`).

May import: every other part of ``pipelines`` except ``api``.
"""
