"""Training end to end: data, towers, fit with monitors, evaluation, export.

``run_training`` is what the generated ``run_fn`` calls. Whatever happens,
it writes ``training_metrics.json`` into the run directory, with ``status``
``completed``, ``stopped`` (a monitor stopped it) or ``failed``.

Two runs make a served model (``training.refit``, the default): the
*selection* fits on the train split, chooses the epoch count on the eval
split and is what the push gate judges; the *refit* then fits the same
config from scratch on train + eval for the chosen epochs, with the
vocabularies and statistics of a Transform that analysed both (the newest
interactions are the most predictive, and a candidate first bought in them
is no longer out of vocabulary), and is the model pushed. With
``training.refit: false`` the selection is pushed.

Part of the runtime the generated Trainer module imports.
"""
import json
import math
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from transform.naming import (CANDIDATE_ID, CANDIDATE_POSITION, EVAL_SPLIT, REFIT_KEY, TEST_SPLIT,
                              TRAIN_SPLIT)
from trainer.data import make_dataset, weight_summary
from trainer.held_out import METRIC_PREFIX, HeldOutMetrics
from trainer.inputs import concatenate, held_out_set, load_inputs, split_files
from trainer.build import build_model, served_prior
from trainer.model import make_optimizer, require_legacy_keras
from trainer.monitoring import (BestEpoch, CollapseMonitor, MetricsRecorder, StepProgress,
                                TrainingStopped)
from trainer.runtime import GPUS_KEY, apply_runtime, choose_strategy
from trainer.serving import (SCANN_MIN_CANDIDATES, RetrievalServer, input_defaults,
                             require_scann)
from trainer.serving_names import serving_inputs
from trainer.tuning_space import apply_values, is_tuner_config, tuned_values
from trainer.vector_export import export_for_vector_search

METRICS_FILE = "training_metrics.json"
# In a serving model's assets.extra: what the selection chose, for the refit that follows it.
SELECTION_FILE = "selection.json"


class IndexRefresher(tf.keras.callbacks.Callback):
    """Re-embeds the catalog into the index before each evaluation."""

    def __init__(self, scorer, table):
        super().__init__()
        self.scorer, self.table = scorer, table  # a TwoTowerModel, its catalog table

    def on_test_begin(self, logs=None):
        self.scorer.index.index(self.scorer.catalog_vectors(self.table))


def _finite(value):
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_record(run_dir, record):
    """Writes ``training_metrics.json`` whole or not at all (a full disk midway leaves the
    earlier record, never a truncated one): written beside it, then renamed over it."""
    text = json.dumps(_finite(record), indent=2, sort_keys=True)
    tf.io.gfile.makedirs(run_dir)
    path = os.path.join(run_dir, METRICS_FILE)
    with tf.io.gfile.GFile(path + ".partial", "w") as handle:
        handle.write(text)
    tf.io.gfile.rename(path + ".partial", path, overwrite=True)


def run_training(spec, meta, files, transform_dir, serving_dir, run_dir, train_steps=None,
                 hyperparameters=None, gpus_requested=0, selection=None):
    """Trains, evaluates and exports; returns the metrics record.

    Args:
      files: ``{split: file patterns}`` (see :func:`trainer.inputs.split_files`).
      hyperparameters: runtime parameters' values (:func:`apply_runtime`).
      gpus_requested: GPUs the pipeline asked for (:func:`choose_strategy`).
      selection: for a refit, what the selection chose (:func:`read_selection`):
        the epoch count to fit for, and its evaluation.

    Raises:
      TrainingStopped: a monitor stopped training (collapse, NaN); nothing is
        exported, and the record says why.
    """
    training = spec["training"]
    record = {"status": "running", "collapse_detected": False, "stopped": None,
              "learning_rate": training["learning_rate"], "optimizer": training["optimizer"],
              "clipping": {"mode": training["clipping"], "value": training["clip_value"]},
              "config_fingerprint": meta["config_fingerprint"],
              "library_version": meta["library_version"], "epochs": [],
              "role": "refit" if selection is not None else "selection"}
    if training.get("tuned"):  # the values the Tuner step chose (trainer.tuning_space)
        record["tuned"] = dict(training["tuned"])
    try:  # a bad runtime value or missing GPUs is recorded like any other failure
        spec = apply_runtime(spec, hyperparameters, meta.get("learning_rate_ceiling"))
        record.update(learning_rate=spec["training"]["learning_rate"],
                      runtime_parameters=dict(hyperparameters or {}))
        strategy = choose_strategy(gpus_requested)
        record["replicas"] = int(strategy.num_replicas_in_sync)
        _train(spec, record, files, transform_dir, serving_dir, run_dir, train_steps, strategy,
               selection)
        record["status"] = "completed"
    except TrainingStopped:
        record["status"] = "stopped"
        raise
    except Exception as exc:
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        write_record(run_dir, record)
    return record


