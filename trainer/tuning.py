"""The hyperparameter search's runtime: a validation slice carved from train, trials on it.

Every trial is scored the way the push gate scores a model (full-catalog
recall at the gate's cut-off, ``objective``; each query without what it had
before; popularity and the baselines on the same queries), but on a
*validation slice* carved from the **train** split by time
(:mod:`trainer.validation_slice`: the last ``tuning.validation_fraction`` of
train, or each query's own latest part under a ``user_time`` split). Trials
fit on the train rows before the slice and never read the eval or test
splits, so the gate's verdict on the tuned model stays unbiased.

The search is keras-tuner's (random, Bayesian optimisation, or Hyperband:
successive halving with ``tuning.max_epochs`` as the longest trial):
:class:`SliceTuner` trains a trial itself (``run_trial``) and returns its
objective. A trial the collapse monitor stops (gradients at ~0, a non-finite
loss) is recorded as stopped with objective 0, never an error of the search.
The tuner's project folder keeps finished trials: a search started again
with ``overwrite=False`` resumes and never repeats one. ``tuner_fn`` (the
generated Trainer module's) builds the same tuner for TFX's Tuner component.

Part of the runtime the generated Trainer module imports.
"""
import copy
import hashlib
import json
import os
import time
import uuid

import numpy as np
import tensorflow as tf

from transform.naming import CATALOG_SPLIT, TRAIN_SPLIT
from trainer.build import build_model
from trainer.held_out import METRIC_PREFIX, HeldOutMetrics
from trainer.model import make_optimizer
from trainer.monitoring import CollapseMonitor
from trainer.tuning_space import (HYPERBAND_FACTOR, SLICE_FILE, TENSORBOARD_FOLDER,
                                  TRIALS_FOLDER, TUNABLE, apply_values, tuned_values, typed)
from trainer.validation_slice import Slice

OBJECTIVE_KEY = "twotower_objective"  # the Tuner's custom_config: e.g. "recall_at_10"


def train_trial(spec, data, values, epochs, objective, log_dir=None):
    """Trains one trial from scratch on the fit rows; scores each epoch on the slice.

    Returns:
      ``{'objective' (best epoch's value; 0.0 when stopped), 'best_epoch', 'epochs',
      'per_epoch', 'seconds', 'stopped' (None or the monitor's reason and message)}``.
    """
    spec = apply_values(spec, values)
    training = spec["training"]
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(training["seed"])
    started = time.time()
    built = build_model(spec, data.tft_output, data.inputs)
    model = built["model"]
    model.compile(optimizer=make_optimizer(training))
    record = {"stopped": None}
    k = int(objective.rsplit("_", 1)[1])
    metrics = HeldOutMetrics(data.set, model, built["table"], data.inputs["counts"], [k])
    per_epoch = []

    class Keep(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(f"val_{METRIC_PREFIX}{objective}")
            if value is not None:
                per_epoch.append(float(value))

    callbacks = [metrics, Keep(), CollapseMonitor(
        training["collapse_patience"], training["collapse_threshold"], record,
        training["learning_rate"], ratio=training["collapse_ratio"])]
    if log_dir:
        from tensorboard.plugins.hparams import api as hparams

        callbacks += [tf.keras.callbacks.TensorBoard(log_dir, profile_batch=0),
                      hparams.KerasCallback(log_dir, dict(values), trial_id=os.path.basename(
                          log_dir))]
    model.fit(data.dataset(training["batch_size"], training["seed"]), epochs=epochs,
              callbacks=callbacks, verbose=0)
    best = int(np.argmax(per_epoch)) if per_epoch else -1
    stopped = record["stopped"]
    return {"objective": 0.0 if stopped or best < 0 else per_epoch[best],
            "best_epoch": best + 1 if best >= 0 else None, "epochs": len(per_epoch),
            "per_epoch": per_epoch, "seconds": time.time() - started,
            "stopped": None if not stopped else {"reason": stopped["reason"],
                                                  "message": stopped["message"]}}


def search_space(hp, space):
    """Declares ``space`` (``{key: {'min', 'max', 'log', 'values'}}``) on keras-tuner's
    ``HyperParameters`` ``hp``."""
    for key, r in space.items():
        kind = TUNABLE[key]["type"]
        if r.get("values"):
            hp.Choice(key, [typed(key, v) for v in r["values"]], ordered=True)
            continue
        log = TUNABLE[key]["log"] if r.get("log") is None else r["log"]
        sampling = "log" if log else "linear"
        if kind is int:
            hp.Int(key, int(r["min"]), int(r["max"]), sampling=sampling)
        else:
            hp.Float(key, float(r["min"]), float(r["max"]), sampling=sampling)
    return hp


def make_oracle(tuning, space, objective):
    """The keras-tuner oracle of ``tuning.algorithm``, stopping after ``tuning.trials``."""
    import keras_tuner as kt

    hp = search_space(kt.HyperParameters(), space)
    goal = kt.Objective(objective, direction="max")
    common = dict(objective=goal, hyperparameters=hp, seed=tuning["seed"],
                  max_consecutive_failed_trials=1)
    if tuning["algorithm"] == "random":
        return kt.oracles.RandomSearchOracle(max_trials=tuning["trials"], **common)
    if tuning["algorithm"] == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=tuning["trials"], **common)
    oracle = kt.oracles.HyperbandOracle(max_epochs=tuning["max_epochs"], factor=HYPERBAND_FACTOR,
                                        hyperband_iterations=None, **common)
    oracle.max_trials = tuning["trials"]  # Hyperband runs brackets until this many trials
    return oracle


