"""Callbacks that watch training: gradient collapse, non-finite loss, a record.

Each callback keeps its own state and only reads the step's logs, so their
order can't make one reset statistics another one needs. Both write into one
``record`` dict (the future ``training_metrics.json``), each under its own keys.

Part of the runtime the generated Trainer module imports.
"""
import logging
import math
import os
import time

import numpy as np
import tensorflow as tf


class TrainingStopped(RuntimeError):
    """Training was stopped by a monitor; the message says why and what to change."""


class CollapseMonitor(tf.keras.callbacks.Callback):
    """Stops training when both towers' gradient norms stay at ~0, or the loss is not finite.

    Reads ``batch_loss``, ``query_grad_norm`` and ``candidate_grad_norm`` from
    each training step's logs. A tower's norm counts as ~0 when it is at most
    ``threshold``, or at most ``ratio`` times that tower's reference norm
    (15,000 falling to 1e-3 is a collapse even if not exactly 0). The
    reference is the highest median of ``WINDOW`` consecutive steps, so a
    spike in the first steps (common: L2 normalisation of tiny initial
    outputs) can't make ordinary norms look collapsed. After
    ``patience`` consecutive steps with both towers at ~0 it sets
    ``stop_training`` and writes ``record['stopped']``; the caller raises
    :class:`TrainingStopped`.
    """

    WINDOW = 10

    def __init__(self, patience, threshold, record, learning_rate, ratio=0.0):
        super().__init__()
        self.patience = patience
        self.threshold = threshold
        self.ratio = ratio
        self.record = record
        self.learning_rate = learning_rate
        self.step = 0
        self.epoch = 0
        self.streak = 0
        self.peaks = [0.0, 0.0]
        self.recent = ([], [])

    def observe(self, norms):
        """Adds one step's norms; updates each tower's reference (peak rolling median)."""
        for tower, norm in enumerate(norms):
            recent = self.recent[tower]
            recent.append(norm)
            del recent[:-self.WINDOW]
            if len(recent) == self.WINDOW:
                self.peaks[tower] = max(self.peaks[tower], float(np.median(recent)))

    def collapsed(self, norm, tower):
        """A tower's norm is ~0: at most ``threshold``, or ``ratio`` x its reference."""
        return norm <= max(self.threshold, self.ratio * self.peaks[tower])

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self.step += 1
        loss = float(logs["batch_loss"])
        norms = (float(logs["query_grad_norm"]), float(logs["candidate_grad_norm"]))
        if not math.isfinite(loss) or not all(math.isfinite(n) for n in norms):
            what = (f"loss became {loss}" if not math.isfinite(loss) else
                    f"gradient norms became {norms[0]} (query) and {norms[1]} (candidate)")
            self._stop("non_finite_loss", (
                f"{what} at step {self.step} (epoch {self.epoch + 1}): likely causes "
                f"are a learning rate too high for the optimizer (now {self.learning_rate:g}), "
                "clipping switched off, or a numeric feature with extreme values; lower "
                "training.learning_rate or use transform: log on heavy-tailed numerics"))
            return
        self.observe(norms)
        both = self.collapsed(norms[0], 0) and self.collapsed(norms[1], 1)
        self.streak = self.streak + 1 if both else 0
        if self.streak >= self.patience:
            self._stop("gradient_collapse", (
                f"gradients collapsed: both towers' gradient norms stayed at ~0 (now "
                f"{norms[0]:.3g} and {norms[1]:.3g}, typical peaks {self.peaks[0]:.3g} and "
                f"{self.peaks[1]:.3g}) for {self.streak} steps (step {self.step}, epoch "
                f"{self.epoch + 1}); the model has stopped learning. This is what a learning "
                f"rate too high for the tower depth does (now {self.learning_rate:g}): lower "
                "training.learning_rate 10x (`twotower lr-check` measures rates), or use "
                "fewer dense layers"))

    def _stop(self, reason, message):
        self.record["stopped"] = {"reason": reason, "step": self.step, "epoch": self.epoch + 1,
                                  "message": message}
        self.record["collapse_detected"] = reason == "gradient_collapse"
        self.model.stop_training = True


def _stats(values):
    if not values:
        return {"min": None, "mean": None, "max": None, "last": None}
    arr = np.asarray(values, dtype=np.float64)
    return {"min": float(arr.min()), "mean": float(arr.mean()), "max": float(arr.max()),
            "last": float(arr[-1])}


def weight_norm(model):
    """Global L2 norm of a Keras model's trainable weights."""
    return float(tf.linalg.global_norm(model.trainable_variables).numpy())


