"""The `tuning:` section: its refusals (one line each, naming the key), the default space,
the tuned values reaching a spec, and the Tuner step in the pipeline. Fast: no data read."""
import copy
import json

import pytest

from pipelines.config.schema import Config, ConfigError, apply_overrides
from pipelines.validate import validate


def refusal(raw, *overrides):
    """The one problem ``overrides`` give the config, as ``(key, line)``."""
    cfg = Config.from_dict(apply_overrides(copy.deepcopy(raw), list(overrides)))
    with pytest.raises(ConfigError) as caught:
        validate(cfg, check_data=False)
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0]


def test_a_config_without_tuning_keeps_its_dict_and_fingerprint(raw_config):
    cfg = Config.from_dict(raw_config)
    assert "tuning" not in cfg.to_dict()  # goldens, cache keys: as before the section
    tuned = Config.from_dict(apply_overrides(copy.deepcopy(raw_config), ["tuning={}"]))
    assert tuned.to_dict()["tuning"]["algorithm"] == "hyperband"
    assert tuned.fingerprint() != cfg.fingerprint()
    assert validate(tuned, check_data=False) == []


def test_an_empty_range_is_refused(raw_config):
    key, line = refusal(raw_config, "tuning.space={model.temperature: {}}")
    assert key == "tuning.space.model.temperature" and line.startswith("empty range")
    key, line = refusal(raw_config, "tuning.space={model.temperature: {min: 0.1, max: 0.1}}")
    assert "min equals max" in line
    key, line = refusal(raw_config, "tuning.space={training.batch_size: {values: [256]}}")
    assert "one choice" in line


def test_an_inverted_range_is_refused(raw_config):
    key, line = refusal(raw_config, "tuning.space={model.temperature: {min: 0.3, max: 0.1}}")
    assert (key, line) == ("tuning.space.model.temperature",
                           "inverted range: min 0.3 is above max 0.1")


def test_a_value_the_model_refuses_is_refused_by_the_models_rule(raw_config):
    key, line = refusal(raw_config, "tuning.space={model.output_dim: {values: [0, 32]}}")
    assert key == "tuning.space.model.output_dim"
    assert line == "value 0 is refused by the config's rules: must be in 1..1024"
    key, line = refusal(raw_config, "tuning.space={model.temperature: {min: 0.1, max: 500}}")
    assert "max 500" in line and "must be in (0, 100]" in line
    key, line = refusal(raw_config, "tuning.space={training.batch_size: {values: [1, 64]}}")
    assert "in-batch negatives need 2 or more" in line
    key, line = refusal(raw_config, "tuning.space={model.embedding_dim: {values: [16.5, 32]}}")
    assert "16.5" in line and "whole number" in line


def test_a_learning_rate_above_the_ceiling_is_refused(raw_config):
    # the demo's towers with adam: the ceiling is 0.01 (trainer.parameters.SAFE_LEARNING_RATE)
    key, line = refusal(raw_config,
                        "tuning.space={training.learning_rate: {min: 0.001, max: 0.05}}")
    assert key == "tuning.space.training.learning_rate"
    assert line.startswith("max 0.05 is refused by the config's rules: learning rate 0.05 is "
                           "risky for adam")
    ok = Config.from_dict(apply_overrides(copy.deepcopy(raw_config), [
        "tuning.space={training.learning_rate: {min: 0.001, max: 0.01}}"]))
    assert validate(ok, check_data=False) == []
    key, line = refusal(raw_config, "tuning.space={training.learning_rate: {min: 0, max: 0.01}}")
    assert "log-scale range needs min > 0" in line


def test_an_unknown_parameter_gets_did_you_mean(raw_config):
    key, line = refusal(raw_config, "tuning.space={model.embeding_dim: {values: [16, 32]}}")
    assert key == "tuning.space.model.embeding_dim"
    assert line.startswith("unknown parameter (tunable: training.learning_rate")
    assert line.endswith("did you mean 'model.embedding_dim'?")
    key, line = refusal(raw_config, "tuning.space={history.max_length: {values: [5, 10]}}")
    assert line.startswith("not tunable: a history's max_length shapes the Transform")


