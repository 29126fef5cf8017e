"""Hyperparameter search (``tuning:``, ``twotower tune``): the config section, its rules, the
search command and the tuned config it writes. The search's runtime is :mod:`trainer.tuning`."""
