"""Names the serving signatures take are reserved: `validate` refuses a query feature named so.

A query feature's serving input is named by the feature; the ``recommend`` and
``buy_again`` signatures also take ``exclude``, ``had`` and ``k``, and the query id is
``query_id``. A feature named like one of them validated, trained and pushed a model every
request to failed ("got multiple values for keyword argument 'k'"); ``query_id`` failed at
export, after training. The list is :mod:`trainer.serving_names`', which the signatures
use (tests/test_trainer_run.py checks a trained model's signatures against it).
"""
import pytest
import yaml

from pipelines.cli.main import main
from pipelines.config.schema import Config, ConfigError, apply_overrides
from pipelines.validate import validate
from trainer.serving_names import RESERVED_INPUTS, serving_inputs


def test_the_reserved_names_are_the_signatures_arguments_and_the_query_id():
    assert set(RESERVED_INPUTS) == {"query_id", "exclude", "had", "k"}


@pytest.mark.parametrize("name", ["k", "exclude", "had", "query_id"])
def test_a_query_feature_named_like_a_serving_argument_is_refused(raw_config, name):
    cfg = Config.from_dict(apply_overrides(raw_config, [f"query_tower.features.1.name={name}"]))
    with pytest.raises(ConfigError) as exc:
        validate(cfg, check_data=False)
    [(key, message)] = exc.value.problems
    assert key == "query_tower.features.1.name"
    assert f"the serving input {name!r}" in message and "rename the feature" in message
    with pytest.raises(ValueError):  # and the signature code refuses it the same way
        serving_inputs(cfg.to_dict())


def test_a_candidate_feature_may_be_named_k(raw_config):
    """Only the query tower's features are serving inputs."""
    cfg = Config.from_dict(apply_overrides(raw_config, ["candidate_tower.features.1.name=k"]))
    validate(cfg, check_data=False)


def test_a_cross_input_named_like_another_feature_is_refused(raw_config):
    cfg = Config.from_dict(apply_overrides(raw_config, [
        "query_tower.features.2={name: pair, kind: cross, columns: [region, segment], "
        "hash_buckets: 100}",
        "query_tower.features.1.name=pair_0"]))  # segment's input; the cross's region too
    with pytest.raises(ConfigError) as exc:
        validate(cfg, check_data=False)
    assert [k for k, _ in exc.value.problems] == ["query_tower.features.2.name"], exc.value


def test_validate_on_the_command_line_is_one_error_line_exit_2(raw_config, tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(apply_overrides(raw_config, [
        "query_tower.features.2.name=exclude"])), encoding="utf-8")
    assert main(["validate", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert line.startswith("error: ") and "query_tower.features.2.name" in line
    assert "'exclude'" in line
