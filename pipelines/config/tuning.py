"""The ``tuning:`` section's schema (typed dataclasses; no TensorFlow).

``space`` maps a tunable key (:data:`trainer.tuning_space.TUNABLE`) to a
range (``min``/``max``, on a log scale when ``log``) or a list of ``values``;
an empty ``space`` searches the default space around the config's own values
(:func:`pipelines.config.tuning_rules.default_space`). Semantic rules live in
:mod:`pipelines.config.tuning_rules`.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional


@dataclasses.dataclass
class RangeConfig:
    """One parameter's search range: ``min`` and ``max``, or ``values`` to choose among."""
    min: Optional[float] = None
    max: Optional[float] = None
    log: Optional[bool] = None          # null: the parameter's own scale (TUNABLE's "log")
    values: List[float] = dataclasses.field(default_factory=list)
    # training.learning_rate only: min and max from `twotower lr-check`'s recorded report
    # (pipelines.config.learning_rate.lr_check_range), resolved when the search is set up.
    from_lr_check: bool = False


@dataclasses.dataclass
class TuningConfig:
    """The search: its space, how many trials, which algorithm, and its validation slice."""
    space: Dict[str, RangeConfig] = dataclasses.field(default_factory=dict)
    trials: int = 8
    algorithm: str = "hyperband"        # random | bayesian | hyperband (successive halving)
    max_epochs: int = 3                 # epochs of the longest trial
    parallel: int = 1                   # trials at once (Vertex AI; a local search runs one)
    seed: int = 42
    # The last part of train by time the trials are scored on (never eval, never test).
    validation_fraction: float = 0.1
