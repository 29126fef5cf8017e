"""Training end to end: data, towers, fit with monitors, evaluation, export.

``run_training`` is what the generated ``run_fn`` calls. Whatever happens,
it writes ``training_metrics.json`` into the run directory, with ``status``
``completed``, ``stopped`` (a monitor stopped it) or ``failed``.

This module is copied verbatim into the generated Trainer module.
"""
import json
import math
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from transform.naming import (CANDIDATE_ID, CANDIDATE_POSITION, CATALOG_SPLIT, EVAL_SPLIT,
                              QUERY_ID, QUERY_KEY, TEST_SPLIT, TRAIN_SPLIT, has_test_split,
                              queries_split)
from trainer.data import (catalog_table, load_arrays, load_pairs, make_dataset,
                          position_table, query_counts, query_groups)
from trainer.evaluation import popularity
from trainer.held_out import METRIC_PREFIX, HeldOutMetrics, HeldOutSet
from trainer.model import ExactIndex, TwoTowerModel, make_optimizer, require_legacy_keras
from trainer.monitoring import BestEpoch, CollapseMonitor, MetricsRecorder, TrainingStopped
from trainer.runtime import GPUS_KEY, apply_runtime, choose_strategy
from trainer.serving import (SCANN_MIN_CANDIDATES, RetrievalServer, input_defaults,
                             require_scann, serving_inputs)
from trainer.towers import build_towers, tower_inputs

METRICS_FILE = "training_metrics.json"


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


def split_files(spec, train_files, eval_files):
    """``{split: file patterns}`` of every split the Trainer reads.

    TFX hands the Trainer the train and eval patterns; the catalog, the query
    snapshots and the test split are their siblings (``Split-<name>``).
    """
    files = {TRAIN_SPLIT: list(train_files), EVAL_SPLIT: list(eval_files)}
    names = [CATALOG_SPLIT, queries_split(EVAL_SPLIT)]
    if has_test_split(spec["data"]["split"]):
        names += [TEST_SPLIT, queries_split(TEST_SPLIT)]
    for name in names:
        files[name] = [p.replace("Split-" + EVAL_SPLIT, "Split-" + name) for p in eval_files]
        if files[name] == files[EVAL_SPLIT]:
            raise ValueError(f"cannot find the {name} split beside the eval files "
                             f"{list(eval_files)} (expected a Split-{name} folder)")
    return files


def load_inputs(spec, tft_output, files):
    """What a model is built from: the catalog, the training rows and popularity.

    Returns:
      ``{'catalog' (see trainer.data.catalog_table), 'train' (QUERY_ID and
      CANDIDATE_POSITION per row: trainer.data.load_pairs), 'counts' ([num_candidates] training interactions
      per position), 'feature_spec', 'positions' (the id -> position table)}``.

    Raises:
      ValueError: a training interaction names a candidate outside the catalog.
    """
    feature_spec = tft_output.transformed_feature_spec()
    keys = [i["key"] for i in tower_inputs(spec, "candidate_tower")]
    catalog = catalog_table(load_arrays(files[CATALOG_SPLIT], feature_spec), keys)
    train = load_pairs(files[TRAIN_SPLIT], feature_spec, catalog[CANDIDATE_ID])
    outside, first = train.pop("outside")
    if outside:
        raise ValueError(f"{outside} training interactions name candidates outside the "
                         f"catalog (first: {first!r}); the catalog split must list them")
    return {"catalog": catalog, "train": train, "feature_spec": feature_spec,
            "counts": popularity(train[CANDIDATE_POSITION], len(catalog[CANDIDATE_ID])),
            "positions": position_table(catalog[CANDIDATE_ID])}


def check_cutoffs(spec, num_candidates):
    """``model.top_k`` and ``pipeline.serving_k`` must fit in the catalog: no silent drop."""
    too_big = [k for k in spec["model"]["top_k"] if k > num_candidates]
    if too_big:
        raise ValueError(f"model.top_k {too_big} exceeds the catalog's {num_candidates} "
                         f"candidates; use cut-offs of at most {num_candidates}")
    if spec["pipeline"]["serving_k"] > num_candidates:
        raise ValueError(f"pipeline.serving_k {spec['pipeline']['serving_k']} exceeds the "
                         f"catalog's {num_candidates} candidates; lower it")
    return list(spec["model"]["top_k"])