def test_the_search_settings_are_checked(raw_config):
    assert refusal(raw_config, "tuning.algorithm=hyperbnd") == (
        "tuning.algorithm", "'hyperbnd': use one of random, bayesian, hyperband; did you mean "
        "'hyperband'?")
    assert refusal(raw_config, "tuning.trials=0")[0] == "tuning.trials"
    assert refusal(raw_config, "tuning.max_epochs=0")[0] == "tuning.max_epochs"
    assert refusal(raw_config, "tuning.validation_fraction=0.6")[0] == \
        "tuning.validation_fraction"
    assert refusal(raw_config, "tuning.seed=-1")[0] == "tuning.seed"
    key, line = refusal(raw_config, "tuning={}", "data.timestamp=null", "data.split.method=hash",
                        "query_tower.features=[{name: customer, column: customer_id, "
                        "kind: id}]")
    assert key == "tuning" and "set data.timestamp" in line
    with pytest.raises(ConfigError) as caught:  # a typo in the section itself
        Config.from_dict(apply_overrides(copy.deepcopy(raw_config), ["tuning.trails=4"]))
    assert "did you mean 'trials'?" in str(caught.value)


def test_the_default_space_is_around_the_configs_values(raw_config):
    from pipelines.config.tuning_rules import search_space

    cfg = Config.from_dict(apply_overrides(copy.deepcopy(raw_config), ["tuning={}"]))
    space = search_space(cfg)
    lr = space["training.learning_rate"]
    assert (lr.min, lr.max, lr.log) == (0.001, 0.01, True)  # a tenth of the ceiling .. it
    b = cfg.training.batch_size
    assert space["training.batch_size"].values == [b / 2, b, b * 2]
    t = cfg.model.temperature
    assert (space["model.temperature"].min, space["model.temperature"].max) == (t / 2, t * 2)


def test_tuned_values_reach_the_spec_and_nothing_else():
    from trainer.tuning_space import apply_values, is_tuner_config, tuned_values

    spec = {"training": {"learning_rate": 0.01, "batch_size": 256},
            "model": {"embedding_dim": 32}}
    best = {"space": [], "values": {"training.learning_rate": 0.003, "model.embedding_dim": 64.0,
                                    "tuner/epochs": 3, "tuner/trial_id": "0001"}}
    assert is_tuner_config(best) and not is_tuner_config({"epochs": 3})
    out = apply_values(spec, best["values"])
    assert out == {"training": {"learning_rate": 0.003, "batch_size": 256},
                   "model": {"embedding_dim": 64}}
    assert spec["training"]["learning_rate"] == 0.01  # a copy
    with pytest.raises(ValueError, match="not tunable"):
        tuned_values({"model.activation": "gelu"})


def test_the_pipeline_has_a_tuner_step_feeding_the_trainer(raw_config):
    from pipelines.build.builder import component_ids

    cfg = Config.from_dict(apply_overrides(copy.deepcopy(raw_config), ["tuning={}"]))
    ids = component_ids(cfg)
    assert ids[ids.index("Transform") + 1] == "Tuner" and ids[ids.index("Tuner") + 1] == "Trainer"
    assert "Tuner" not in component_ids(Config.from_dict(raw_config))


def test_the_trainer_module_has_tuner_fn_only_with_tuning(raw_config):
    from pipelines.build.codegen import trainer_module
    from pipelines.build.tuner import OBJECTIVE_KEY
    from trainer.tuning_space import TUNABLE

    plain = trainer_module(Config.from_dict(raw_config))
    assert "tuner_fn" not in plain
    text = trainer_module(Config.from_dict(apply_overrides(copy.deepcopy(raw_config), ["tuning={}"])))
    assert "def tuner_fn(fn_args):" in text
    assert "from trainer.tuning import tuner_from_fn_args" in text
    space = {}
    exec(compile(text.split("LIBRARY_VERSION =")[0] + text[text.index("META = "):],
                 "<module>", "exec"), space)  # the constants, without the runtime import
    assert set(space["SPEC"]["tuning"]["space"]) <= set(TUNABLE)
    assert space["SPEC"]["tuning"]["space"]["training.learning_rate"]["max"] == 0.01
    assert OBJECTIVE_KEY == "twotower_objective"  # trainer.tuning reads the same key


def lr_check_report(tmp_path, rates, optimizer="adam"):
    """The raw demo config under ``tmp_path``, with an lr-check report where `twotower
    lr-check` writes it (``rates``: ``{rate: status}``, as trainer.lr_probe records them)."""
    folder = tmp_path / "runs" / "lr-pipe" / "lr_check"
    folder.mkdir(parents=True)
    (folder / "lr_check.json").write_text(json.dumps({
        "optimizer": optimizer, "steps": 300, "recommended": None, "reason": "",
        "results": [{"rate": r, "status": s} for r, s in rates.items()]}))
    return [f"pipeline.root={tmp_path / 'runs'}", "pipeline.name=lr-pipe",
            "tuning.space={training.learning_rate: {from_lr_check: true}}"]


