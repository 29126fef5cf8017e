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

import json
import math
import os
from typing import List, Optional, Tuple

from pipelines.config.schema import Config, pipeline_folder
from trainer.parameters import HEALTHY_RATE, SAFE_LEARNING_RATE, collapses, rate_ceiling

# `twotower lr-check` writes its report here, under the pipeline's folder.
LR_CHECK_FOLDER, LR_CHECK_FILE = "lr_check", "lr_check.json"


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


def lr_check_file(cfg: Config) -> str:
    """Where `twotower lr-check` recorded its report for this config's pipeline."""
    return os.path.join(pipeline_folder(cfg), LR_CHECK_FOLDER, LR_CHECK_FILE)


def lr_check_range(cfg: Config) -> Tuple[Optional[Tuple[float, float]], str]:
    """The learning-rate range lr-check's recorded report found: ``((min, max), '')``, or
    ``(None, the one-line problem)``.

    The range spans the rates the probe trained well at (status ``ok``) and the config
    accepts (at most :func:`learning_rate_ceiling`): from the lowest to the highest of
    them, each to three significant digits; a single healthy rate ``r`` gives ``r/3..r``
    (the probe's rates are about 3x apart). A report measured with another optimizer is
    refused: it says nothing about this one.
    """
    path = lr_check_file(cfg)
    run = f"run `twotower lr-check --config <this config>` first (it writes {path})"
    if not os.path.isfile(path):
        return None, f"from_lr_check: no lr-check report for pipeline {cfg.pipeline.name!r}; {run}"
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
        results, optimizer = report["results"], report["optimizer"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"from_lr_check: {path} is not an lr-check report ({exc}); {run}"
    if optimizer != cfg.training.optimizer:
        return None, (f"from_lr_check: the recorded lr-check measured {optimizer}, the config "
                      f"trains with {cfg.training.optimizer}; {run}")
    ceiling = learning_rate_ceiling(cfg)
    healthy = sorted(float(r["rate"]) for r in results if r.get("status") == HEALTHY_RATE
                     and (ceiling is None or float(r["rate"]) <= ceiling))
    if not healthy:
        tried = ", ".join(f"{r['rate']:g} {r.get('status')}" for r in results)
        return None, (f"from_lr_check: no rate the config accepts trained well in {path} "
                      f"({tried}); run lr-check with other --rates, or give min and max")
    low, high = healthy[0], healthy[-1]
    if low == high:
        low = high / 3
    return (float(f"{low:.3g}"), float(f"{high:.3g}")), ""