def build_model(spec, tft_output, inputs):
    """The uncompiled two-tower model over the catalog of :func:`load_inputs`.

    Returns:
      ``{'model', 'table' (the catalog's candidate-tower inputs by position),
      'ks', 'num_candidates', 'softmax'}``.
    """
    model_cfg = spec["model"]
    query_tower, candidate_tower = build_towers(spec, tft_output.vocabulary_size_by_name)
    catalog, counts = inputs["catalog"], inputs["counts"]
    num_candidates = len(counts)
    ks = check_cutoffs(spec, num_candidates)
    keys = [i["key"] for i in tower_inputs(spec, "candidate_tower")] + [CANDIDATE_POSITION]
    table = {key: catalog[key] for key in dict.fromkeys(keys)}
    bias = np.zeros(num_candidates, np.float32) if model_cfg["candidate_bias"] else None
    dim = model_cfg["output_dim"] + (1 if bias is not None else 0)  # see TwoTowerModel
    index = ExactIndex(table[CANDIDATE_POSITION], dim, k=max(ks))
    softmax = softmax_mode(model_cfg, num_candidates)
    sampling = None
    if model_cfg["logq_correction"] and softmax == "in_batch":
        sampling = np.maximum(counts, 1.0) / counts.sum()
    model = TwoTowerModel(query_tower, candidate_tower, index, ks,
                          temperature=model_cfg["temperature"],
                          remove_accidental_hits=model_cfg["remove_accidental_hits"],
                          sampling_probability=sampling,
                          catalog=table if softmax in ("full_catalog", "sampled") else None,
                          candidate_bias=bias,
                          sampled_negatives=(min(model_cfg["sampled_negatives"], num_candidates)
                                             if softmax == "sampled" else None))
    return {"model": model, "table": table, "ks": ks, "num_candidates": num_candidates,
            "softmax": softmax}


def softmax_mode(model_cfg, num_candidates):
    """``full_catalog`` or ``in_batch``: ``auto`` is full_catalog up to ``full_catalog_max``."""
    if model_cfg["softmax"] == "auto":
        return "full_catalog" if num_candidates <= model_cfg["full_catalog_max"] else "in_batch"
    return model_cfg["softmax"]


def run_training(spec, meta, files, transform_dir, serving_dir, run_dir, train_steps=None,
                 hyperparameters=None, gpus_requested=0):
    """Trains, evaluates and exports; returns the metrics record.

    Args:
      files: ``{split: file patterns}`` (see :func:`split_files`).
      hyperparameters: runtime parameters' values (:func:`apply_runtime`).
      gpus_requested: GPUs the pipeline asked for (:func:`choose_strategy`).

    Raises:
      TrainingStopped: a monitor stopped training (collapse, NaN); nothing is
        exported, and the record says why.
    """
    training = spec["training"]
    record = {"status": "running", "collapse_detected": False, "stopped": None,
              "learning_rate": training["learning_rate"], "optimizer": training["optimizer"],
              "clipping": {"mode": training["clipping"], "value": training["clip_value"]},
              "config_fingerprint": meta["config_fingerprint"],
              "library_version": meta["library_version"], "epochs": []}
    try:  # a bad runtime value or missing GPUs is recorded like any other failure
        spec = apply_runtime(spec, hyperparameters, meta.get("learning_rate_ceiling"))
        record.update(learning_rate=spec["training"]["learning_rate"],
                      runtime_parameters=dict(hyperparameters or {}))
        strategy = choose_strategy(gpus_requested)
        record["replicas"] = int(strategy.num_replicas_in_sync)
        _train(spec, record, files, transform_dir, serving_dir, run_dir, train_steps, strategy)
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
    """Writes both towers' (and the candidate bias's) weights under ``run_dir/towers/``.

    A TensorFlow checkpoint, restored by rebuilding the towers from the frozen
    config (``twotower inspect``); ``record['towers_checkpoint']`` is its prefix.
    """
    parts = {"query_tower": model.query_tower, "candidate_tower": model.candidate_tower}
    if model.bias is not None:
        parts["candidate_bias"] = model.bias
    prefix = os.path.join(run_dir, TOWERS_CHECKPOINT)
    tf.train.Checkpoint(**parts).write(prefix)
    record["towers_checkpoint"] = prefix


def held_out_set(spec, split, files, feature_spec, catalog_ids, seen_groups, seen_counts=None):
    """The :class:`HeldOutSet` of ``split``, and its rows' raw query ids and positions."""
    rows = load_pairs(files[split], feature_spec, catalog_ids)
    positions = rows[CANDIDATE_POSITION]
    query_keys = [i["key"] for i in tower_inputs(spec, "query_tower")] + [QUERY_KEY]
    snapshots = load_arrays(files[queries_split(split)], feature_spec)
    held = HeldOutSet(split, snapshots, list(dict.fromkeys(query_keys)), rows[QUERY_ID],
                      positions, seen_groups, seen_counts)
    return held, rows[QUERY_ID], positions


