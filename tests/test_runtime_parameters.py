"""One table of runtime parameters: a value is accepted everywhere or nowhere.

The table (`trainer/parameters.py`) is walked through the four places a value
is checked: validation of the config, the defaults `compile` puts in the spec
(`builder.parameter_values`), `submit --param` (`vertex.parse_params`) and the
Trainer (`apply_runtime` with the ceiling in the generated module's META, and
`make_optimizer`). The expected verdicts are written by hand from the rules:
the field failure was `learning_rate: 2.0` with sgd and
`allow_risky_learning_rate: true`, accepted by `validate` and refused on Vertex
AI, and `batch_size=1` / `epochs=5000` refused in a config but accepted by
`--param`.
"""
import copy

import pytest

from pipelines.config.schema import Config, ConfigError, apply_overrides
from trainer.parameters import RUNTIME_PARAMETERS, check_parameters, rate_ceiling

DEEP = ["query_tower.layers=[8, 8]"]  # 3 dense layers with the output layer
RISKY = ["training.allow_risky_learning_rate=true"]

# (parameter, value, config overrides, accepted?)
CASES = [
    ("epochs", 0, [], False), ("epochs", 1, [], True), ("epochs", 1000, [], True),
    ("epochs", 1001, [], False), ("epochs", 5000, [], False),
    ("batch_size", 1, [], False), ("batch_size", 2, [], True),
    ("batch_size", 65536, [], True), ("batch_size", 65537, [], False),
    ("learning_rate", 0.0, [], False), ("learning_rate", -0.01, [], False),
    ("learning_rate", 0.01, [], True), ("learning_rate", 0.0101, [], False),  # adam
    ("learning_rate", 0.5, RISKY, True), ("learning_rate", 9.99, RISKY, True),
    ("learning_rate", 10.0, RISKY, False),
    ("learning_rate", 0.05, ["training.optimizer=adagrad"] + DEEP, True),
    ("learning_rate", 0.06, ["training.optimizer=adagrad"] + DEEP, False),
    ("learning_rate", 0.06, ["training.optimizer=adagrad"] + DEEP + RISKY, True),
    ("learning_rate", 0.5, ["training.optimizer=sgd"], True),   # 2 layers: the usual range
    ("learning_rate", 0.6, ["training.optimizer=sgd"], False),
    ("learning_rate", 2.0, ["training.optimizer=sgd"] + RISKY, True),  # the field case
    ("learning_rate", 1.5, ["training.optimizer=sgd"] + RISKY, True),
]


def test_the_table_names_each_parameter_once_with_a_type_and_a_range():
    assert sorted(RUNTIME_PARAMETERS) == ["batch_size", "epochs", "learning_rate"]
    assert rate_ceiling("adam", 2, False) == 0.01 and rate_ceiling("sgd", 3, False) == 0.05
    assert rate_ceiling("sgd", 2, False) == 0.5 and rate_ceiling("adam", 5, True) is None


def test_one_function_checks_values_by_the_table():
    """Every place above calls check_parameters: type, range and the rate ceiling, by hand."""
    typed, refused = check_parameters({"epochs": "3", "batch_size": 1, "learning_rate": 0.5},
                                      ceiling=0.01)
    assert typed == {"epochs": 3}
    assert [name for name, _ in refused] == ["batch_size", "learning_rate"]
    assert refused[0][1] == "1 is out of range: use 2..65536 (in-batch negatives need 2 or more)"
    assert refused[1][1].startswith("0.5 is above 0.01, the highest rate")
    assert check_parameters({"epochs": 2.5}) == ({}, [("epochs", "2.5 is not a whole number")])
    assert check_parameters({"learning_rate": 0.5}) == ({"learning_rate": 0.5}, [])
    with pytest.raises(KeyError):
        check_parameters({"momentum": 0.9})


def _config(raw_config, overrides):
    return Config.from_dict(apply_overrides(copy.deepcopy(raw_config), overrides))


def _verdicts(raw_config, name, value, overrides):
    """Whether each of the four places accepts ``value`` for parameter ``name``."""
    from pipelines.build.builder import parameter_values
    from pipelines.build.codegen import _meta
    from pipelines.runners import vertex
    from pipelines.validate import validate
    from trainer.model import make_optimizer
    from trainer.runtime import apply_runtime

    key = f"training.{RUNTIME_PARAMETERS[name]['key']}"
    with_value = _config(raw_config, overrides + [f"{key}={value!r}"])
    base = _config(raw_config, overrides)  # the compiled config, with its own valid value
    out = {}
    try:
        validate(with_value, check_data=False)
        out["validate"] = True
    except ConfigError as exc:
        assert {k for k, _ in exc.problems} == {key}, exc.problems
        out["validate"] = False
    try:
        out["compile"] = parameter_values(with_value)[name] == value
    except ConfigError as exc:
        assert {k for k, _ in exc.problems} == {key}, exc.problems
        out["compile"] = False
    try:
        out["submit"] = vertex.parse_params(base, [f"{name}={value!r}"]) == {name: value}
    except ConfigError as exc:
        assert [k for k, _ in exc.problems] == ["--param"] and name in str(exc)
        out["submit"] = False
    meta = _meta(base)
    try:
        spec = apply_runtime(base.to_dict(), {name: value}, meta["learning_rate_ceiling"])
        out["trainer"] = spec["training"][RUNTIME_PARAMETERS[name]["key"]] == value
    except ValueError as exc:
        assert f"runtime parameter {name}: " in str(exc)
        out["trainer"] = False
    if name == "learning_rate":  # the optimizer takes the table's range too
        try:
            make_optimizer(dict(base.to_dict()["training"], learning_rate=value))
        except ValueError:
            assert not out["validate"]
    return out


@pytest.mark.parametrize("name, value, overrides, accepted", CASES)
def test_a_value_is_accepted_everywhere_or_nowhere(raw_config, name, value, overrides,
                                                   accepted):
    verdicts = _verdicts(raw_config, name, value, overrides)
    assert verdicts == dict.fromkeys(("validate", "compile", "submit", "trainer"), accepted)


def test_the_runtime_parameters_step_declares_the_table_s_parameters():
    """The component the spec runs takes exactly the table's names, with its types."""
    import inspect

    from pipelines.build.components.runtime_parameters import RuntimeParameters

    spec = RuntimeParameters.SPEC_CLASS.PARAMETERS
    assert sorted(spec) == sorted(RUNTIME_PARAMETERS)
    for name, row in RUNTIME_PARAMETERS.items():
        assert spec[name].type is row["type"], name
    assert inspect.isclass(RuntimeParameters)