TOWERS_CHECKPOINT = os.path.join("towers", "towers")


def save_towers(model, run_dir, record):
    """Writes both towers' (and the candidate bias's and prior's) weights under
    ``run_dir/towers/``.

    A TensorFlow checkpoint, restored by rebuilding the towers from the frozen
    config (``twotower inspect``); ``record['towers_checkpoint']`` is its prefix.
    """
    parts = {"query_tower": model.query_tower, "candidate_tower": model.candidate_tower}
    if model.bias is not None:
        parts["candidate_bias"] = model.bias
    if model.prior is not None:
        parts["demand_prior"] = model.prior.weights
    prefix = os.path.join(run_dir, TOWERS_CHECKPOINT)
    tf.train.Checkpoint(**parts).write(prefix)
    record["towers_checkpoint"] = prefix


def chosen_epochs(record):
    """The epoch count a refit fits for: the best epoch early stopping kept, else every
    epoch run."""
    return int(record.get("best_epoch") or len(record["epochs"]) or 1)


def _setup(spec, record, files, transform_dir, strategy, refit=False):
    """The Transform output, the inputs and the compiled model (checked before training)."""
    require_legacy_keras()
    if spec["pipeline"]["serving_index"] == "scann":
        require_scann()  # now, not after training
    tf.keras.utils.set_random_seed(spec["training"]["seed"])
    tft_output = tft.TFTransformOutput(transform_dir)
    inputs = load_inputs(spec, tft_output, files, refit=refit)
    if inputs["catalog_from_rows"]:  # a refit's candidates first seen in the eval split
        record["catalog_from_eval_rows"] = inputs["catalog_from_rows"]
    with strategy.scope():  # variables on every replica's device (one, unless several GPUs)
        built = build_model(spec, tft_output, inputs)
        built["model"].compile(optimizer=make_optimizer(spec["training"]))
    counts = inputs["counts"]
    if built["model"].weighted:  # what the training loss weighs its rows by (data.weight)
        record["example_weights"] = dict(weight_summary(files[TRAIN_SPLIT], inputs["feature_spec"]),
                                         column=spec["data"]["weight"],
                                         clip=spec["data"]["weight_clip"])
    record.update(train_rows=int(len(inputs["train"][CANDIDATE_POSITION])),
                  candidates=built["num_candidates"],
                  candidates_without_training_rows=int((counts == 0).sum()), top_k=built["ks"],
                  softmax=built["softmax"])
    if (spec["pipeline"]["serving_index"] == "scann"
            and built["num_candidates"] < SCANN_MIN_CANDIDATES):
        raise ValueError(f"pipeline.serving_index: scann needs at least {SCANN_MIN_CANDIDATES} "
                         f"candidates, the catalog has {built['num_candidates']}; use "
                         "serving_index: exact (brute force is fast at this size)")
    return tft_output, inputs, built