def test_from_lr_check_takes_the_recorded_healthy_rates_as_the_range(raw_config, tmp_path):
    from pipelines.config.tuning_rules import search_space
    from pipelines.build.codegen import frozen_spec

    # healthy 0.001, 0.003 and 0.03; 0.03 is above adam's ceiling here (0.01): left out
    sets = lr_check_report(tmp_path, {0.0003: "flat", 0.001: "ok", 0.003: "ok", 0.01: "diverged",
                                      0.03: "ok"})
    cfg = Config.from_dict(apply_overrides(copy.deepcopy(raw_config), sets))
    assert validate(cfg, check_data=False) == []
    r = search_space(cfg)["training.learning_rate"]
    assert (r.min, r.max, r.log) == (0.001, 0.003, True)
    space = frozen_spec(cfg)["tuning"]["space"]["training.learning_rate"]  # what the search runs
    assert (space["min"], space["max"]) == (0.001, 0.003)


def test_a_single_healthy_rate_gives_a_third_of_it_to_it(raw_config, tmp_path):
    from pipelines.config.tuning_rules import search_space

    sets = lr_check_report(tmp_path, {0.003: "ok", 0.01: "collapsed"})
    r = search_space(Config.from_dict(apply_overrides(copy.deepcopy(raw_config), sets)))[
        "training.learning_rate"]
    assert (r.min, r.max) == (0.001, 0.003)


def test_from_lr_check_without_a_usable_report_is_one_line(raw_config, tmp_path):
    key = "tuning.space.training.learning_rate"
    got = refusal(raw_config, f"pipeline.root={tmp_path / 'none'}",
                  "tuning.space={training.learning_rate: {from_lr_check: true}}")
    assert got[0] == key and "run `twotower lr-check --config <this config>` first" in got[1]
    sets = lr_check_report(tmp_path / "a", {0.001: "diverged", 0.03: "ok"})
    got = refusal(raw_config, *sets)
    assert got[0] == key and "no rate the config accepts trained well" in got[1]
    assert "0.001 diverged, 0.03 ok" in got[1]
    sets = lr_check_report(tmp_path / "b", {0.001: "ok"}, optimizer="sgd")
    assert "measured sgd, the config trains with adam" in refusal(raw_config, *sets)[1]
    got = refusal(raw_config, "tuning.space={model.temperature: {from_lr_check: true}}")
    assert got == ("tuning.space.model.temperature", "from_lr_check gives a range for "
                   "training.learning_rate only: give min and max, or values")
    got = refusal(raw_config, "tuning.space={training.learning_rate: {from_lr_check: true, "
                              "min: 0.001, max: 0.01}}")
    assert "not both" in got[1]


def test_parallel_replicas_of_one_search_share_one_project_on_the_bucket():
    """The Google Cloud Tuner's replicas meet in one project named by what the search reads;
    a search of another spec or Transform output gets another; here it is the step's folder."""
    from types import SimpleNamespace

    from trainer.tuning import REMOTE_DIR_KEY, project_of

    spec = {"training": {"learning_rate": 0.01}, "tuning": {"trials": 2}}
    train = ["gs://b/p/tfx/Transform/transformed_examples/7/Split-train/part-0.gz",
             "gs://b/p/tfx/Transform/transformed_examples/7/Split-train/part-1.gz"]
    remote = {REMOTE_DIR_KEY: "gs://b/p/tuner-trials", "twotower_objective": "recall_at_10"}

    def args(custom, files=train):
        return SimpleNamespace(custom_config=custom, train_files=files, working_dir="/tmp")

    first = project_of(args(remote), spec)
    assert first[0] == "gs://b/p/tuner-trials" and first[1].startswith("search-")
    assert project_of(args(dict(remote)), copy.deepcopy(spec)) == first  # another replica
    assert project_of(args(remote, train[::-1]), spec) == first
    other = copy.deepcopy(spec)
    other["training"]["learning_rate"] = 0.02
    assert project_of(args(remote), other)[1] != first[1]
    moved = [f.replace("/7/", "/8/") for f in train]  # a new Transform output
    assert project_of(args(remote, moved), spec)[1] != first[1]
    assert project_of(args({"twotower_objective": "recall_at_10"}), spec) == ("/tmp", "search")
