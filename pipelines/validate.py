"""Semantic validation of a :class:`~pipelines.config.schema.Config`.

Runs before anything else. ``validate`` raises one :class:`ConfigError` that
lists every problem with its dotted key, and returns the warnings that do not
block a run. With ``check_data=True`` it also reads the CSV headers and checks
that every column the config names exists.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import keyword
import math
import os
import re
from typing import List

from pipelines.config.schema import (ACTIVATIONS, CANDIDATES_MISSING, CLIPPING, GATE_AGAINST, NORMS, OPTIMIZERS,
                              REPEATS, SERVING_INDEXES, SOFTMAX_MODES, SPLIT_METHODS,
                              TIMESTAMP_UNITS, Config, ConfigError, FeatureConfig)
from pipelines.data.columns import type_conflicts
from pipelines.data.sql import filters
from pipelines.data.sources import check_columns, configured_columns, source_problems
from pipelines.data.windows import split_window_problems
from pipelines.config.learning_rate import learning_rate_advice
from pipelines.local_paths import path_problems
from pipelines.config.tuning_rules import tuning_problems
from pipelines.vertex.checks import problems as vertex_problems
from trainer.parameters import RUNTIME_PARAMETERS, check_parameters, seed_problem
from trainer.serving_names import serving_name_problems
from transform.kinds import FLOAT, INT, KINDS
from transform.naming import HISTORY_PREFIX as RESERVED_COLUMN_PREFIX, WEIGHT_COLUMN

IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
PIPELINE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\Z")
_FEATURE_DEFAULTS = {f.name: (f.default if f.default is not dataclasses.MISSING else
                              f.default_factory())
                     for f in dataclasses.fields(FeatureConfig)
                     if f.name not in ("name", "kind", "column")}


def check_identifier(name: str) -> str:
    """Returns an error message if ``name`` can't be a feature identifier, else ''."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        return (f"{name!r} is not a valid feature name: use a letter followed by letters, digits "
                "or '_' (at most 64 characters); the raw column may be any string, set it in "
                "'column'")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"{name!r} is a Python keyword; choose another feature name"
    return ""


