"""What a run shows: its results in words (:mod:`.verdict`), the HTML report
(:mod:`.report`), every run under a root (:mod:`.runs`), and the towers' sizes before
anything runs (:mod:`.summary`).

May import: everything below it (``pipelines.config`` to ``pipelines.runners``),
``trainer``, ``transform``.
"""
