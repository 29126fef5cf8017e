"""The learning-rate rules: which rates collapse a tower's gradients, and the ceiling.

A high rate with Adam, or with a deep tower (3 or more dense layers, the output
layer included), drives gradients to zero after the first epoch: loss flat,
recall 0. Validation refuses such a rate unless ``allow_risky_learning_rate``;
the Trainer checks a runtime learning_rate (Vertex AI parameters) against the same
ceiling, carried in the generated module's META.
"""
from __future__ import annotations

import math
from typing import List

from pipelines.config import Config


# Ceilings above which a run is refused unless forced: in the field, Adagrad at 0.1
# with a 3-4 layer tower collapsed to zero gradients after one epoch, and the same
# model learned at 0.01.
SAFE_LR = {"adam": 0.01, "adagrad": 0.05, "sgd": 0.05}
DEEP_TOWER = 3  # dense layers, output layer included


def tower_depth(cfg: Config, tower: str) -> int:
    return len(getattr(cfg, tower).layers) + 1


def learning_rate_ceiling(cfg: Config):
    """The highest rate accepted without ``allow_risky_learning_rate``; None if unbounded."""
    opt = cfg.training.optimizer
    if cfg.training.allow_risky_learning_rate or opt not in SAFE_LR:
        return None
    depth = max(tower_depth(cfg, "query_tower"), tower_depth(cfg, "candidate_tower"))
    return SAFE_LR[opt] if (opt == "adam" or depth >= DEEP_TOWER) else None


def learning_rate_advice(cfg: Config) -> List[str]:
    """Reasons why the configured learning rate is risky; empty when it is not."""
    t = cfg.training
    lr, opt = t.learning_rate, t.optimizer
    if not isinstance(lr, float) or not math.isfinite(lr) or opt not in SAFE_LR:
        return []
    depth = max(tower_depth(cfg, "query_tower"), tower_depth(cfg, "candidate_tower"))
    ceiling = SAFE_LR[opt]
    reasons = []
    if lr > ceiling and (opt == "adam" or depth >= DEEP_TOWER):
        reasons.append(
            f"learning rate {lr:g} is risky for {opt} with {depth}-layer towers: gradients can "
            f"collapse to zero after the first epoch (loss flat, recall 0); recommended range "
            f"{ceiling / 100:g}..{ceiling:g} (measure with `twotower lr-check`); set "
            "training.allow_risky_learning_rate: true to run it anyway")
    elif lr > 0.5:
        reasons.append(f"learning rate {lr:g} is far above the usual range for {opt} "
                       f"(recommended at most {ceiling:g})")
    return reasons