def make_tuner(spec, data, directory, project_name, objective, overwrite=False, log=None):
    """A :class:`SliceTuner` over ``data`` (a :class:`Slice`), its project under
    ``directory/project_name`` (kept: ``overwrite=False`` resumes a search)."""
    import keras_tuner as kt

    class SliceTuner(kt.Tuner):
        """keras-tuner's Tuner whose trial is :func:`train_trial` on the slice."""

        def run_trial(self, trial, *args, **kwargs):
            values = trial.hyperparameters.values
            epochs = int(values.get("tuner/epochs") or spec["tuning"]["max_epochs"])
            path = os.path.join(self.project_dir, TRIALS_FOLDER, f"{trial.trial_id}.json")
            if tf.io.gfile.exists(path):  # finished before an interruption: never repeated
                with tf.io.gfile.GFile(path) as handle:
                    return {objective: json.loads(handle.read())["objective"]}
            try:
                result = train_trial(spec, data, tuned_values(values), epochs, objective,
                                     os.path.join(self.project_dir, TENSORBOARD_FOLDER,
                                                  trial.trial_id))
            except Exception as exc:  # not a trial's outcome: the search stops, loudly
                raise kt.errors.FatalError(f"trial {trial.trial_id}: {type(exc).__name__}: "
                                           f"{exc}") from exc
            result.update(trial=trial.trial_id, values=tuned_values(values),
                          parent=values.get("tuner/trial_id"))
            write_json(path, result)
            if log:
                log(trial_line(result, objective))
            return {objective: result["objective"]}

    return SliceTuner(oracle=make_oracle(spec["tuning"], spec["tuning"]["space"], objective),
                      directory=directory, project_name=project_name, overwrite=overwrite)


def write_json(path, value):
    """``value`` as JSON at ``path``, written beside it and renamed over it (the partial
    file's name is this writer's own: parallel replicas may write the same record)."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    partial = f"{path}.partial-{uuid.uuid4().hex[:12]}"
    with tf.io.gfile.GFile(partial, "w") as handle:
        handle.write(json.dumps(value, indent=1, sort_keys=True, allow_nan=False))
    tf.io.gfile.rename(partial, path, overwrite=True)


def trial_records(project_dir):
    """The finished trials' records, by trial id."""
    folder = os.path.join(project_dir, TRIALS_FOLDER)
    found = []
    for path in sorted(tf.io.gfile.glob(os.path.join(folder, "*.json"))):
        with tf.io.gfile.GFile(path) as handle:
            found.append(json.loads(handle.read()))
    return found


