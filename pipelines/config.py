"""Typed configuration of a two-tower pipeline, with a JSON/YAML round trip.

One config file describes the data, the query and candidate towers, the model
and training. Parsing is strict: an unknown key, a value of the wrong type or
a missing required key is reported with its dotted path, e.g.
``training.learning_rate: expected a number, got 'fast'``. All problems are
collected and raised together as one :class:`ConfigError`.

Semantic rules (ranges, options that can't go together, columns that must
exist in the data) live in :mod:`pipelines.validate`.

This module imports neither TensorFlow nor TFX.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from typing import Any, Dict, List, Optional, Union

from transform.kinds import KINDS  # no TensorFlow: the kinds' TF parts import it when they run

FEATURE_KINDS = tuple(KINDS)  # one module per kind (transform/kinds/)
NORMS = ("none", "batch", "layer")
OPTIMIZERS = ("adam", "adagrad", "sgd")
CLIPPING = ("global_norm", "norm", "value", "none")
SPLIT_METHODS = ("auto", "time", "user_time", "hash", "days", "dates")
REPEATS = ("keep", "first")
TIMESTAMP_UNITS = ("s", "ms", "us")  # what a numeric timestamp counts since 1970
SOFTMAX_MODES = ("auto", "full_catalog", "sampled", "in_batch")
SERVING_INDEXES = ("exact", "scann")
ACTIVATIONS = ("relu", "gelu", "tanh", "linear")


class ConfigError(ValueError):
    """A config is invalid. ``problems`` holds ``(dotted_key, message)`` pairs."""

    def __init__(self, problems: List[tuple]):
        self.problems = list(problems)
        lines = [f"{key}: {msg}" if key else msg for key, msg in self.problems]
        super().__init__("invalid config:\n  " + "\n  ".join(lines))


@dataclasses.dataclass
class FeatureConfig:
    """One input of a tower.

    ``name`` is the feature's identifier in generated code and in the naming
    contract; ``column`` is the raw column, which may be any string (``cross``
    reads ``columns`` instead; ``history`` reads the query's earlier candidate
    ids and no column). Options that don't apply to a kind must stay unset;
    which apply, and their rules, are the kind's (``transform/kinds/``).
    """
    name: str
    kind: str
    column: Optional[str] = None
    columns: List[str] = dataclasses.field(default_factory=list)  # cross
    embedding_dim: Optional[int] = None        # every kind but numeric (non-bucketized)
    max_vocab_size: Optional[int] = None       # id, categorical, multi_categorical, text
    frequency_threshold: int = 0               # id, categorical, multi_categorical, text
    oov_buckets: int = 1                       # id, categorical, multi_categorical, text
    separator: str = "|"                       # multi_categorical, history
    max_length: Optional[int] = None           # multi_categorical 8, text 16, history 20
    transform: Optional[str] = None            # numeric (zscore), timestamp (cyclical)
    num_buckets: int = 10                      # numeric/timestamp with transform bucketize
    hash_buckets: int = 1000                   # cross
    default: Optional[Union[str, float]] = None  # value used where the column is empty
    # history: "mean" of the items' embeddings, "recency": a weighted mean whose weight per
    # position (newest first) is learned, or "attention": one small self-attention block over
    # the items and their positions (trainer.towers.HistoryAttention), then the mean
    pooling: Optional[str] = None

    def fill_kind_defaults(self) -> None:
        """Fills the kind's defaults where the config leaves them null, so the frozen config
        is explicit."""
        kind = KINDS.get(self.kind)  # an unknown kind is validation's to report
        for key, value in (kind.defaults if kind else {}).items():
            if getattr(self, key) is None:
                setattr(self, key, value)


@dataclasses.dataclass
class CandidateTableConfig:
    """An optional table of candidate attributes, joined on ``id``: a file or a BigQuery table."""
    id: str
    path: Optional[str] = None
    bigquery: Optional[str] = None          # project.dataset.table (with data.bigquery)

    @property
    def source(self) -> str:
        """The table as messages name it: the file, or ``bigquery:project.dataset.table``."""
        return self.path or f"bigquery:{self.bigquery}"


@dataclasses.dataclass
class SplitConfig:
    """How interactions are split into train and eval.

    ``auto`` is ``time`` when ``data.timestamp`` is set, else ``hash``.
    ``time`` puts the latest ``eval_fraction`` of interactions (a global cut)
    in eval; ``user_time`` puts each query's latest ``eval_fraction`` of its
    interactions in eval (at least one, for queries with two or more);
    ``hash`` assigns rows by a seeded hash of the row. With ``test_fraction``
    > 0 the latest part of the held-out rows is a test split. Time windows in
    whole UTC days: ``days`` holds out the data's last ``eval_days`` +
    ``test_days`` calendar days (test the latest ``test_days``); ``dates``
    holds out rows from ``eval_from`` (``YYYY-MM-DD``, 00:00 UTC), test from
    ``test_from`` (see :mod:`pipelines.data.sql.program`).
    """
    method: str = "auto"
    eval_fraction: float = 0.2
    test_fraction: float = 0.0   # > 0: a test split, evaluated once at the end of training
    seed: int = 42
    eval_days: int = 7           # method "days"
    test_days: int = 0           # method "days": > 0 makes a test split
    eval_from: Optional[str] = None   # method "dates": first eval day, e.g. 2024-03-01
    test_from: Optional[str] = None   # method "dates": first test day (a test split)
    # method "time": > 0 moves the eval window this many windows back in time and leaves
    # the later rows out (a backtest: `twotower backtest` runs windows 0, 1, ...).
    window: int = 0


@dataclasses.dataclass
class DataConfig:
    """The interactions: a CSV file (``path``) or a BigQuery table or view (``bigquery``).

    A file is prepared by the SQL program on DuckDB (``twotower run``,
    ``compile``); a BigQuery table is read on Vertex AI by BigQueryExampleGen
    with the same program rendered for BigQuery (``twotower compile``).
    """
    query_id: str
    candidate_id: str
    path: Optional[str] = None
    bigquery: Optional[str] = None          # project.dataset.table, e.g. my-proj.shop.orders
    timestamp: Optional[str] = None
    # A numeric timestamp (in data.timestamp and in timestamp features) counts seconds ("s"),
    # milliseconds ("ms") or microseconds ("us") since 1970; ISO 8601 text is read as written.
    timestamp_unit: str = "s"
    candidates: Optional[CandidateTableConfig] = None
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)

    # "first": a query's later interactions with a candidate it already had (re-orders)
    # are not training rows, so the model learns what a customer will add, not what they
    # re-buy; they still count in histories and stay in the held-out splits (where
    # "buy again" is evaluated). "keep": every row is a training row.
    repeats: str = "keep"

    @property
    def source(self) -> str:
        """The table as messages name it: the file, or ``bigquery:project.dataset.table``."""
        return self.path or f"bigquery:{self.bigquery}"


@dataclasses.dataclass
class TowerConfig:
    """Features, then ``layers`` dense layers (each followed by ``norm`` and dropout)."""
    features: List[FeatureConfig]
    layers: List[int] = dataclasses.field(default_factory=lambda: [64])
    dropout: float = 0.0
    norm: str = "none"
    l2: float = 0.0                            # L2 penalty on the dense kernels


@dataclasses.dataclass
class DemandPriorConfig:
    """A learned score offset from each candidate's recent demand (:mod:`trainer.prior`).

    ``windows``: lengths in days of the demand counts (e.g. purchases in the last
    1, 7 and 28 days before the query's day); ``all_time`` adds every earlier day.
    Counted from the rows the model is fitted on, strictly before each row's day;
    evaluated and served as of the end of those rows. Needs ``data.timestamp``.
    """
    windows: List[int] = dataclasses.field(default_factory=lambda: [1, 3, 7, 14, 28])
    all_time: bool = True


@dataclasses.dataclass
class ModelConfig:
    embedding_dim: int = 32
    output_dim: int = 32
    activation: str = "relu"
    l2_normalize: bool = True
    temperature: Optional[float] = 0.1
    remove_accidental_hits: bool = True
    logq_correction: bool = True
    # Training loss: "full_catalog" is an exact softmax over every deduplicated
    # candidate; "sampled" a softmax over the positive and sampled_negatives candidates
    # drawn uniformly from the catalog each step (weighted to estimate the full one);
    # "in_batch" uses the batch's candidates as negatives (logQ-corrected); "auto" picks
    # full_catalog when the catalog has at most full_catalog_max ids, else in_batch.
    softmax: str = "auto"
    full_catalog_max: int = 50_000
    sampled_negatives: int = 2048
    # Share of each vocabulary feature's values (ids, categories, tokens, history items)
    # sent to the out-of-vocabulary row during training, so the rows that cold queries,
    # new candidates and unseen values get at serving time are learned, not random.
    oov_dropout: float = 0.05
    # A learned score offset per catalog candidate, added to the (temperature-scaled)
    # similarity: it can carry "best-seller", which an L2-normalised dot product can't.
    candidate_bias: bool = False
    # Set (even to {}) to add a learned prior from each candidate's recent demand: the
    # recency a purchase log rewards, as a chosen part of the model (DemandPriorConfig).
    demand_prior: Optional[DemandPriorConfig] = None
    top_k: List[int] = dataclasses.field(default_factory=lambda: [10, 50, 100])


@dataclasses.dataclass
class TrainingConfig:
    learning_rate: float = 0.01
    epochs: int = 5
    batch_size: int = 512
    optimizer: str = "adam"
    clipping: str = "global_norm"
    clip_value: float = 5.0
    collapse_patience: int = 20
    collapse_threshold: float = 1e-7           # absolute ~0 for a tower's gradient norm
    collapse_ratio: float = 1e-4               # or this fraction of the tower's peak norm
    seed: int = 42
    allow_risky_learning_rate: bool = False
    # Stop when the eval split's held-out metric (e.g. recall_at_20; default: recall at the
    # first model.top_k) hasn't improved for this many epochs, and keep the best epoch's
    # weights; null trains every epoch and keeps the last.
    early_stopping_patience: Optional[int] = None
    early_stopping_metric: Optional[str] = None
    # After choosing the epoch count on the eval split, fit again from scratch on train +
    # eval (vocabularies included) for that many epochs and push that model: it has seen
    # the newest interactions. The push gate still judges the model chosen on eval.
    # false: push the model fitted on train alone.
    refit: bool = True


@dataclasses.dataclass
class PipelineConfig:
    name: str = "twotower"
    # The folder holding pipelines (default "runs"); this one's files go to <root>/<name>.
    root: Optional[str] = None
    serving_k: int = 10
    # "exact": brute-force top-k over the catalog; "scann": an approximate ScaNN index in
    # serving_default (needs the scann package where the model trains and is served).
    serving_index: str = "exact"
    # ML Metadata's cache (TFX's convention): a rerun with unchanged input and config reuses
    # each component's earlier result; false re-executes every component on every run.
    enable_cache: bool = True
    # Push gate: the model is pushed only if its full-catalog recall on the held-out split
    # (test if configured, else eval) is above this multiple of popularity's at every
    # cut-off it serves (gate_k); null switches the gate off (every completed model is pushed).
    min_lift_over_popularity: Optional[float] = 1.0
    # The one cut-off the gate compares at; null: every model.top_k up to serving_k.
    gate_k: Optional[int] = None
    # Beam's DirectRunner (ExampleGen, StatisticsGen, Transform): 1 runs in memory in one
    # process; N > 1 runs N worker processes (direct_running_mode=multi_processing).
    beam_workers: int = 1


@dataclasses.dataclass
class DataflowConfig:
    """Beam components (ExampleGen, StatisticsGen, Transform) on Dataflow, from Vertex AI."""
    temp_location: Optional[str] = None     # gs://...; default <vertex.pipeline_root>/beam-temp
    machine_type: str = "n1-standard-4"
    max_workers: int = 10
    disk_size_gb: int = 50                  # a worker's disk: it unpacks the ~12 GB image
    service_account: Optional[str] = None   # default: vertex.service_account
    network: Optional[str] = None
    subnetwork: Optional[str] = None        # e.g. regions/europe-west4/subnetworks/default


@dataclasses.dataclass
class VertexTrainingConfig:
    """The Trainer as a Vertex AI Training custom job, on its own machine (and GPUs)."""
    machine_type: str = "n1-standard-8"
    accelerator_type: Optional[str] = None  # e.g. NVIDIA_TESLA_T4, NVIDIA_L4
    accelerator_count: int = 0              # > 1: MirroredStrategy over the GPUs
    replica_count: int = 1                  # one machine (multi-worker is not supported)


@dataclasses.dataclass
class ModelUploadConfig:
    """After a push, the model registered in Vertex AI Model Registry (not deployed)."""
    # The serving container, e.g. us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-16:latest
    # (a prebuilt TensorFlow one as new as the training TensorFlow, 2.16, or your own).
    serving_image: str
    display_name: Optional[str] = None      # default: pipeline.name


@dataclasses.dataclass
class VertexConfig:
    """Where `twotower submit` sends the compiled pipeline (Vertex AI Pipelines)."""
    project: Optional[str] = None           # Google Cloud project id
    region: Optional[str] = None            # e.g. europe-west4
    pipeline_root: Optional[str] = None     # gs://bucket/path: artifacts of every run
    service_account: Optional[str] = None   # the job runs as it (default: Compute default)
    labels: Dict[str, str] = dataclasses.field(default_factory=dict)
    enable_caching: bool = True              # Vertex AI's cache, like pipeline.enable_cache
    # Another API endpoint (a regional or Private Service Connect one); an http:// endpoint is
    # a local stand-in of the REST API: anonymous credentials, REST transport.
    api_endpoint: Optional[str] = None
    # Set (even to {}) to run the Beam components on Dataflow; null: DirectRunner in the
    # component's container.
    dataflow: Optional[DataflowConfig] = None
    # Set (even to {}) to train on Vertex AI Training; null: the Trainer runs in the
    # pipeline step's container (no GPU).
    training: Optional[VertexTrainingConfig] = None
    # Set to upload each pushed model to Vertex AI Model Registry; null: no upload.
    model_upload: Optional[ModelUploadConfig] = None


@dataclasses.dataclass
class Config:
    data: DataConfig
    query_tower: TowerConfig
    candidate_tower: TowerConfig
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    vertex: VertexConfig = dataclasses.field(default_factory=VertexConfig)

    @classmethod
    def from_dict(cls, raw: Any) -> "Config":
        problems: List[tuple] = []
        cfg = _parse(cls, raw, "", problems)
        if problems:
            raise ConfigError(problems)
        for _, feature in cfg.features():
            feature.fill_kind_defaults()
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls.from_dict(json.loads(text))

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON form: equal configs, equal hashes."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def features(self):
        """Yields ``(tower, FeatureConfig)`` for both towers, query tower first."""
        for tower in ("query_tower", "candidate_tower"):
            for feature in getattr(self, tower).features:
                yield tower, feature


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _parse(tp: Any, value: Any, path: str, problems: List[tuple]) -> Any:
    """Checks ``value`` against the annotation ``tp``; records problems."""
    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _parse(args[0], value, path, problems)
        for arg in args:  # Union[str, float]: accept the first that fits
            if arg is str and isinstance(value, str):
                return value
            if arg is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        problems.append((path, f"expected a string or a number, got {_describe(value)}"))
        return None
    if origin in (list, List):
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            problems.append((path, f"expected a list, got {_describe(value)}"))
            return []
        return [_parse(item_tp, v, _join(path, i), problems) for i, v in enumerate(value)]
    if origin in (dict, Dict):
        key_tp, item_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            problems.append((path, f"expected a mapping, got {_describe(value)}"))
            return {}
        return {_parse(key_tp, k, path, problems): _parse(item_tp, v, _join(path, k), problems)
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _parse_dataclass(tp, value, path, problems)
    if tp is bool:
        if not isinstance(value, bool):
            problems.append((path, f"expected true or false, got {_describe(value)}"))
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append((path, f"expected an integer, got {_describe(value)}"))
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((path, f"expected a number, got {_describe(value)}"))
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append((path, f"expected a string, got {_describe(value)}"))
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {path}")  # a bug here, not in the config


def _parse_dataclass(cls: Any, value: Any, path: str, problems: List[tuple]) -> Any:
    if not isinstance(value, dict):
        problems.append((path, f"expected a mapping, got {_describe(value)}"))
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in value:
        if key not in fields:
            known = ", ".join(sorted(fields))
            problems.append((_join(path, key), f"unknown key (known keys: {known})"))
    kwargs = {}
    for name, field in fields.items():
        key_path = _join(path, name)
        if name in value:
            kwargs[name] = _parse(hints[name], value[name], key_path, problems)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            problems.append((key_path, "required key is missing"))
    try:
        return cls(**kwargs)
    except TypeError:  # a required key was missing: already reported
        return None


def apply_overrides(raw: dict, overrides) -> dict:
    """Applies ``key.path=value`` overrides to a raw config mapping, in place.

    The value is read as YAML, so ``0.01`` is a number, ``true`` a bool,
    ``[64, 32]`` a list and ``abc`` a string. List items are addressed by
    index: ``query_tower.features.0.embedding_dim=16``; the index one past the
    end appends: ``query_tower.features.3={name: x, column: x, kind: categorical}``.
    """
    import yaml

    for item in overrides:
        if "=" not in item:
            raise ConfigError([("--set", f"expected KEY=VALUE, got {item!r}")])
        dotted, text = item.split("=", 1)
        keys = dotted.strip().split(".")
        if not all(keys):
            raise ConfigError([("--set", f"malformed key {dotted!r}")])
        try:
            value = load_yaml(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError([(dotted, f"cannot read value {text!r}: {yaml_problem(exc)}")]) \
                from None
        node: Any = raw
        for depth, key in enumerate(keys[:-1]):
            here = ".".join(keys[: depth + 1])
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise ConfigError([(here, f"no list item {key!r} (the list has {len(node)})")])
                node = node[int(key)]
            elif isinstance(node, dict):
                node = node.setdefault(key, {})
            else:
                raise ConfigError([(here, "is not a mapping or a list")])
        last = keys[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) > len(node):
                raise ConfigError([(dotted, f"no list item {last!r} (the list has {len(node)}; "
                                    f"index {len(node)} appends)")])
            if int(last) == len(node):
                node.append(value)
            else:
                node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError([(dotted, "its parent is not a mapping or a list")])
    return raw


MAX_VALUES = 100_000  # a config is a few hundred values; more is a mistake or an attack


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with three guards: dates stay text, a key may appear once per
    mapping, and aliases may not expand the config past :data:`MAX_VALUES` values.

    PyYAML turns an unquoted ``2024-03-01`` into a date (and raises a bare
    ValueError on ``2024-02-30``); the config's dates are strings validation
    reads. It keeps the last of two equal keys silently, and an alias bomb (a
    few lines whose aliases nest into billions of values) would make walking
    the config take forever. Tags that construct objects (``!!python/object``)
    are refused by the safe loader itself.

    Raises:
      yaml.YAMLError: not YAML, a duplicate key, a tag, or too many values.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line "
                        f"{seen[key].line + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark
            return super().construct_mapping(node, deep=deep)

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    value = yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader)
    count_values(value, lambda: yaml.YAMLError(
        f"the config expands to more than {MAX_VALUES:,} values (nested YAML aliases?)"))
    return value


def yaml_problem(exc) -> str:
    """A YAML error in one line: what, and the line it is on."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{what} (line {mark.line + 1})" if mark is not None else what


def count_values(value: Any, error) -> int:
    """Counts values, shared ones each time they are reached, up to :data:`MAX_VALUES`."""
    stack, count = [value], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise error()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def read_raw(path: str) -> dict:
    """Reads a YAML or JSON config file into a mapping (ConfigError naming ``--config`` if
    it can't be read)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError([("--config", f"{path}: cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([("--config", f"{path}: not UTF-8 text ({exc.reason}); save it "
                            "as UTF-8")]) from None
    if path.endswith(".json"):
        def unique(pairs):
            keys = [k for k, _ in pairs]
            twice = sorted({k for k in keys if keys.count(k) > 1})
            if twice:
                raise ValueError(f"duplicate key(s) {twice} in one object")
            return dict(pairs)

        try:
            raw = json.loads(text, object_pairs_hook=unique)
        except ValueError as exc:  # JSONDecodeError is a ValueError
            raise ConfigError([("", f"{path}: not valid JSON: {exc}")]) from None
    else:
        import yaml

        try:
            raw = load_yaml(text)
        except yaml.YAMLError as exc:
            raise ConfigError([("", f"{path}: not valid YAML: {yaml_problem(exc)}")]) from None
    if not isinstance(raw, dict):
        raise ConfigError([("", f"{path}: the top level must be a mapping")])
    return raw


def load_config(path: str, overrides=()) -> Config:
    """Reads, overrides and parses a config; run ``validate`` on the result."""
    return Config.from_dict(apply_overrides(read_raw(path), overrides))