def validate(cfg: Config, check_data: bool = True) -> List[str]:
    """Raises ConfigError listing every problem; returns non-blocking warnings."""
    problems: List[tuple] = []
    warnings: List[str] = []
    add = lambda key, msg: problems.append((key, msg))  # noqa: E731

    d = cfg.data
    for key in ("query_id", "candidate_id"):
        if not getattr(d, key):
            add(f"data.{key}", "must not be empty")
    for key, msg in source_problems(d) + path_problems(cfg):
        add(key, msg)
    if d.bigquery:
        for key, column in configured_columns(cfg):
            if isinstance(column, str) and "." in column:
                add(key, f"{column!r}: a BigQuery column name has no '.' (BigQuery reads a "
                    "quoted name with a dot as a path, so the column could never be read)")
    if d.query_id == d.candidate_id:
        add("data.candidate_id", f"is the same column as data.query_id ({d.query_id!r})")
    if d.timestamp is not None and d.timestamp in (d.query_id, d.candidate_id):
        add("data.timestamp", "must differ from the id columns")
    if d.timestamp_unit not in TIMESTAMP_UNITS:
        add("data.timestamp_unit", f"{d.timestamp_unit!r}: must be one of "
            f"{', '.join(TIMESTAMP_UNITS)} (seconds, milliseconds, microseconds since 1970)")
    if d.repeats not in REPEATS:
        add("data.repeats", f"must be one of {', '.join(REPEATS)}")
    if d.split.method not in SPLIT_METHODS:
        add("data.split.method", f"must be one of {', '.join(SPLIT_METHODS)}")
    if d.split.method in ("time", "user_time", "days", "dates") and d.timestamp is None:
        add("data.split.method", f"{d.split.method!r} needs data.timestamp; set it, or use "
            "method: hash")
    if not 0.0 < d.split.eval_fraction <= 0.5:
        add("data.split.eval_fraction", "must be in (0, 0.5]")
    if not 0.0 <= d.split.test_fraction <= 0.5:
        add("data.split.test_fraction", "must be in [0, 0.5]")
    if d.split.window:
        if not 0 < d.split.window <= 20:
            add("data.split.window", "must be in 0..20 (windows back in time)")
        elif d.split.method != "time" or d.split.test_fraction > 0:
            add("data.split.window", "a backtest window moves a time split's eval window: "
                "use data.split.method: time without a test_fraction")
        elif (d.split.window + 1) * d.split.eval_fraction >= 1.0:
            add("data.split.window", f"{d.split.window + 1} windows of eval_fraction "
                f"{d.split.eval_fraction:g} leave no training rows: use fewer or smaller")
    for key, msg in split_window_problems(d.split):
        add(f"data.split.{key}", msg)
    if d.candidates is not None and not d.candidates.id:
        add("data.candidates.id", "must not be empty")
    if d.candidates is not None and d.candidates.missing not in CANDIDATES_MISSING:
        add("data.candidates.missing", f"{d.candidates.missing!r}: must be one of "
            f"{', '.join(CANDIDATES_MISSING)} (drop: drop the interactions naming a candidate "
            "the table lacks)")
    _check_weight(d, add)

    seen_names = {}
    seen_inputs = {}
    for tower in ("query_tower", "candidate_tower"):
        tc = getattr(cfg, tower)
        if not tc.features:
            add(f"{tower}.features", "a tower needs at least one feature")
        if not 0 <= len(tc.layers) <= 8:
            add(f"{tower}.layers", "at most 8 hidden layers")
        for i, width in enumerate(tc.layers):
            if not 1 <= width <= 4096:
                add(f"{tower}.layers.{i}", "a layer width must be in 1..4096")
        if not 0.0 <= tc.dropout < 1.0:
            add(f"{tower}.dropout", "must be in [0, 1)")
        if tc.norm not in NORMS:
            add(f"{tower}.norm", f"must be one of {', '.join(NORMS)}")
        if not (math.isfinite(tc.l2) and 0.0 <= tc.l2 < 1.0):
            add(f"{tower}.l2", "must be in [0, 1)")
        for i, f in enumerate(tc.features):
            _check_feature(cfg, tower, i, f, add, seen_names, seen_inputs)

    if all(f.kind in KINDS for f in cfg.query_tower.features):  # each input's name
        for key, msg in serving_name_problems(cfg.to_dict()):  # the signatures' own list
            add(key, msg)

    m = cfg.model
    for key in ("embedding_dim", "output_dim"):
        if not 1 <= getattr(m, key) <= 1024:
            add(f"model.{key}", "must be in 1..1024")
    if m.activation not in ACTIVATIONS:
        add("model.activation", f"must be one of {', '.join(ACTIVATIONS)}")
    if m.softmax not in SOFTMAX_MODES:
        add("model.softmax", f"must be one of {', '.join(SOFTMAX_MODES)}")
    if isinstance(m.sampled_negatives, bool) or not 1 <= m.sampled_negatives <= 1_000_000:
        add("model.sampled_negatives", "must be in 1..1000000")
    if isinstance(m.full_catalog_max, bool) or not 1 <= m.full_catalog_max <= 10_000_000:
        add("model.full_catalog_max", "must be in 1..10000000")
    if not 0.0 <= m.oov_dropout <= 0.5:
        add("model.oov_dropout", "must be in [0, 0.5]")
    if m.temperature is not None and not 0.0 < m.temperature <= 100.0:
        add("model.temperature", "must be in (0, 100], or null for none")
    if m.demand_prior is not None:
        prior = m.demand_prior
        if not cfg.data.timestamp:
            add("model.demand_prior", "counts demand by time: set data.timestamp, or remove "
                "model.demand_prior")
        if not prior.windows and not prior.all_time:
            add("model.demand_prior", "needs a window or all_time: true")
        elif (len(prior.windows) > 8 or any(w < 1 or w > 3660 for w in prior.windows)
              or sorted(set(prior.windows)) != prior.windows):
            add("model.demand_prior.windows", "at most 8 distinct, increasing day counts in "
                "1..3660, e.g. [1, 7, 28]")
        if (isinstance(prior.smoothing, bool) or not isinstance(prior.smoothing, (int, float))
                or not 0.0 <= prior.smoothing <= 365.0):
            add("model.demand_prior.smoothing", "must be a number of days in [0, 365] (1: a "
                "day of the log's mean volume as each window's pseudo-count; 0: raw counts)")
        if m.softmax == "in_batch":
            add("model.softmax", "in_batch negatives are other rows' candidates at their own "
                "moments, so a demand prior can't be scored at the query's moment: use sampled "
                "or full_catalog with model.demand_prior")
    if not m.top_k:
        add("model.top_k", "needs at least one k")
    elif any(k < 1 or k > 1000 for k in m.top_k) or sorted(set(m.top_k)) != m.top_k:
        add("model.top_k", "must be distinct, increasing values in 1..1000")

    t = cfg.training
    _, refused = check_parameters({name: getattr(t, row["key"])  # as submit --param, Trainer
                                   for name, row in RUNTIME_PARAMETERS.items()})
    for name, problem in refused:
        add(f"training.{RUNTIME_PARAMETERS[name]['key']}", problem)
    if seed_problem(t.seed):
        add("training.seed", seed_problem(t.seed))
    if t.optimizer not in OPTIMIZERS:
        add("training.optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
    if t.clipping not in CLIPPING:
        add("training.clipping", f"must be one of {', '.join(CLIPPING)}")
    elif t.clipping != "none" and not (math.isfinite(t.clip_value) and t.clip_value > 0):
        add("training.clip_value", "must be a positive number when clipping is on")
    if t.clipping == "none":
        warnings.append("training.clipping: none: exploding gradients will not be contained")
    if t.early_stopping_patience is not None and not 1 <= t.early_stopping_patience <= 100:
        add("training.early_stopping_patience", "must be in 1..100 epochs, or null")
    if t.early_stopping_metric is not None:
        names = [f"{name}_at_{k}" for k in m.top_k for name in ("recall", "ndcg", "hit_rate")]
        if t.early_stopping_metric not in names:
            add("training.early_stopping_metric", f"{t.early_stopping_metric!r}: use one of "
                f"{', '.join(names)} (a metric at a cut-off of model.top_k)")
    if t.collapse_patience < 1:
        add("training.collapse_patience", "must be at least 1 step")
    if not 0.0 <= t.collapse_threshold < 1.0:
        add("training.collapse_threshold", "must be in [0, 1)")
    if not 0.0 <= t.collapse_ratio < 0.1:
        add("training.collapse_ratio", "must be in [0, 0.1)")
    for reason in learning_rate_advice(cfg):
        if t.allow_risky_learning_rate:
            warnings.append(f"training.learning_rate: {reason}")
        else:
            add("training.learning_rate", reason)
    if math.isfinite(t.learning_rate) and 0 < t.learning_rate < 1e-6:
        warnings.append(f"training.learning_rate: {t.learning_rate:g} is too small to learn in a "
                        "few epochs")

    p = cfg.pipeline
    if not PIPELINE_NAME.match(p.name or ""):
        add("pipeline.name", f"{p.name!r}: use lower-case letters, digits and '-' (at most 63), "
            "as Vertex AI requires")
    if p.gate_k is not None and p.gate_k not in m.top_k:
        add("pipeline.gate_k", f"{p.gate_k!r} is not a cut-off of model.top_k {m.top_k}: name one "
            "of them, or null to gate at every cut-off up to pipeline.serving_k")
    lift = p.min_lift_over_popularity
    if lift is not None and not (math.isfinite(lift) and 0.0 <= lift <= 100.0):
        add("pipeline.min_lift_over_popularity", "must be in [0, 100], or null to push every "
            "completed model")
    if p.gate_against not in GATE_AGAINST:
        add("pipeline.gate_against", f"{p.gate_against!r}: must be one of "
            f"{', '.join(GATE_AGAINST)} (best: the model must beat every baseline)")
    b = p.baselines
    if not 1 <= b.recent_days <= 3650:
        add("pipeline.baselines.recent_days", f"must be in 1..3650 days, got {b.recent_days}")
    if not 16 <= b.item_item_memory_mb <= 65536:
        add("pipeline.baselines.item_item_memory_mb", "must be in 16..65536 (MiB for EASE's "
            f"item x item matrices), got {b.item_item_memory_mb}")
    if not (math.isfinite(b.ease_l2) and b.ease_l2 > 0):
        add("pipeline.baselines.ease_l2", f"must be a positive number, got {b.ease_l2}")
    if not (math.isfinite(b.recency_half_life_days) and b.recency_half_life_days > 0):
        add("pipeline.baselines.recency_half_life_days", "must be a positive number of days, "
            f"got {b.recency_half_life_days}")
    if not 1 <= p.serving_k <= 1000:
        add("pipeline.serving_k", "must be in 1..1000")
    if not 1 <= p.beam_workers <= 64:
        add("pipeline.beam_workers", f"must be in 1..64 (the machine has {os.cpu_count()} cores), "
            f"got {p.beam_workers}")
    problems.extend(vertex_problems(cfg))
    problems.extend(tuning_problems(cfg, validate))  # its ranges checked by the rules above
    if p.serving_index not in SERVING_INDEXES:
        add("pipeline.serving_index", f"must be one of {', '.join(SERVING_INDEXES)}")
    elif p.serving_index == "scann" and importlib.util.find_spec("scann") is None:
        add("pipeline.serving_index", "'scann' needs the scann package (pip install "
            "scann==1.3.2), here and in the serving image; or use 'exact'")
    for key, value in dataclasses.asdict(p.scann).items():
        if value is not None and not 1 <= value <= 1_000_000_000:
            add(f"pipeline.scann.{key}", f"must be a positive count, or null for the measured "
                f"rule; got {value}")
    sc = p.scann
    if sc.num_leaves and sc.leaves_to_search and sc.leaves_to_search > sc.num_leaves:
        add("pipeline.scann.leaves_to_search", f"{sc.leaves_to_search} exceeds num_leaves "
            f"{sc.num_leaves}: a query cannot search more leaves than the index has")
    if sc.reorder is not None and sc.reorder < p.serving_k:
        add("pipeline.scann.reorder", f"{sc.reorder} is below pipeline.serving_k {p.serving_k}: "
            "re-rank at least as many candidates as are served")

    if not problems:  # types are only meaningful once each feature is well-formed
        for key, msg in type_conflicts(cfg) + filters.kinds(cfg)[1]:
            add(key, msg)
    if problems:
        raise ConfigError(problems)
    if check_data and d.path:  # a BigQuery table's columns are checked by BigQuery
        check_columns(cfg)
    return warnings


def _check_weight(d, add) -> None:
    """data.weight: a column of its own (not an id or the time); data.weight_clip: > 0."""
    if d.weight is not None:
        if not d.weight:
            add("data.weight", "must not be empty: name a numeric column, or null")
        elif d.weight in (d.query_id, d.candidate_id, d.timestamp):
            add("data.weight", f"{d.weight!r} is an id or the timestamp column; the weight is a "
                "numeric column such as a quantity")
    if d.weight_clip is not None:
        if d.weight is None:
            add("data.weight_clip", "clips data.weight: set data.weight, or remove it")
        elif not (math.isfinite(d.weight_clip) and 0.0 < d.weight_clip <= 1e6):
            add("data.weight_clip", f"must be in (0, 1e6], got {d.weight_clip}")


def _check_feature(cfg, tower, i, f, add, seen_names, seen_inputs):
    key = f"{tower}.features.{i}"
    msg = check_identifier(f.name)
    if msg:
        add(f"{key}.name", msg)
    elif f.name in seen_names:
        add(f"{key}.name", f"feature {f.name!r} is listed twice (also {seen_names[f.name]})")
    else:
        seen_names[f.name] = key
    if f.kind not in KINDS:
        add(f"{key}.kind", f"{f.kind!r} is not one of {', '.join(KINDS)}")
        return
    kind, d, spec = KINDS[f.kind], cfg.data, cfg.to_dict()
    feature = spec[tower]["features"][i]
    if kind.reads != "column":
        if f.column is not None:
            add(f"{key}.column", f"a {f.kind} feature has no 'column'{kind.column_hint}")
    elif not isinstance(f.column, str) or not f.column:
        add(f"{key}.column", "required: the raw column this feature reads")
    columns = [f.column] if f.column else list(f.columns)
    for column in columns:
        if isinstance(column, str) and (column.startswith(RESERVED_COLUMN_PREFIX)
                                        or column == WEIGHT_COLUMN):
            add(f"{key}.column", f"columns starting with {RESERVED_COLUMN_PREFIX!r} and "
                f"{WEIGHT_COLUMN!r} are reserved")
    signature = (tower, f.column, tuple(f.columns), f.kind, f.transform, f.max_length)
    if kind.history(feature) is None and signature in seen_inputs:  # a history reads no file
        add(key, f"{f.kind} feature on {columns} is listed twice in {tower} "
            f"(also {seen_inputs[signature]})")
    seen_inputs[signature] = key
    for option, default in _FEATURE_DEFAULTS.items():
        if not kind.applies(option) and getattr(f, option) != default:
            add(f"{key}.{option}", f"does not apply to kind {f.kind!r}")
    if tower == "query_tower" and d.candidate_id in columns:
        add(f"{key}.column", "the query tower must not see the candidate id (label leak); "
            "use a history feature for the query's earlier candidates")
    if tower == "candidate_tower" and d.query_id in columns:
        add(f"{key}.column", "the candidate tower must not see the query id")
    if tower == "candidate_tower" and (
            kind.query_only or (d.timestamp and d.timestamp in columns)):
        add(key, f"a {f.kind if kind.query_only else 'timestamp'} describes the interaction or "
            "the query, not the candidate; use it in the query tower")
    if f.embedding_dim is not None and not 1 <= f.embedding_dim <= 1024:
        add(f"{key}.embedding_dim", "must be in 1..1024")
    for option, msg in kind.problems(feature) + kind.context_problems(feature, tower, spec):
        add(f"{key}.{option}" if option else key, msg)
    if kind.value_type in (FLOAT, INT):
        if f.default is not None and not isinstance(f.default, float):
            add(f"{key}.default", f"a {f.kind} feature needs a numeric default")
        elif f.default is not None and not math.isfinite(f.default):
            add(f"{key}.default", f"{f.default!r} is not a finite number")
    elif f.default is not None and not isinstance(f.default, str):
        add(f"{key}.default", f"a {f.kind} feature needs a string default")