PROGRESS_LOGGER = "twotower.progress"  # a run's terminal shows these lines (pipelines/console)
DETAIL_LOGGER = "twotower.detail"  # the log only


def epoch_line(entry, epochs=None):
    """One line for an epoch: loss, the first recall beside popularity's, norms, clipping."""
    parts = [f"epoch {entry['epoch']}" + (f"/{epochs}" if epochs else "")
             + (f": loss {entry['loss']:.4f}" if entry.get("loss") is not None else ":")]
    recalls = sorted((int(k.rsplit("_", 1)[1]), k) for k in entry["eval"]
                     if k.startswith("full_catalog/recall_at_"))
    if recalls:
        k, key = recalls[0]
        popular = entry["eval"].get(f"full_catalog/popularity_recall_at_{k}")
        parts.append(f"recall@{k} {entry['eval'][key]:.3f}"
                     + (f" (popularity {popular:.3f})" if popular is not None else ""))
    norms = entry.get("grad_norm") or {}
    if all((norms.get(t) or {}).get("mean") is not None for t in ("query", "candidate")):
        parts.append(f"grad norm query {norms['query']['mean']:.3g} candidate "
                     f"{norms['candidate']['mean']:.3g}")
    if entry.get("clip_rate"):
        parts.append(f"clipped {entry['clip_rate']:.0%}")
    if entry.get("seconds") is not None:
        parts.append(f"{entry['seconds']:.0f} s")
    return ", ".join(parts)


SCALARS_EVERY = 10  # training steps between two TensorBoard points of the step scalars
STEP_SCALARS = "steps"  # their folder under the run's logs/ (logs/train: Keras' own)


class MetricsRecorder(tf.keras.callbacks.Callback):
    """Appends one entry per epoch to ``record['epochs']``; writes TensorBoard scalars.

    An entry has the epoch's mean loss, the eval metrics (``val_`` logs),
    per-tower and global gradient-norm statistics over the epoch's steps
    (before clipping), the share of steps whose gradients clipping changed
    (``clip_rate``), per-tower weight norms at the epoch's end and the
    learning rate, the epoch's ``seconds`` and ``train_seconds`` (its steps alone,
    without the evaluation after them).

    With ``log_dir``, TensorBoard scalars go to ``log_dir/steps``: every
    ``every`` steps (x axis: the global step) ``step/loss``, ``step/grad_norm/<tower>``
    (the mean of those steps' norms, before clipping), ``step/clip_rate`` (the share
    of those steps clipped) and ``step/learning_rate``; at each epoch's end (x axis:
    the epoch, from 1) the same under ``epoch/`` with the epoch entry's values.
    """

    def __init__(self, record, towers, log_dir=None, every=SCALARS_EVERY, every_epoch=True):
        super().__init__()
        self.record = record
        # False (a refit: no held-out split to watch): the terminal gets the last epoch's
        # line only; every epoch's line still goes to the log
        self.every_epoch = every_epoch
        self.towers = towers
        self.norms = {name: [] for name in list(towers) + ["global"]}
        self.clipped = []
        self.record.setdefault("epochs", [])
        self.every, self.step, self.window = max(1, int(every)), 0, []
        self.writer = (tf.summary.create_file_writer(os.path.join(log_dir, STEP_SCALARS))
                       if log_dir else None)

    def _learning_rate(self):
        return float(tf.keras.backend.get_value(self.model.optimizer.learning_rate))

    def _scalars(self, prefix, step, values):
        """Writes ``{name: value}`` under ``prefix/`` at ``step`` (None values skipped)."""
        if self.writer is None:
            return
        with self.writer.as_default():
            for name, value in values.items():
                if value is not None and math.isfinite(value):
                    tf.summary.scalar(f"{prefix}/{name}", value, step=step)
        self.writer.flush()

    def on_epoch_begin(self, epoch, logs=None):
        self.norms = {name: [] for name in list(self.towers) + ["global"]}
        self.clipped = []
        self.started = self.trained = time.time()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        for name in self.towers:
            self.norms[name].append(float(logs[f"{name}_grad_norm"]))
        self.norms["global"].append(float(logs["grad_norm"]))
        self.clipped.append(float(logs["clipped"]))
        self.step += 1
        self.trained = time.time()  # the epoch's training ends at its last step's end
        self.window.append([float(logs["batch_loss"]), float(logs["clipped"])]
                           + [float(logs[f"{name}_grad_norm"]) for name in self.towers])
        if self.step % self.every == 0:
            means = np.mean(np.asarray(self.window, dtype=np.float64), axis=0)
            self.window = []
            values = {"loss": means[0], "clip_rate": means[1],
                      "learning_rate": self._learning_rate()}
            values.update({f"grad_norm/{name}": means[2 + i]
                           for i, name in enumerate(self.towers)})
            self._scalars("step", self.step, values)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.record["epochs"].append({
            "epoch": epoch + 1,
            "loss": float(logs["loss"]) if "loss" in logs else None,
            "eval": {k[4:]: float(v) for k, v in sorted(logs.items()) if k.startswith("val_")},
            "grad_norm": {name: _stats(v) for name, v in self.norms.items()},
            "clip_rate": float(np.mean(self.clipped)) if self.clipped else None,
            "weight_norm": {name: weight_norm(m) for name, m in self.towers.items()},
            "learning_rate": self._learning_rate(),
            "steps": len(self.clipped),
            "seconds": time.time() - getattr(self, "started", time.time()),
            # the steps alone: the eval split's metrics and the held-out pass left out
            "train_seconds": getattr(self, "trained", 0.0) - getattr(self, "started", 0.0),
        })
        entry = self.record["epochs"][-1]
        values = {"loss": entry["loss"], "clip_rate": entry["clip_rate"],
                  "learning_rate": entry["learning_rate"]}
        values.update({f"grad_norm/{name}": entry["grad_norm"][name]["mean"]
                       for name in self.towers})
        self._scalars("epoch", epoch + 1, values)
        epochs = (getattr(self, "params", None) or {}).get("epochs")  # set by fit()
        line = epoch_line(self.record["epochs"][-1], epochs)
        if self.every_epoch or epoch + 1 == epochs:
            logging.getLogger(PROGRESS_LOGGER).info(
                line + ("" if self.every_epoch or epoch == 0 else
                        f" (epochs 1-{epoch}: in the log)"))
        else:
            logging.getLogger(DETAIL_LOGGER).info(line)