def _train(spec, record, files, transform_dir, serving_dir, run_dir, train_steps, strategy):
    require_legacy_keras()
    if spec["pipeline"]["serving_index"] == "scann":
        require_scann()  # now, not after training
    training = spec["training"]
    started = time.time()
    tf.keras.utils.set_random_seed(training["seed"])
    tft_output = tft.TFTransformOutput(transform_dir)
    inputs = load_inputs(spec, tft_output, files)
    with strategy.scope():  # variables on every replica's device (one, unless several GPUs)
        built = build_model(spec, tft_output, inputs)
        built["model"].compile(optimizer=make_optimizer(training))
    model, table, ks = built["model"], built["table"], built["ks"]
    query_tower = model.query_tower
    catalog_ids, counts = inputs["catalog"][CANDIDATE_ID], inputs["counts"]
    train = inputs["train"]
    record.update(train_rows=int(len(train[CANDIDATE_POSITION])), candidates=built["num_candidates"],
                  candidates_without_training_rows=int((counts == 0).sum()), top_k=ks,
                  softmax=built["softmax"])
    if (spec["pipeline"]["serving_index"] == "scann"
            and built["num_candidates"] < SCANN_MIN_CANDIDATES):
        raise ValueError(f"pipeline.serving_index: scann needs at least {SCANN_MIN_CANDIDATES} "
                         f"candidates, the catalog has {built['num_candidates']}; use "
                         "serving_index: exact (brute force is fast at this size)")
    train_groups = query_groups(train[QUERY_ID], train[CANDIDATE_POSITION])
    train_counts = query_counts(train[QUERY_ID], train[CANDIDATE_POSITION])
    evaluation, eval_queries, eval_positions = held_out_set(
        spec, EVAL_SPLIT, files, inputs["feature_spec"], catalog_ids, train_groups,
        train_counts)
    callbacks = [  # HeldOutMetrics first: later callbacks read the metrics it adds to the logs
        IndexRefresher(model, table),
        HeldOutMetrics(evaluation, model, table, counts, ks),
        CollapseMonitor(training["collapse_patience"], training["collapse_threshold"], record,
                        training["learning_rate"], ratio=training["collapse_ratio"]),
        MetricsRecorder(record, {"query": query_tower, "candidate": model.candidate_tower}),
        tf.keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), profile_batch=0),
    ]
    if training["early_stopping_patience"]:
        metric = training["early_stopping_metric"] or f"recall_at_{ks[0]}"
        callbacks.append(BestEpoch(f"val_{METRIC_PREFIX}{metric}",
                                   training["early_stopping_patience"], record))
    feature_spec, positions = inputs["feature_spec"], inputs["positions"]
    train_ds = make_dataset(files[TRAIN_SPLIT], feature_spec, training["batch_size"],
                            shuffle=True, seed=training["seed"], positions=positions)
    eval_ds = make_dataset(files[EVAL_SPLIT], feature_spec, training["batch_size"],
                           positions=positions)
    steps_per_epoch = None
    if train_steps:
        train_ds = train_ds.repeat()
        steps_per_epoch = max(1, math.ceil(train_steps / training["epochs"]))
    fit_started = time.time()
    model.fit(train_ds, epochs=training["epochs"], steps_per_epoch=steps_per_epoch,
              validation_data=eval_ds, callbacks=callbacks, verbose=2)
    fit_seconds = time.time() - fit_started
    steps = sum(e["steps"] for e in record["epochs"])
    record["fit_seconds"] = fit_seconds
    record["examples_per_second"] = steps * training["batch_size"] / max(fit_seconds, 1e-9)
    save_towers(model, run_dir, record)  # stopped or not: a collapsed tower is worth a look
    if record["stopped"]:
        raise TrainingStopped(record["stopped"]["message"])

    candidate_vectors = model.catalog_vectors(table)
    record["evaluation"] = evaluation.evaluate(model.embed_queries, candidate_vectors, counts, ks)
    if TEST_SPLIT in files:  # test queries' train and eval candidates are excluded
        seen = dict(train_groups)
        for query, found in query_groups(eval_queries, eval_positions).items():
            seen[query] = np.union1d(seen.get(query, found[:0]), found)
        both = query_counts(np.concatenate([train[QUERY_ID], eval_queries]),
                            np.concatenate([train[CANDIDATE_POSITION], eval_positions]))
        test, _, _ = held_out_set(spec, TEST_SPLIT, files, feature_spec, catalog_ids, seen,
                                  both)
        record["evaluation_eval"] = record["evaluation"]
        record["evaluation"] = test.evaluate(model.embed_queries, candidate_vectors, counts, ks)

    raw_ids = np.asarray([v.decode("utf-8") for v in catalog_ids], dtype=object)
    server = RetrievalServer(tft_output.transform_features_layer(), query_tower,
                             tft_output.raw_feature_spec(), serving_inputs(spec),
                             candidate_vectors, raw_ids, spec["pipeline"]["serving_k"],
                             spec["pipeline"]["serving_index"], input_defaults(spec),
                             query_scale=(model.temperature or 1.0) if model.bias is not None
                             else None)
    server.save(serving_dir, spec)
    record["serving_model_dir"] = serving_dir
    record["seconds"] = time.time() - started


def run_from_fn_args(fn_args, spec, meta):
    """Adapter from TFX's ``FnArgs`` to :func:`run_training`: the runtime parameters
    (``fn_args.hyperparameters``) and the devices (``custom_config``) applied."""
    transform_dir = getattr(fn_args, "transform_graph_path", None) or fn_args.transform_output
    return run_training(spec, meta, split_files(spec, fn_args.train_files, fn_args.eval_files),
                        transform_dir, fn_args.serving_model_dir, fn_args.model_run_dir,
                        train_steps=fn_args.train_steps,
                        hyperparameters=getattr(fn_args, "hyperparameters", None),
                        gpus_requested=(getattr(fn_args, "custom_config", None) or {}).get(
                            GPUS_KEY, 0))
