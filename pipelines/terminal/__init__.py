"""What a command shows on the terminal while it works: a few lines and live progress
(:mod:`.console`, :mod:`.progress`), everything else caught into the run's log on disk.

May import: ``pipelines.inspect`` (a result's reading in words) and what it may.
"""
