"""Learning-rate range test: a few hundred training steps at each of several rates.

``twotower lr-check`` runs :func:`probe_rates` on the Transform output of the
user's own data. Each rate trains a fresh model (same seed, same batches) with
the configured optimizer, clipping and collapse monitor, and is judged by its
training loss and its per-tower gradient norms:

- ``diverged``: the loss or a gradient norm became NaN/Inf, or the loss ended
  higher than it started;
- ``collapsed``: the collapse monitor stopped it (gradient norms at ~0);
- ``flat``: the loss fell by less than ``FLAT`` (relative) over the steps;
- ``ok``: otherwise.

The recommended rate is the ``ok`` rate with the lowest final loss among the
rates allowed by the caller's ceiling (the learning-rate validation rule).
Not part of the generated modules.
"""
import copy
import math

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from trainer.data import make_dataset
from trainer.model import make_optimizer, require_legacy_keras
from trainer.monitoring import CollapseMonitor
from trainer.parameters import HEALTHY_RATE
from trainer.build import build_model
from trainer.inputs import load_inputs

FLAT = 0.01
HEALTHY = HEALTHY_RATE


class StepLog(tf.keras.callbacks.Callback):
    """Keeps every training step's loss and per-tower gradient norms."""

    def __init__(self):
        super().__init__()
        self.loss, self.query, self.candidate = [], [], []

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self.loss.append(float(logs["batch_loss"]))
        self.query.append(float(logs["query_grad_norm"]))
        self.candidate.append(float(logs["candidate_grad_norm"]))


def loss_slope(losses):
    """Least-squares slope of the finite losses, in loss units per 100 steps.

    >>> loss_slope([3.0, 2.0, 1.0])
    -100.0
    """
    values = np.asarray(losses, dtype=np.float64)
    steps = np.arange(len(values), dtype=np.float64)
    keep = np.isfinite(values)
    if keep.sum() < 2:
        return None
    slope = np.polyfit(steps[keep], values[keep], 1)[0]
    return float(slope * 100.0)


def _norm_stats(norms):
    arr = np.asarray(norms, dtype=np.float64)
    if not len(arr):
        return {"median": None, "max": None, "last": None}
    return {"median": float(np.median(arr)), "max": float(np.max(arr)), "last": float(arr[-1])}


def summarize(rate, losses, query_norms, candidate_norms, stopped=None):
    """Judges one rate from its per-step logs (see the module docstring).

    Args:
      rate: the learning rate tried.
      losses, query_norms, candidate_norms: per-step values, ``[steps]``.
      stopped: the collapse monitor's ``record['stopped']``, or None.

    Returns:
      A dict with ``rate, status, steps, first_loss`` (the first step's, taken
      before any update: the same for every rate, as the seed and batches are),
      ``last_loss`` (mean of the last 20% of steps), ``slope_per_100_steps``,
      ``grad_norm`` per tower and ``message``.
    """
    steps = len(losses)
    tail = max(1, steps // 5)
    first = float(losses[0]) if steps else math.nan
    last = float(np.mean(losses[-tail:])) if steps else math.nan
    every = list(losses) + list(query_norms) + list(candidate_norms)
    if stopped and stopped["reason"] == "gradient_collapse":
        status, message = "collapsed", stopped["message"]
    elif (stopped or not steps or not all(math.isfinite(v) for v in every)
          or not math.isfinite(last)):
        status = "diverged"
        message = stopped["message"] if stopped else "loss or gradient norms not finite"
    elif last > first:
        status, message = "diverged", f"loss rose from {first:.4g} to {last:.4g}"
    elif (first - last) < FLAT * abs(first):
        status, message = "flat", f"loss barely moved ({first:.4g} -> {last:.4g})"
    else:
        status, message = HEALTHY, f"loss {first:.4g} -> {last:.4g}"
    return {"rate": rate, "status": status, "steps": steps, "first_loss": first,
            "last_loss": last, "slope_per_100_steps": loss_slope(losses),
            "grad_norm": {"query": _norm_stats(query_norms),
                          "candidate": _norm_stats(candidate_norms)},
            "message": message}


def recommend(results, ceiling=None):
    """Picks a rate from :func:`summarize` results.

    Args:
      results: one summary per rate.
      ceiling: the highest rate the validation rules accept without
        ``training.allow_risky_learning_rate``, or None for no limit.

    Returns:
      ``(rate or None, reason)``: the healthy, allowed rate with the lowest
      final loss, and a sentence saying why (or why there is none).
    """
    healthy = [r for r in results if r["status"] == HEALTHY]
    allowed = [r for r in healthy if ceiling is None or r["rate"] <= ceiling * (1 + 1e-9)]
    if not allowed:
        if healthy:
            return None, (f"only rates above the safe limit {ceiling:g} trained healthily; "
                          "use fewer dense layers, or set training.allow_risky_learning_rate "
                          "and watch the collapse monitor")
        return None, ("no rate trained healthily (each diverged, collapsed or stayed flat); "
                      "check the features, try lower rates with --rates, or fewer layers")
    best = min(allowed, key=lambda r: (r["last_loss"], r["rate"]))
    reason = (f"lowest loss after {best['steps']} steps among healthy rates "
              f"({best['first_loss']:.4g} -> {best['last_loss']:.4g})")
    better = [r for r in healthy if r not in allowed and r["last_loss"] < best["last_loss"]]
    if better:
        reason += (f"; {better[0]['rate']:g} reached a lower loss but is above the safe "
                   f"limit {ceiling:g} for this optimizer and depth")
    return best["rate"], reason


def probe_rate(spec, tft_output, inputs, train_files, rate, steps):
    """Trains a fresh model for ``steps`` steps at ``rate``; returns :func:`summarize`."""
    spec = copy.deepcopy(spec)
    training = spec["training"]
    training["learning_rate"] = rate
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(training["seed"])
    model = build_model(spec, tft_output, inputs)["model"]
    model.compile(optimizer=make_optimizer(training))
    record = {"stopped": None}
    log = StepLog()
    monitor = CollapseMonitor(training["collapse_patience"], training["collapse_threshold"],
                              record, rate, ratio=training["collapse_ratio"])
    dataset = make_dataset(train_files, inputs["feature_spec"], training["batch_size"],
                           shuffle=True, seed=training["seed"],
                           positions=inputs["positions"]).repeat()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[log, monitor], verbose=0)
    return summarize(rate, log.loss, log.query, log.candidate, record["stopped"])


def probe_rates(spec, files, transform_dir, rates, steps, ceiling=None, log=print):
    """Runs :func:`probe_rate` for each rate; returns ``{'results', 'recommended', 'reason'}``.

    ``files``: ``{split: file patterns}`` with at least the train and catalog splits.
    """
    require_legacy_keras()
    tft_output = tft.TFTransformOutput(transform_dir)
    inputs = load_inputs(spec, tft_output, files)
    results = []
    for rate in rates:
        result = probe_rate(spec, tft_output, inputs, files["train"], rate, steps)
        log(f"rate {rate:g}: {result['status']} ({result['message'][:120]})")
        results.append(result)
    rate, reason = recommend(results, ceiling)
    return {"optimizer": spec["training"]["optimizer"], "steps": steps, "ceiling": ceiling,
            "results": results, "recommended": rate, "reason": reason}
