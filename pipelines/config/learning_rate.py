"""The learning-rate rules for a config: which rates collapse a tower's gradients.

A high rate with Adam, or with a deep tower (3 or more dense layers, the output
layer included), drives gradients to zero after the first epoch: loss flat,
recall 0. The ceiling is one rule (:func:`trainer.parameters.rate_ceiling`, reading
:func:`trainer.parameters.collapses`; the advice here reads the same two),
shared with ``submit --param`` and the Trainer (it checks a runtime
learning_rate against the ceiling carried in the generated module's META).
Validation refuses a rate above it unless ``allow_risky_learning_rate``, which
turns the refusal into a warning.
"""
from __future__ import annotations

import math
from typing import List

from pipelines.config.schema import Config
from trainer.parameters import SAFE_LEARNING_RATE, collapses, rate_ceiling


def tower_depth(cfg: Config, tower: str) -> int:
    return len(getattr(cfg, tower).layers) + 1


def depth(cfg: Config) -> int:
    """The deeper tower's dense layers, its output layer included."""
    return max(tower_depth(cfg, "query_tower"), tower_depth(cfg, "candidate_tower"))


def learning_rate_ceiling(cfg: Config):
    """The highest rate this config accepts (None: any rate in range), as everywhere else."""
    t = cfg.training
    return rate_ceiling(t.optimizer, depth(cfg), t.allow_risky_learning_rate)


def learning_rate_advice(cfg: Config) -> List[str]:
    """Reasons why the configured learning rate is risky; empty when it is not.

    Risky means above :func:`rate_ceiling` without ``allow_risky_learning_rate``
    (validation refuses it, or warns when the config allows risky rates).
    """
    t = cfg.training
    lr, opt = t.learning_rate, t.optimizer
    if not isinstance(lr, float) or not math.isfinite(lr) or opt not in SAFE_LEARNING_RATE:
        return []
    layers = depth(cfg)
    ceiling = rate_ceiling(opt, layers, allow_risky=False)
    if lr <= ceiling:
        return []
    if collapses(opt, layers):
        return [f"learning rate {lr:g} is risky for {opt} with {layers}-layer towers: gradients "
                f"can collapse to zero after the first epoch (loss flat, recall 0); recommended "
                f"range {ceiling / 100:g}..{ceiling:g} (measure with `twotower lr-check`); set "
                "training.allow_risky_learning_rate: true to run it anyway"]
    return [f"learning rate {lr:g} is far above the usual range for {opt} (recommended at "
            f"most {SAFE_LEARNING_RATE[opt]:g}, refused above {ceiling:g}); set "
            "training.allow_risky_learning_rate: true to run it anyway"]