def _fit(spec, record, model, inputs, files, run_dir, train_steps, epochs, held_out=None):
    """``model.fit`` with the monitors; with ``held_out`` (selection), the per-epoch
    full-catalog evaluation on it and early stopping."""
    training = spec["training"]
    callbacks = []
    if held_out is not None:  # HeldOutMetrics first: later callbacks read what it logs
        callbacks += [IndexRefresher(model, held_out["table"]),
                      HeldOutMetrics(held_out["set"], model, held_out["table"], inputs["counts"],
                                     held_out["ks"])]
    callbacks += [
        CollapseMonitor(training["collapse_patience"], training["collapse_threshold"], record,
                        training["learning_rate"], ratio=training["collapse_ratio"]),
        MetricsRecorder(record, {"query": model.query_tower, "candidate": model.candidate_tower},
                        log_dir=os.path.join(run_dir, "logs"), every_epoch=held_out is not None),
        StepProgress(),
        tf.keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), profile_batch=0),
    ]
    if held_out is not None and training["early_stopping_patience"]:
        metric = training["early_stopping_metric"] or f"recall_at_{held_out['ks'][0]}"
        callbacks.append(BestEpoch(f"val_{METRIC_PREFIX}{metric}",
                                   training["early_stopping_patience"], record))
    feature_spec, positions = inputs["feature_spec"], inputs["positions"]
    train_ds = make_dataset(files[TRAIN_SPLIT], feature_spec, training["batch_size"],
                            shuffle=True, seed=training["seed"], positions=positions)
    eval_ds = (make_dataset(files[EVAL_SPLIT], feature_spec, training["batch_size"],
                            positions=positions) if held_out is not None else None)
    steps_per_epoch = None
    if train_steps:
        train_ds = train_ds.repeat()
        steps_per_epoch = max(1, math.ceil(train_steps / epochs))
    fit_started = time.time()
    model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
              validation_data=eval_ds, callbacks=callbacks, verbose=2)
    fit_seconds = time.time() - fit_started
    steps = sum(e["steps"] for e in record["epochs"])
    record["fit_seconds"] = fit_seconds
    # training steps only: the per-epoch evaluation (eval split, held-out pass) is not speed
    train_seconds = sum(e.get("train_seconds") or 0.0 for e in record["epochs"])
    record["examples_per_second"] = steps * training["batch_size"] / max(train_seconds, 1e-9)
    save_towers(model, run_dir, record)  # stopped or not: a collapsed tower is worth a look
    if record["stopped"]:
        raise TrainingStopped(record["stopped"]["message"])


def _train(spec, record, files, transform_dir, serving_dir, run_dir, train_steps, strategy,
           selection=None):
    started = time.time()
    tft_output, inputs, built = _setup(spec, record, files, transform_dir, strategy,
                                       refit=selection is not None)
    model, table, ks = built["model"], built["table"], built["ks"]
    catalog_ids, counts, fitted = inputs["catalog"][CANDIDATE_ID], inputs["counts"], inputs["train"]
    feature_spec = inputs["feature_spec"]
    seen = [fitted]  # every row read, for the served demand prior
    if selection is None:
        evaluation, eval_rows = held_out_set(spec, EVAL_SPLIT, files, feature_spec, catalog_ids,
                                             fitted)
        _fit(spec, record, model, inputs, files, run_dir, train_steps,
             spec["training"]["epochs"], {"set": evaluation, "table": table, "ks": ks})
        seen.append(eval_rows)
        record["evaluation"] = evaluation.evaluate(model.embed_queries,
                                                   model.catalog_vectors(table), counts, ks,
                                                   with_baselines=True)
        if model.prior is not None:  # eval was scored with train's counts only
            record["evaluation"]["demand_prior"] = model.prior.describe()
    else:
        epochs = int(selection["epochs"])
        record["refit"] = {"epochs": epochs, "rows": record["train_rows"],
                           "selection_evaluation": selection.get("evaluation")}
        _fit(spec, record, model, inputs, files, run_dir, train_steps, epochs)
        record["evaluation"] = selection.get("evaluation")  # what the gate judged
    if TEST_SPLIT in files:  # test queries' earlier candidates (train, eval) are excluded
        before = concatenate(*seen)
        if model.prior is not None:  # as of the test split's start: train and eval counted
            model.prior = served_prior(model.prior, before, spec["model"]["demand_prior"])
        test, test_rows = held_out_set(spec, TEST_SPLIT, files, feature_spec, catalog_ids, before)
        record["evaluation_eval"] = record["evaluation"]
        record["evaluation"] = test.evaluate(model.embed_queries, model.catalog_vectors(table),
                                             counts, ks, with_baselines=True)
        if model.prior is not None:
            record["evaluation"]["demand_prior"] = model.prior.describe()
        seen.append(test_rows)
    if model.prior is not None:  # served as of every interaction read, held-out ones included
        model.prior = served_prior(model.prior, concatenate(*seen), spec["model"]["demand_prior"])
        record["demand_prior"] = model.prior.describe()  # what the served model adds
    _export(spec, record, tft_output, model, table, catalog_ids, serving_dir)
    record["seconds"] = time.time() - started