STEPS_LOGGER = "twotower.progress.steps"  # a run's terminal draws a step bar (pipelines/progress)


class StepProgress(tf.keras.callbacks.Callback):
    """Reports each training step to ``STEPS_LOGGER`` (at most ``per_second`` a second).

    A record's ``step`` attribute is ``(epoch, epochs, step, steps)``: epoch from 1, the
    step within it, and the steps per epoch (from ``fit``, else the first epoch's count, else
    None). Silent unless a handler listens on that logger: nothing is logged per step
    anywhere else.
    """

    def __init__(self, per_second=10.0):
        super().__init__()
        self.gap, self.sent, self.known = 1.0 / per_second, 0.0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.count = epoch + 1, 0

    def on_train_batch_end(self, batch, logs=None):
        self.count = batch + 1
        logger = logging.getLogger(STEPS_LOGGER)
        now = time.monotonic()
        if not logger.handlers or now - self.sent < self.gap:
            return
        self.sent = now
        params = getattr(self, "params", None) or {}
        steps = params.get("steps") or self.known
        logger.info("step %d", self.count, extra={
            "step": (self.epoch, params.get("epochs"), self.count, steps)})

    def on_epoch_end(self, epoch, logs=None):
        self.known = self.known or self.count


class BestEpoch(tf.keras.callbacks.Callback):
    """Early stopping on a held-out metric, keeping the best epoch's weights.

    Reads ``monitor`` (higher is better) from each epoch's logs, so it must
    come after the callback that adds it. Stops when ``patience`` epochs in a
    row brought no improvement; at the end of training the weights of the
    best epoch are restored, and ``record['early_stopping']`` says which
    epoch that was and why training ended.
    """

    def __init__(self, monitor, patience, record):
        super().__init__()
        self.monitor, self.patience, self.record = monitor, patience, record
        self.best, self.best_epoch, self.best_weights, self.wait = -math.inf, None, None, 0
        self.last_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(f"early stopping watches {self.monitor!r}, which no epoch reported; "
                           "check training.early_stopping_metric against model.top_k")
        self.last_epoch = epoch + 1
        if value > self.best:
            self.best, self.best_epoch, self.wait = float(value), epoch + 1, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None and self.best_epoch != self.last_epoch:
            self.model.set_weights(self.best_weights)
        self.record["early_stopping"] = {
            "metric": self.monitor, "best": self.best, "best_epoch": self.best_epoch,
            "epochs_run": self.last_epoch, "patience": self.patience,
            "stopped_early": self.wait >= self.patience}
        self.record["best_epoch"] = self.best_epoch