def trial_line(result, objective):
    values = ", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in result["values"].items())
    how = f"stopped: {result['stopped']['reason']}" if result["stopped"] else (
        f"{objective} {result['objective']:.4f} (epoch {result['best_epoch']})")
    return (f"trial {result['trial']}: {values}: {how}, {result['epochs']} epoch(s), "
            f"{result['seconds']:.0f}s")


def run_search(spec, files, transform_dir, directory, project_name, objective, log=print):
    """Runs (or resumes) the search; returns ``{'slice', 'baselines', 'trials', 'best',
    'project_dir', 'resumed'}`` (``best``: the best completed trial's record)."""
    data = Slice(spec, files, transform_dir, spec["tuning"]["validation_fraction"])
    project_dir = os.path.join(directory, project_name)
    done = len(trial_records(project_dir)) if tf.io.gfile.exists(project_dir) else 0
    tuner = make_tuner(spec, data, directory, project_name, objective, overwrite=False, log=log)
    tuner.search()
    trials = trial_records(project_dir)
    baselines = write_slice(project_dir, data, objective)
    return {"slice": data.about, "baselines": baselines, "trials": trials,
            "best": best_trial(trials), "project_dir": project_dir, "resumed": done}


def best_trial(trials):
    """The best completed trial's record (a tie goes to the earlier trial), or None."""
    completed = [t for t in trials if not t["stopped"]]
    return max(completed, key=lambda t: (t["objective"], -int(t["trial"]))) if completed else None


def write_slice(project_dir, data, objective):
    """Writes ``slice.json`` (the slice's dates and sizes, ``objective``, the baselines'
    values there) in the project folder; returns the baselines' ``{name: value}``."""
    baselines = data.baselines(objective)
    write_json(os.path.join(project_dir, SLICE_FILE),
               dict(data.about, objective=objective, baselines=baselines))
    return baselines


REMOTE_DIR_KEY = "remote_trials_working_dir"  # the Google Cloud Tuner's shared folder


def project_of(fn_args, spec):
    """Where the search's project lives: ``(directory, project name)``.

    Here (and on Vertex AI with ``tuning.parallel`` 1): ``search`` in the step's
    working folder. The Google Cloud Tuner's replicas (``parallel`` > 1) each have a
    disk of their own, so its ``custom_config`` names a shared folder on the bucket
    (``remote_trials_working_dir``): the project there is named by what the search
    depends on (the frozen spec, the Transform output it reads), so each replica of
    one search meets the others in it, and a search run again resumes there."""
    custom = getattr(fn_args, "custom_config", None) or {}
    remote = custom.get(REMOTE_DIR_KEY)
    if not remote:
        return fn_args.working_dir, "search"
    key = json.dumps({"spec": spec, "train": sorted({os.path.dirname(f) for f in
                                                     fn_args.train_files})}, sort_keys=True)
    return remote, "search-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def tuner_from_fn_args(fn_args, spec, meta):
    """TFX's ``tuner_fn``: the tuner over the Tuner step's train split (and the catalog,
    handed as its eval split); its project from :func:`project_of`."""
    from tfx.components.tuner.component import TunerFnResult

    custom = getattr(fn_args, "custom_config", None) or {}
    objective = custom[OBJECTIVE_KEY]
    files = {TRAIN_SPLIT: list(fn_args.train_files), CATALOG_SPLIT: list(fn_args.eval_files)}
    transform_dir = getattr(fn_args, "transform_graph_path", None) or fn_args.transform_output
    data = Slice(spec, files, transform_dir, spec["tuning"]["validation_fraction"])
    print(f"validation slice: {json.dumps(data.about, sort_keys=True)}", flush=True)
    directory, project = project_of(fn_args, spec)
    print(f"search project: {os.path.join(directory, project)}", flush=True)
    tuner = make_tuner(copy.deepcopy(spec), data, directory, project, objective,
                       overwrite=False, log=lambda line: print(line, flush=True))
    write_slice(tuner.project_dir, data, objective)  # kept with the trials (build.components)
    return TunerFnResult(tuner=tuner, fit_kwargs={})
