"""Config parsing, overrides, the JSON round trip and semantic validation."""
import copy
import json
import sys

import pytest

from pipelines.config.schema import Config, ConfigError, apply_overrides, load_config
from pipelines.config.learning_rate import learning_rate_advice
from pipelines.validate import validate


def keys_of(exc):
    return [key for key, _ in exc.value.problems]


def test_demo_config_parses_and_validates(raw_config):
    cfg = Config.from_dict(raw_config)
    assert cfg.data.query_id == "customer_id"
    assert cfg.data.candidates.id == "product_id"
    # the demo keeps its plain model: auto_history false, so no history is added
    assert [f.name for f in cfg.query_tower.features] == ["customer", "segment", "region"]
    assert cfg.defaults_applied == []
    assert validate(cfg) == []


def test_the_default_history_is_added_only_where_it_applies(raw_config):
    raw_config = apply_overrides(copy.deepcopy(raw_config), ["query_tower.auto_history=true"])

    def names(*overrides):
        cfg = Config.from_dict(apply_overrides(copy.deepcopy(raw_config), list(overrides)))
        return [f.name for f in cfg.query_tower.features if f.kind == "history"]

    assert names() == ["history"]  # the demo's features with the default on
    cfg = Config.from_dict(raw_config)
    assert cfg.query_tower.features[-1].max_length == 20  # the kind's defaults, filled
    assert [a[0] for a in cfg.defaults_applied] == ["query_tower.features"]
    assert validate(cfg) == []
    assert names("query_tower.auto_history=false") == []
    assert names("data.timestamp=null", "data.split.method=hash") == []  # no 'earlier'
    listed = "query_tower.features.3={name: recent, kind: history, max_length: 5}"
    assert names(listed) == ["recent"]  # the user's own, alone
    taken = "query_tower.features.1.name=history"  # the name taken: the next free one
    assert names(taken) == ["history_2"]
    # it shares the candidate id table: the id feature's embedding_dim, when it sets one
    cfg = Config.from_dict(apply_overrides(copy.deepcopy(raw_config),
                                           ["candidate_tower.features.0.embedding_dim=24"]))
    assert cfg.query_tower.features[-1].embedding_dim == 24 and validate(cfg) == []
    # the frozen config lists it: reading it again adds nothing
    again = Config.from_json(Config.from_dict(raw_config).to_json())
    assert names() == [f.name for f in again.query_tower.features if f.kind == "history"]
    assert again.defaults_applied == []


def test_importing_config_does_not_import_tensorflow_or_tfx():
    import subprocess

    code = ("import sys, pipelines.config.schema, pipelines.validate, pipelines.build.codegen, "
            "pipelines.data.prepare, pipelines.cli.main; "
            "bad = [m for m in ('tensorflow', 'tfx', 'apache_beam') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_json_round_trip_is_exact(raw_config):
    cfg = Config.from_dict(raw_config)
    again = Config.from_json(cfg.to_json())
    assert again == cfg
    assert again.fingerprint() == cfg.fingerprint()
    assert json.loads(cfg.to_json())["training"]["learning_rate"] == 0.01


def test_fingerprint_changes_with_any_value(raw_config):
    a = Config.from_dict(raw_config)
    b = Config.from_dict(apply_overrides(copy.deepcopy(raw_config), ["training.epochs=9"]))
    assert a.fingerprint() != b.fingerprint()


def test_missing_required_keys_are_named():
    with pytest.raises(ConfigError) as exc:
        Config.from_dict({"data": {"path": "x.csv"}, "query_tower": {"features": []}})
    assert set(keys_of(exc)) == {"data.query_id", "data.candidate_id", "candidate_tower"}


def test_unknown_and_mistyped_keys_are_named(raw_config):
    raw = apply_overrides(raw_config, ["training.learnig_rate=0.1", "training.epochs=many",
                                       "query_tower.features.0.embedding_dim=true",
                                       "model.l2_normalize=1"])
    with pytest.raises(ConfigError) as exc:
        Config.from_dict(raw)
    assert keys_of(exc) == ["query_tower.features.0.embedding_dim", "model.l2_normalize",
                            "training.learnig_rate", "training.epochs"]
    assert "unknown key" in str(exc.value)
    assert "expected an integer, got 'many'" in str(exc.value)


def test_overrides_parse_values_as_yaml(raw_config):
    apply_overrides(raw_config, ["training.learning_rate=0.02", "query_tower.layers=[32, 16]",
                                 "model.temperature=null", "pipeline.name=x-1",
                                 "candidate_tower.features.2.transform=minmax"])
    cfg = Config.from_dict(raw_config)
    assert cfg.training.learning_rate == 0.02
    assert cfg.query_tower.layers == [32, 16]
    assert cfg.model.temperature is None
    assert cfg.pipeline.name == "x-1"
    assert cfg.candidate_tower.features[2].transform == "minmax"


@pytest.mark.parametrize("item, key", [
    ("nonsense", "--set"),
    ("query_tower.features.9.name=x", "query_tower.features.9"),
    ("training.learning_rate.x=1", "training.learning_rate.x"),
])
def test_bad_overrides_are_named(raw_config, item, key):
    with pytest.raises(ConfigError) as exc:
        apply_overrides(raw_config, [item])
    assert keys_of(exc) == [key]


def test_load_config_reads_yaml_and_json(tmp_path, raw_config):
    (tmp_path / "c.json").write_text(json.dumps(raw_config))
    from_json = load_config(str(tmp_path / "c.json"), ["training.epochs=2"])
    assert from_json.training.epochs == 2
    (tmp_path / "bad.yaml").write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(tmp_path / "bad.yaml"))


