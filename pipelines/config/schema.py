"""Typed configuration of a two-tower pipeline, with a JSON/YAML round trip.

One config file describes the data, the query and candidate towers, the model
and training. Parsing is strict: an unknown key, a value of the wrong type or
a missing required key is reported with its dotted path, e.g.
``training.learning_rate: expected a number, got 'fast'``. All problems are
collected and raised together as one :class:`ConfigError`.

This module is the schema; the typed parser is :mod:`pipelines.config.parse`,
reading files and ``--set`` overrides :mod:`pipelines.config.loading` (both
re-exported here: ``ConfigError``, ``read_raw``, ``apply_overrides``).
Semantic rules (ranges, options that can't go together, columns that must
exist in the data) live in :mod:`pipelines.validate`.

This module imports neither TensorFlow nor TFX.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Union

# Loading and the typed parser live beside the schema; re-exported here, where callers find them.
from pipelines.config.loading import (apply_overrides, history_default, purchase_log_defaults,
                                      read_raw)
from pipelines.config.parse import ConfigError, parse_value
from pipelines.config.tuning import RangeConfig, TuningConfig  # noqa: F401 (re-exported)
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
GATE_AGAINST = ("popularity", "best")  # pipeline.gate_against
ACTIVATIONS = ("relu", "gelu", "tanh", "linear")
# data.filter: a condition's operator; the ones after ">=" take a list, the last two no value
FILTER_OPS = ("=", "!=", "<", "<=", ">", ">=", "in", "not_in", "is_null", "not_null")
CANDIDATES_MISSING = ("error", "drop")  # data.candidates.missing
DEFAULT_WEIGHT_CLIP = 10.0  # data.weight_clip when null: no row counts more than 10 rows


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
    # An interaction naming a candidate the table lacks: "error" refuses the data (naming the
    # first such row); "drop" drops those rows and reports how many rows and candidates.
    missing: str = "error"

    @property
    def source(self) -> str:
        """The table as messages name it: the file, or ``bigquery:project.dataset.table``."""
        return self.path or f"bigquery:{self.bigquery}"


@dataclasses.dataclass
class FilterConfig:
    """One condition of ``data.filter``: keep the interaction rows where ``column op value``.

    ``value`` is a literal (a string or a number) for ``= != < <= > >=``, a list
    of literals for ``in``/``not_in``, and absent for ``is_null``/``not_null``.
    An empty cell is null: it meets ``is_null`` only (SQL's rule).
    """
    column: str
    op: str
    value: Optional[Union[str, float, List[Union[str, float]]]] = None


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
    # Conditions every kept interaction row meets (all of them), applied before the split:
    # every split, the catalog and the histories see only the kept rows.
    filter: List[FilterConfig] = dataclasses.field(default_factory=list)
    # A numeric column (e.g. a quantity) whose value is each training row's example weight,
    # clipped to [0, weight_clip] (null: DEFAULT_WEIGHT_CLIP); rows of weight 0 are dropped.
    # Evaluation and the baselines count rows unweighted.
    weight: Optional[str] = None
    weight_clip: Optional[float] = None

    @property
    def weight_limit(self) -> float:
        """The largest example weight: ``weight_clip``, or DEFAULT_WEIGHT_CLIP when null."""
        return DEFAULT_WEIGHT_CLIP if self.weight_clip is None else self.weight_clip

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
class QueryTowerConfig(TowerConfig):
    """The query tower; ``auto_history`` (with ``data.timestamp``): when no history feature is
    listed, one is added (``pipelines.config.loading.HISTORY_DEFAULT``; false: none)."""
    auto_history: bool = True


@dataclasses.dataclass
class DemandPriorConfig:
    """A learned score offset from each candidate's recent demand (:mod:`trainer.prior`).

    ``windows``: lengths in days of the demand counts (e.g. purchases in the last
    1, 7 and 28 days before the query's day); ``all_time`` adds every earlier day.
    Counted from the rows the model is fitted on, strictly before each row's day;
    evaluated and served as of the end of those rows. Needs ``data.timestamp``.
    ``smoothing``: each window's counts are a share smoothed toward the all-time share with
    this many days of the log's mean volume as a pseudo-count (0: ``log1p`` of raw counts).
    """
    windows: List[int] = dataclasses.field(default_factory=lambda: [1, 3, 7, 14, 28])
    all_time: bool = True
    smoothing: float = 1.0


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
class ScannConfig:
    """ScaNN's index with ``serving_index: scann``; null: the rule measured on 10k-1M
    candidates (BENCHMARKS.md, "Catalogs up to a million candidates")."""
    num_leaves: Optional[int] = None        # k-means leaves; null: ~sqrt(catalog size)
    leaves_to_search: Optional[int] = None  # leaves a query scores; null: a third, at most 30
    reorder: Optional[int] = None           # candidates re-ranked exactly; null: max(4k, 250)


@dataclasses.dataclass
class BaselinesConfig:
    """The baselines every held-out evaluation ranks beside the model (trainer.baselines)."""
    recent_days: int = 28                   # recent popularity: the last N days before the cut
    item_item_memory_mb: int = 512          # EASE covers the most-bought items that fit this
    ease_l2: float = 500.0                  # EASE's lambda
    recency_half_life_days: float = 28.0    # buy again: an interaction's weight halves each


DEFAULT_ROOT = "runs"  # pipeline.root unset


def pipeline_folder(cfg) -> str:
    """The pipeline's own folder, ``<pipeline.root>/<pipeline.name>``, absolute
    (:func:`pipelines.runners.local.pipeline_dir` says what it holds)."""
    return os.path.abspath(os.path.join(cfg.pipeline.root or DEFAULT_ROOT, cfg.pipeline.name))


@dataclasses.dataclass
class PipelineConfig:
    name: str = "twotower"
    # The folder holding pipelines (default "runs"); this one's files go to <root>/<name>.
    root: Optional[str] = None
    serving_k: int = 10
    # "exact": brute-force top-k over the catalog; "scann": an approximate ScaNN index in
    # serving_default (needs the scann package where the model trains and is served).
    serving_index: str = "exact"
    scann: ScannConfig = dataclasses.field(default_factory=ScannConfig)
    # ML Metadata's cache (TFX's convention): a rerun with unchanged input and config reuses
    # each component's earlier result; false re-executes every component on every run.
    enable_cache: bool = True
    # Push gate: the model is pushed only if its full-catalog recall on the held-out split
    # (test if configured, else eval) is above this multiple of popularity's at every
    # cut-off it serves (gate_k); null switches the gate off (every completed model is pushed).
    min_lift_over_popularity: Optional[float] = 1.0
    # The one cut-off the gate compares at; null: every model.top_k up to serving_k.
    gate_k: Optional[int] = None
    # What the gate compares the model with: "popularity" (global popularity), or "best"
    # (every baseline: popularity, recent popularity, EASE; the model must beat each).
    gate_against: str = "popularity"
    baselines: BaselinesConfig = dataclasses.field(default_factory=BaselinesConfig)
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
    # The serving container: `twotower`, the image `twotower image` builds (it serves with the
    # training TensorFlow, pipelines/vertex/serve.py), or a prebuilt TensorFlow one google-cloud-
    # aiplatform lists that is as new as the training TensorFlow (none is, for 2.16).
    serving_image: str
    display_name: Optional[str] = None      # default: pipeline.name


@dataclasses.dataclass
class VectorSearchConfig:
    """After a push, the catalog in a Vertex AI Vector Search index on an index endpoint and
    the query tower on a Vertex AI endpoint (both billed per node hour while deployed)."""
    serving_image: str                      # the query tower's container (as model_upload's)
    display_name: Optional[str] = None      # index, endpoints, model; default: pipeline.name
    index_machine_type: str = "e2-standard-2"
    # SHARD_SIZE_SMALL/MEDIUM/LARGE; null: the smallest the index machine serves that holds
    # the catalog's vectors (pipelines/vertex/index_shards.py: Vertex AI's table)
    shard_size: Optional[str] = None
    endpoint_machine_type: str = "n1-standard-2"
    min_replica_count: int = 1
    max_replica_count: int = 1
    approximate_neighbors_count: int = 150  # tree-AH's candidates before re-ranking
    leaf_nodes_to_search_percent: int = 10


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
    # Set to deploy each pushed model for Vector Search (index + query tower); null: not.
    vector_search: Optional[VectorSearchConfig] = None


@dataclasses.dataclass
class Config:
    data: DataConfig
    query_tower: QueryTowerConfig
    candidate_tower: TowerConfig
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    vertex: VertexConfig = dataclasses.field(default_factory=VertexConfig)
    # Set (even to {}) to search hyperparameters (`twotower tune`, and a Tuner step before
    # the Trainer in the pipeline); null: the config's values are trained as written.
    tuning: Optional[TuningConfig] = None

    @classmethod
    def from_dict(cls, raw: Any) -> "Config":
        """The typed config of a raw mapping (not modified), with the defaults that won on
        eval windows filled in where they apply (``defaults_applied`` lists them: key,
        value, why, when it applies and how to choose otherwise)."""
        problems: List[tuple] = []
        raw = copy.deepcopy(raw)
        applied = history_default(raw) + purchase_log_defaults(raw)
        cfg = parse_value(cls, raw, "", problems)
        if problems:
            raise ConfigError(problems)
        for _, feature in cfg.features():
            feature.fill_kind_defaults()
        if cfg.data.weight and cfg.data.weight_clip is None:  # explicit in the frozen config
            cfg.data.weight_clip = DEFAULT_WEIGHT_CLIP
        cfg.defaults_applied = applied  # not a field: the filled values are, and are hashed
        return cfg

    def to_dict(self) -> dict:
        """The config as plain data; ``tuning`` only when set (a config without one has the
        same dict, fingerprint and generated modules as before the section existed)."""
        out = dataclasses.asdict(self)
        if out.get("tuning") is None:
            out.pop("tuning", None)
        return out

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


def load_config(path: str, overrides=()) -> Config:
    """Reads, overrides and parses a config; run ``validate`` on the result."""
    return Config.from_dict(apply_overrides(read_raw(path), overrides))