def _export(spec, record, tft_output, model, table, catalog_ids, serving_dir):
    """The serving SavedModel, and what the selection chose (for a refit) beside it."""
    raw_ids = np.asarray([v.decode("utf-8") for v in catalog_ids], dtype=object)
    server = RetrievalServer(tft_output.transform_features_layer(), model.query_tower,
                             tft_output.raw_feature_spec(), serving_inputs(spec),
                             model.catalog_vectors(table), raw_ids,
                             spec["pipeline"]["serving_k"], spec["pipeline"]["serving_index"],
                             input_defaults(spec), scann=spec["pipeline"].get("scann"),
                             query_scale=(model.temperature or 1.0) if model.has_offset
                             else None)
    server.save(serving_dir, spec)
    record["vector_search"] = export_for_vector_search(spec, tft_output, server, table,
                                                       serving_dir)
    if record["role"] == "selection":
        extra = os.path.join(serving_dir, "assets.extra")
        with tf.io.gfile.GFile(os.path.join(extra, SELECTION_FILE), "w") as handle:
            handle.write(json.dumps(_finite({"epochs": chosen_epochs(record),
                                             "evaluation": record.get("evaluation"),
                                             "config_fingerprint":
                                                 record["config_fingerprint"]})))
    record["serving_model_dir"] = serving_dir


def read_selection(base_model):
    """What the selection run chose, from its serving model (``fn_args.base_model``).

    Raises:
      ValueError: the base model holds no selection record.
    """
    path = os.path.join(base_model or "", "assets.extra", SELECTION_FILE)
    if not base_model or not tf.io.gfile.exists(path):
        raise ValueError(f"the refit needs the selection Trainer's model, with {SELECTION_FILE} "
                         f"in its assets.extra; none at {path!r}")
    with tf.io.gfile.GFile(path) as handle:
        return json.loads(handle.read())


def run_from_fn_args(fn_args, spec, meta):
    """Adapter from TFX's ``FnArgs`` to :func:`run_training`: the runtime parameters
    (``fn_args.hyperparameters``), the devices and the refit flag (``custom_config``)."""
    transform_dir = getattr(fn_args, "transform_graph_path", None) or fn_args.transform_output
    custom = getattr(fn_args, "custom_config", None) or {}
    refit = bool(custom.get(REFIT_KEY))
    selection = read_selection(getattr(fn_args, "base_model", None)) if refit else None
    hyperparameters = getattr(fn_args, "hyperparameters", None)
    if is_tuner_config(hyperparameters):  # the Tuner step's best_hyperparameters
        spec = apply_values(spec, hyperparameters["values"])
        spec["training"]["tuned"] = tuned_values(hyperparameters["values"])
        hyperparameters = None
    return run_training(spec, meta, split_files(spec, fn_args.train_files, fn_args.eval_files,
                                                refit=refit),
                        transform_dir, fn_args.serving_model_dir, fn_args.model_run_dir,
                        train_steps=fn_args.train_steps,
                        hyperparameters=hyperparameters,
                        gpus_requested=custom.get(GPUS_KEY, 0), selection=selection)