def _invalid(raw_config, *overrides, check_data=False):
    cfg = Config.from_dict(apply_overrides(raw_config, list(overrides)))
    with pytest.raises(ConfigError) as exc:
        validate(cfg, check_data=check_data)
    return keys_of(exc), str(exc.value)


@pytest.mark.parametrize("overrides, key", [
    (["query_tower.features.1.name=customer"], "query_tower.features.1.name"),
    (["query_tower.features.1.name=class"], "query_tower.features.1.name"),
    (["query_tower.features.1.name=my feature"], "query_tower.features.1.name"),
    (["query_tower.features.1.name=_hidden"], "query_tower.features.1.name"),
    (["query_tower.features.1.column=customer_id", "query_tower.features.1.kind=id"],
     "query_tower.features.1"),
    (["query_tower.features.1.kind=image"], "query_tower.features.1.kind"),
    (["query_tower.features.1.column=product_id"], "query_tower.features.1.column"),
    (["candidate_tower.features.1.column=customer_id"], "candidate_tower.features.1.column"),
    (["query_tower.features.1.transform=log"], "query_tower.features.1.transform"),
    (["candidate_tower.features.2.transform=cube"], "candidate_tower.features.2.transform"),
    (["candidate_tower.features.0.max_vocab_size=10"], "candidate_tower.features.0"),
    (["query_tower.features.1.embedding_dim=0"], "query_tower.features.1.embedding_dim"),
    (["query_tower.layers=[0]"], "query_tower.layers.0"),
    (["query_tower.features=[]"], "query_tower.features"),
    (["model.top_k=[100, 10]"], "model.top_k"),
    (["model.temperature=0"], "model.temperature"),
    (["training.learning_rate=0"], "training.learning_rate"),
    (["training.learning_rate=.nan"], "training.learning_rate"),
    (["training.batch_size=1"], "training.batch_size"),
    (["training.optimizer=rmsprop"], "training.optimizer"),
    (["training.clip_value=0"], "training.clip_value"),
    (["data.candidate_id=customer_id"], "data.candidate_id"),
    (["data.timestamp=null"], "data.split.method"),
    (["data.split.eval_fraction=0.9"], "data.split.eval_fraction"),
    (["pipeline.name=Has Spaces"], "pipeline.name"),
])
def test_each_rule_names_its_key(raw_config, overrides, key):
    keys, _ = _invalid(raw_config, *overrides)
    assert key in keys


def test_all_problems_are_reported_together(raw_config):
    keys, _ = _invalid(raw_config, "training.batch_size=1", "model.output_dim=0",
                       "pipeline.serving_k=0")
    assert keys == ["model.output_dim", "training.batch_size", "pipeline.serving_k"]


def test_field_failure_learning_rate_is_refused_then_allowed(raw_config):
    """Adagrad at 0.1 with a 4-layer tower: the rate that collapsed in the field."""
    risky = ["training.optimizer=adagrad", "training.learning_rate=0.1",
             "query_tower.layers=[64, 64, 64]"]
    keys, text = _invalid(raw_config, *risky)
    assert keys == ["training.learning_rate"]
    assert "recommended range 0.0005..0.05" in text
    cfg = Config.from_dict(apply_overrides(raw_config,
                                           risky + ["training.allow_risky_learning_rate=true"]))
    warnings = validate(cfg, check_data=False)
    assert len(warnings) == 1 and "risky for adagrad with 4-layer towers" in warnings[0]


def test_learning_rate_advice_rules(raw_config):
    def advice(*overrides):
        raw = apply_overrides(copy.deepcopy(raw_config), list(overrides))
        return learning_rate_advice(Config.from_dict(raw))
    assert advice("training.optimizer=adagrad", "training.learning_rate=0.1") == []  # 2 layers
    assert advice("training.optimizer=adagrad", "training.learning_rate=0.05",
                  "query_tower.layers=[8, 8]") == []
    assert len(advice("training.optimizer=adagrad", "training.learning_rate=0.06",
                      "candidate_tower.layers=[8, 8]")) == 1
    assert advice("training.learning_rate=0.01") == []
    assert len(advice("training.learning_rate=0.02")) == 1  # adam


def test_columns_are_checked_against_the_csv_headers(raw_config):
    keys, text = _invalid(raw_config, "query_tower.features.1.column=segmnt",
                          "candidate_tower.features.1.column=colour", check_data=True)
    assert keys == ["query_tower.features.1.column", "candidate_tower.features.1.column"]
    assert "'segmnt' is not in" in text and "candidate table" in text


def test_missing_data_file_is_named(raw_config, tmp_path):
    keys, text = _invalid(raw_config, f"data.path={tmp_path / 'nope.csv'}", check_data=True)
    assert keys == ["data.path"] and "file not found" in text
    assert "twotower demo" not in text  # the hint is for the demo config's own data only


@pytest.mark.parametrize("name", ["b2b_demo", "movielens", "movielens_bench", "ta_feng_bench",
                                  "complete_journey_bench", "purchases"])
def test_every_example_config_parses_and_validates(name):
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_config(os.path.join(root, "examples", f"{name}.yaml"))
    assert validate(cfg, check_data=False) == []
    assert Config.from_json(cfg.to_json()) == cfg


def test_purchases_example_runs_its_checks_on_the_demo_columns(small_data):
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_config(os.path.join(root, "examples", "purchases.yaml"), [
        f"data.path={os.path.join(small_data, 'purchases.csv')}",
        f"data.candidates.path={os.path.join(small_data, 'products.csv')}"])
    assert validate(cfg) == []
