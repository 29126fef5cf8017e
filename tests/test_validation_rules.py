"""Every refusal rule of validation names its key: the rules test_config.py doesn't cover.

Each case is one bad value in the demo config; the error must name exactly the key to fix.
"""
import pytest

from pipelines.config.schema import Config, ConfigError, apply_overrides
from pipelines.validate import validate

CASES = [
    (["data.query_id=''"], "data.query_id"),
    (["data.candidate_id=''"], "data.candidate_id"),
    (["data.timestamp=customer_id"], "data.timestamp"),
    (["data.repeats=sometimes"], "data.repeats"),
    (["data.split.method=random"], "data.split.method"),
    (["data.split.test_fraction=0.9"], "data.split.test_fraction"),
    (["data.candidates.id=''"], "data.candidates.id"),
    (["data.split.method=days", "data.split.test_days=-1"], "data.split.test_days"),
    (["query_tower.layers=[8, 8, 8, 8, 8, 8, 8, 8, 8]"], "query_tower.layers"),
    (["query_tower.dropout=1.0"], "query_tower.dropout"),
    (["candidate_tower.l2=-0.1"], "candidate_tower.l2"),
    (["query_tower.norm=group"], "query_tower.norm"),
    (["model.embedding_dim=0"], "model.embedding_dim"),
    (["model.activation=swish"], "model.activation"),
    (["model.softmax=hierarchical"], "model.softmax"),
    (["model.softmax=sampled", "model.sampled_negatives=0"], "model.sampled_negatives"),
    (["model.full_catalog_max=0"], "model.full_catalog_max"),
    (["model.oov_dropout=1.5"], "model.oov_dropout"),
    (["model.demand_prior={}", "data.timestamp=null", "data.split.method=hash"],
     "model.demand_prior"),
    (["model.demand_prior={windows: [], all_time: false}"], "model.demand_prior"),
    (["model.demand_prior={windows: [7, 1]}"], "model.demand_prior.windows"),
    (["model.demand_prior={windows: [0]}"], "model.demand_prior.windows"),
    (["model.demand_prior={}", "model.softmax=in_batch"], "model.softmax"),
    (["pipeline.gate_k=20"], "pipeline.gate_k"),
    (["training.epochs=0"], "training.epochs"),
    (["training.clipping=sometimes"], "training.clipping"),
    (["training.early_stopping_patience=0"], "training.early_stopping_patience"),
    (["training.early_stopping_patience=2", "training.early_stopping_metric=accuracy"],
     "training.early_stopping_metric"),
    (["training.collapse_patience=0"], "training.collapse_patience"),
    (["training.collapse_threshold=-1.0"], "training.collapse_threshold"),
    (["training.collapse_ratio=2.0"], "training.collapse_ratio"),
    (["pipeline.min_lift_over_popularity=-1.0"], "pipeline.min_lift_over_popularity"),
    (["pipeline.beam_workers=0"], "pipeline.beam_workers"),
    (["pipeline.serving_index=annoy"], "pipeline.serving_index"),
    (["query_tower.features.1.column=null"], "query_tower.features.1.column"),
    (["query_tower.features.1.column=__twotower_history_x"], "query_tower.features.1.column"),
    (["candidate_tower.features.3={name: when, column: timestamp, kind: timestamp}"],
     "candidate_tower.features.3"),
    (["candidate_tower.features.2.embedding_dim=8"], "candidate_tower.features.2.embedding_dim"),
    (["candidate_tower.features.2.num_buckets=1"], "candidate_tower.features.2.num_buckets"),
    (["query_tower.features.1.max_vocab_size=0"], "query_tower.features.1.max_vocab_size"),
    (["query_tower.features.1.frequency_threshold=-1"],
     "query_tower.features.1.frequency_threshold"),
    (["query_tower.features.1.oov_buckets=0"], "query_tower.features.1.oov_buckets"),
    (["query_tower.features.3={name: pair, kind: cross, columns: [segment]}"],
     "query_tower.features.3.columns"),
    (["query_tower.features.3={name: recent, kind: history, max_length: 0}"],
     "query_tower.features.3.max_length"),
    (["query_tower.features.3={name: recent, kind: history, pooling: max}"],
     "query_tower.features.3.pooling"),
]


@pytest.mark.parametrize("overrides, key", CASES, ids=[k for _, k in CASES])
def test_the_rule_names_its_key(raw_config, overrides, key):
    cfg = Config.from_dict(apply_overrides(raw_config, overrides))
    with pytest.raises(ConfigError) as exc:
        validate(cfg, check_data=False)
    keys = [k for k, _ in exc.value.problems]
    assert key in keys, (keys, str(exc.value))
