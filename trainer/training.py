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

from transform.naming import CANDIDATE_KEY, CANDIDATE_VOCAB, QUERY_KEY
from trainer.data import load_arrays, make_dataset, query_groups, unique_candidates
from trainer.evaluation import evaluate_full_catalog, evaluation_queries, popularity
from trainer.model import ExactIndex, TwoTowerModel, make_optimizer, require_legacy_keras
from trainer.monitoring import CollapseMonitor, MetricsRecorder, TrainingStopped
from trainer.serving import (SCANN_MIN_CANDIDATES, RetrievalServer, require_scann,
                             serving_inputs)
from trainer.towers import build_towers, tower_inputs

METRICS_FILE = "training_metrics.json"


def embed_table(tower, table, batch_size=4096):
    """Runs ``tower`` over a dict of arrays, ``[rows, dim]`` float32 numpy."""
    rows = len(next(iter(table.values())))
    parts = [tower({k: v[i:i + batch_size] for k, v in table.items()}, training=False).numpy()
             for i in range(0, rows, batch_size)]
    return np.concatenate(parts, axis=0)


class IndexRefresher(tf.keras.callbacks.Callback):
    """Re-embeds the deduplicated candidates into the index before each evaluation."""

    def __init__(self, index, tower, table):
        super().__init__()
        self.index, self.tower, self.table = index, tower, table

    def on_test_begin(self, logs=None):
        self.index.index(embed_table(self.tower, self.table))


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
    tf.io.gfile.makedirs(run_dir)
    with tf.io.gfile.GFile(os.path.join(run_dir, METRICS_FILE), "w") as handle:
        handle.write(json.dumps(_finite(record), indent=2, sort_keys=True))


def build_model(spec, tft_output, train_arrays):
    """The uncompiled two-tower model and what it was built from.

    Args:
      spec: the frozen config.
      tft_output: ``tft.TFTransformOutput`` of the Transform run.
      train_arrays: transformed training rows, ``{key: [rows, ...]}``.

    Returns:
      ``{'model', 'table' (deduplicated candidates), 'counts' ([num_candidates]
      training interactions per candidate), 'ks', 'num_candidates'}``.
    """
    model_cfg = spec["model"]
    vocabulary_size = tft_output.vocabulary_size_by_name
    query_tower, candidate_tower = build_towers(spec, vocabulary_size)
    num_candidates = vocabulary_size(CANDIDATE_VOCAB)
    candidate_keys = [i["key"] for i in tower_inputs(spec, "candidate_tower")]
    table = unique_candidates(train_arrays, candidate_keys + [CANDIDATE_KEY], num_candidates)
    ks = [k for k in model_cfg["top_k"] if k <= num_candidates] or [num_candidates]
    index = ExactIndex(table[CANDIDATE_KEY], model_cfg["output_dim"], k=max(ks))
    counts = popularity(train_arrays[CANDIDATE_KEY], num_candidates)
    softmax = softmax_mode(model_cfg, num_candidates)
    sampling = None
    if model_cfg["logq_correction"] and softmax == "in_batch":  # + 1 OOV slot, never sampled
        sampling = np.append(np.maximum(counts, 1.0) / counts.sum(), 1.0)
    model = TwoTowerModel(query_tower, candidate_tower, index, ks,
                          temperature=model_cfg["temperature"],
                          remove_accidental_hits=model_cfg["remove_accidental_hits"],
                          sampling_probability=sampling,
                          catalog=table if softmax == "full_catalog" else None)
    return {"model": model, "table": table, "counts": counts, "ks": ks,
            "num_candidates": num_candidates, "softmax": softmax}


def softmax_mode(model_cfg, num_candidates):
    """``full_catalog`` or ``in_batch``: ``auto`` is full_catalog up to ``full_catalog_max``."""
    if model_cfg["softmax"] == "auto":
        return "full_catalog" if num_candidates <= model_cfg["full_catalog_max"] else "in_batch"
    return model_cfg["softmax"]


