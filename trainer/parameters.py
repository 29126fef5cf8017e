"""The runtime parameters: one table, read by validation, compile, `submit --param` and the Trainer.

A compiled Vertex AI pipeline takes ``epochs``, ``learning_rate`` and
``batch_size`` at submission (``twotower submit --param epochs=10``). The
config's values, the compiled defaults, the ``--param`` values and what the
Trainer receives are all checked here, by the same rows and the same
learning-rate ceiling, so a value is accepted everywhere or nowhere:
``pipelines.validate`` (the config), ``pipelines.build.builder`` (the parameters a
spec declares, and their defaults), ``pipelines.runners.vertex.parse_params``
(``--param``) and :func:`trainer.runtime.apply_runtime` (``run_fn``).

No TensorFlow: validation imports this module, and so does the runtime the
generated Trainer module imports.
"""
import math

# name -> the training key it sets, its type, and its range (inclusive unless "open").
RUNTIME_PARAMETERS = {
    "epochs": {"key": "epochs", "type": int, "min": 1, "max": 1000},
    "learning_rate": {"key": "learning_rate", "type": float, "min": 0.0, "max": 10.0,
                      "open": True},
    "batch_size": {"key": "batch_size", "type": int, "min": 2, "max": 65536,
                   "why": "in-batch negatives need 2 or more"},
}

# The learning-rate ceiling: above it a run is refused unless
# training.allow_risky_learning_rate. In the field, Adagrad at 0.1 with a 3-4 layer
# tower collapsed to zero gradients after one epoch, and the same model learned at 0.01.
# A rate lr-check's probe trained well at (trainer.lr_probe; tuning's from_lr_check reads it).
HEALTHY_RATE = "ok"
SAFE_LEARNING_RATE = {"adam": 0.01, "adagrad": 0.05, "sgd": 0.05}
DEEP_TOWER = 3             # dense layers, output layer included
USUAL_LEARNING_RATE = 0.5  # shallow Adagrad/SGD: far above the usual range beyond it


# A random seed: what tf.keras.utils.set_random_seed (NumPy's legacy seeding under it)
# takes, 0..2**32-1. training.seed and `synth --seed` are refused outside it at once (a seed
# of -1 used to pass validation and stop the Trainer after Transform had run).
SEED_RANGE = (0, 2**32 - 1)


def seed_problem(seed):
    """Why ``seed`` can't seed a run (without the key), or None."""
    low, high = SEED_RANGE
    if isinstance(seed, bool) or not isinstance(seed, int) or not low <= seed <= high:
        return f"{seed!r} is not a seed: use a whole number in {low}..{high:,} (2**32 - 1)"
    return None


def collapses(optimizer, depth):
    """Whether a rate above ``SAFE_LEARNING_RATE[optimizer]`` can collapse the gradients:
    with Adam, or a tower of ``DEEP_TOWER`` or more dense layers (the rule, written once:
    :func:`rate_ceiling` and the advice of :mod:`pipelines.config.learning_rate` read it).

    Args:
      optimizer: ``training.optimizer``.
      depth: the deeper tower's dense layers, its output layer included.
    """
    return optimizer == "adam" or depth >= DEEP_TOWER


def rate_ceiling(optimizer, depth, allow_risky):
    """The highest learning rate accepted, or None when any rate in range is.

    Args:
      optimizer: ``training.optimizer``.
      depth: the deeper tower's dense layers, its output layer included.
      allow_risky: ``training.allow_risky_learning_rate``.
    """
    if allow_risky or optimizer not in SAFE_LEARNING_RATE:
        return None
    if collapses(optimizer, depth):
        return SAFE_LEARNING_RATE[optimizer]
    return USUAL_LEARNING_RATE


def parameter_range(name):
    """The accepted values of parameter ``name`` as text, e.g. ``1..1000`` or ``(0, 10)``."""
    row = RUNTIME_PARAMETERS[name]
    if row.get("open"):
        return f"({row['min']:g}, {row['max']:g})"
    return f"{row['min']}..{row['max']}"


def parameter_value(name, raw):
    """``raw`` (text from a command line, or a JSON number) as parameter ``name``'s type.

    A whole float (``64.0``: Vertex AI sends integer parameters as JSON
    numbers) is an integer; ``2.5``, ``True``, ``'many'`` and non-finite
    numbers are not.

    Raises:
      KeyError: ``name`` is not a runtime parameter.
      ValueError: the value is not of the type, naming what it should be.
    """
    kind = RUNTIME_PARAMETERS[name]["type"]
    word = "a whole number" if kind is int else "a number"
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not {word}")
    try:
        number = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{raw!r} is not {word}") from None
    if not math.isfinite(number) or (kind is int and not number.is_integer()):
        raise ValueError(f"{raw!r} is not {word}")
    return int(number) if kind is int else number


def parameter_problem(name, value, ceiling=None):
    """Why ``value`` is refused for parameter ``name`` (without the name), or None.

    ``ceiling``: the learning-rate ceiling (:func:`rate_ceiling`) for ``learning_rate``.
    """
    row = RUNTIME_PARAMETERS[name]
    low, high = row["min"], row["max"]
    inside = low < value < high if row.get("open") else low <= value <= high
    if not inside:
        why = f" ({row['why']})" if row.get("why") else ""
        return f"{value!r} is out of range: use {parameter_range(name)}{why}"
    if name == "learning_rate" and ceiling is not None and value > ceiling:
        return (f"{value:g} is above {ceiling:g}, the highest rate these towers and optimizer "
                "take without training.allow_risky_learning_rate (gradients can collapse to "
                "zero; measure rates with `twotower lr-check`)")
    return None


def check_parameters(values, ceiling=None):
    """Runtime parameter values checked by the table: ``(typed, problems)``.

    The one check of the table's rows, for the config (validation, compile), ``submit
    --param`` and the Trainer: each value's type (:func:`parameter_value`), range and,
    for ``learning_rate``, ``ceiling`` (:func:`parameter_problem`).

    Args:
      values: ``{name: raw value}``: text from a command line, a JSON number, a config's.
      ceiling: the learning-rate ceiling (:func:`rate_ceiling`); None: none.

    Returns:
      ``typed``: ``{name: value}`` of each accepted value; ``problems``: ``[(name, why)]``
      for each refused one (``why`` without the name), in ``values``' order.

    Raises:
      KeyError: a name that is not a runtime parameter.
    """
    typed, problems = {}, []
    for name, raw in values.items():
        try:
            value = parameter_value(name, raw)
        except ValueError as exc:
            problems.append((name, str(exc)))
            continue
        problem = parameter_problem(name, value, ceiling)
        if problem:
            problems.append((name, problem))
        else:
            typed[name] = value
    return typed, problems
