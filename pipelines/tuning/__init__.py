"""Hyperparameter search (``twotower tune``): the search command's work and the tuned config
it writes. Imports ``config`` (the ``tuning:`` section, ``config.tuning``, and its rules,
``config.tuning_rules``), ``build`` (the Tuner step, ``build.tuner``), ``runners`` and
``validate``; the trials themselves run in :mod:`trainer.tuning`."""