def run_training(spec, meta, train_files, eval_files, transform_dir, serving_dir, run_dir,
                 train_steps=None, test_files=None):
    """Trains, evaluates and exports; returns the metrics record.

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
    try:
        _train(spec, record, train_files, eval_files, transform_dir, serving_dir, run_dir,
               train_steps, test_files)
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


def _train(spec, record, train_files, eval_files, transform_dir, serving_dir, run_dir,
           train_steps, test_files=None):
    require_legacy_keras()
    if spec["pipeline"]["serving_index"] == "scann":
        require_scann()  # now, not after training
    training = spec["training"]
    started = time.time()
    tf.keras.utils.set_random_seed(training["seed"])
    tft_output = tft.TFTransformOutput(transform_dir)
    feature_spec = tft_output.transformed_feature_spec()
    train_arrays = load_arrays(train_files, feature_spec)
    built = build_model(spec, tft_output, train_arrays)
    model, table, counts, ks = built["model"], built["table"], built["counts"], built["ks"]
    query_tower, candidate_tower, index = model.query_tower, model.candidate_tower, model.index
    num_candidates = built["num_candidates"]
    record.update(train_rows=int(len(train_arrays[CANDIDATE_KEY])),
                  candidates=int(num_candidates), top_k=ks, softmax=built["softmax"])
    if spec["pipeline"]["serving_index"] == "scann" and num_candidates < SCANN_MIN_CANDIDATES:
        raise ValueError(f"pipeline.serving_index: scann needs at least {SCANN_MIN_CANDIDATES} "
                         f"candidates, the catalog has {num_candidates}; use serving_index: "
                         "exact (brute force is fast at this size)")
    model.compile(optimizer=make_optimizer(training))
    callbacks = [
        IndexRefresher(index, candidate_tower, table),
        CollapseMonitor(training["collapse_patience"], training["collapse_threshold"], record,
                        training["learning_rate"], ratio=training["collapse_ratio"]),
        MetricsRecorder(record, {"query": query_tower, "candidate": candidate_tower}),
        tf.keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), profile_batch=0),
    ]
    train_ds = make_dataset(train_files, feature_spec, training["batch_size"], shuffle=True,
                            seed=training["seed"])
    eval_ds = make_dataset(eval_files, feature_spec, training["batch_size"])
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
    if record["stopped"]:
        raise TrainingStopped(record["stopped"]["message"])

    candidate_embeddings = embed_table(candidate_tower, table)
    eval_arrays = load_arrays(eval_files, feature_spec)
    train_groups = query_groups(train_arrays)
    evaluation = evaluate_split(spec, eval_arrays, train_groups, query_tower,
                                candidate_embeddings, counts, ks)
    evaluation["split"] = "eval"
    record["evaluation"] = evaluation
    if test_files:  # the held-out test split: its queries' train and eval items are excluded
        seen = dict(train_groups)
        for query, items in query_groups(eval_arrays).items():
            seen[query] = np.union1d(seen.get(query, items[:0]), items)
        record["evaluation_eval"] = evaluation
        record["evaluation"] = evaluate_split(spec, load_arrays(test_files, feature_spec), seen,
                                              query_tower, candidate_embeddings, counts, ks)
        record["evaluation"]["split"] = "test"

    raw_ids = [v.decode("utf-8") for v in tft_output.vocabulary_by_name(CANDIDATE_VOCAB)]
    server = RetrievalServer(tft_output.transform_features_layer(), query_tower,
                             tft_output.raw_feature_spec(), serving_inputs(spec),
                             candidate_embeddings, np.asarray(raw_ids, dtype=object),
                             spec["pipeline"]["serving_k"], spec["pipeline"]["serving_index"])
    server.save(serving_dir, spec)
    record["serving_model_dir"] = serving_dir
    record["seconds"] = time.time() - started


def evaluate_split(spec, arrays, seen_groups, query_tower, candidate_embeddings, counts, ks):
    """Full-catalog metrics on one split's rows, each query embedded from its first row.

    ``seen_groups`` maps each query key to the candidates it already had
    (excluded from its ranking, never counted as hits).
    """
    num_candidates = len(counts)
    keys, truth, exclude = evaluation_queries(seen_groups, query_groups(arrays), num_candidates)
    first_row = {}
    for row, key in enumerate(arrays[QUERY_KEY]):
        first_row.setdefault(int(key), row)
    rows = np.asarray([first_row[int(k)] for k in keys], dtype=np.int64)
    query_keys = [i["key"] for i in tower_inputs(spec, "query_tower")] + [QUERY_KEY]
    query_embeddings = embed_table(query_tower, {k: arrays[k][rows] for k in query_keys})
    return evaluate_full_catalog(query_embeddings, candidate_embeddings, counts, truth, exclude,
                                 ks)


def find_test_split(spec, eval_files):
    """The test split's transformed examples, beside the eval split's (TFX ``Split-test``)."""
    if spec["data"]["split"]["test_fraction"] <= 0:
        return None
    patterns = [p.replace("Split-eval", "Split-test") for p in eval_files]
    if patterns == list(eval_files):
        raise ValueError(f"data.split.test_fraction is set but no test split can be found "
                         f"beside the eval files {list(eval_files)}")
    return patterns


def run_from_fn_args(fn_args, spec, meta):
    """Adapter from TFX's ``FnArgs`` to :func:`run_training`."""
    transform_dir = getattr(fn_args, "transform_graph_path", None) or fn_args.transform_output
    return run_training(spec, meta, fn_args.train_files, fn_args.eval_files, transform_dir,
                        fn_args.serving_model_dir, fn_args.model_run_dir,
                        train_steps=fn_args.train_steps,
                        test_files=find_test_split(spec, fn_args.eval_files))
