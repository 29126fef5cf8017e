"""The ``tuning:`` section's rules: each problem one line, naming its key.

A range's ends (and each listed value) are checked by the config's own rules:
the config with that value in place is validated (``validate``: the caller's
:func:`pipelines.validate.validate`, passed in, data unread), and any problem it has that the config as written does not is
the range's problem. So a value the model refuses, a learning rate above the
ceiling (:mod:`pipelines.config.learning_rate`) or an embedding size a history's
shared table can't take is refused here by the very rule that refuses it in
``training:`` or ``model:``, never by a copy of it.
"""
from __future__ import annotations

import copy
import difflib
import math
from typing import Dict, List, Tuple

from pipelines.config.schema import Config, ConfigError
from pipelines.config.tuning import RangeConfig, TuningConfig
from trainer.parameters import seed_problem
from trainer.tuning_space import ALGORITHMS, NOT_TUNABLE, TUNABLE, typed

LIMITS = {"trials": (1, 200), "max_epochs": (1, 100), "parallel": (1, 64)}
SLICE_FRACTION = (0.0, 0.5)  # open: a slice of nothing, or most of train, scores nothing useful


def space_key(key: str) -> str:
    return f"tuning.space.{key}"


def unknown_parameter(key: str) -> str:
    """The line for a key that is not tunable: why, or the known keys and a near one."""
    if key in NOT_TUNABLE:
        return f"not tunable: {NOT_TUNABLE[key]}"
    near = difflib.get_close_matches(key, list(TUNABLE) + list(NOT_TUNABLE), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"unknown parameter (tunable: {', '.join(TUNABLE)}){hint}"


def _config_value(cfg: Config, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def default_space(cfg: Config) -> Dict[str, RangeConfig]:
    """The space searched when ``tuning.space`` is empty: around the config's own values.

    The learning rate on a log scale from a tenth of the highest accepted rate
    (the ceiling, or 3x the configured rate without one) to it; batch size and
    embedding size at half, once and twice the config's; the temperature from
    half to twice the config's (when it has one).
    """
    from pipelines.config.learning_rate import learning_rate_ceiling

    t, m = cfg.training, cfg.model
    top = learning_rate_ceiling(cfg) or min(t.learning_rate * 3, 1.0)
    space = {"training.learning_rate": RangeConfig(min=float(f"{top / 10:.3g}"), max=top,
                                                   log=True)}
    space["training.batch_size"] = RangeConfig(values=sorted({
        float(b) for b in (t.batch_size // 2, t.batch_size, t.batch_size * 2) if 2 <= b <= 65536}))
    space["model.embedding_dim"] = RangeConfig(values=sorted({
        float(d) for d in (m.embedding_dim // 2, m.embedding_dim, m.embedding_dim * 2)
        if 1 <= d <= 1024}))
    if m.temperature is not None:
        space["model.temperature"] = RangeConfig(min=m.temperature / 2, max=m.temperature * 2,
                                                 log=True)
    return space


def points(key: str, r: RangeConfig) -> List[Tuple[str, float]]:
    """The values a range's rules are checked at: its ends, or each listed value."""
    if r.values:
        return [("value", v) for v in r.values]
    return [("min", r.min), ("max", r.max)]


def _shape_problem(key: str, r: RangeConfig) -> str:
    """Why a range can't be searched (empty, inverted, half-given, not of its type), or ''."""
    has_range = r.min is not None or r.max is not None
    if r.values and has_range:
        return "give min and max, or values, not both"
    if not r.values and not has_range:
        return "empty range: give min and max (e.g. {min: 0.001, max: 0.01}) or values"
    if r.values:
        if r.log is not None:
            return "log applies to a min..max range, not to values"
        if len(set(r.values)) < 2:
            return "values lists one choice: nothing to search (set it in the config instead)"
    elif r.min is None or r.max is None:
        return f"a range needs both min and max, got only {'min' if r.max is None else 'max'}"
    elif not (math.isfinite(r.min) and math.isfinite(r.max)):
        return "min and max must be finite numbers"
    elif r.min > r.max:
        return f"inverted range: min {r.min:g} is above max {r.max:g}"
    elif r.min == r.max:
        return f"empty range: min equals max ({r.min:g}); set the value in the config instead"
    elif (TUNABLE[key]["log"] if r.log is None else r.log) and r.min <= 0:
        return (f"a log-scale range needs min > 0, got {r.min:g} (or set log: false)")
    for label, value in points(key, r):
        try:
            typed(key, value)
        except ValueError as exc:
            return f"{label} {value!r}: {exc} ({key} is a whole number)"
    return ""


def _problems_of(raw: dict, validate) -> set:
    try:
        validate(Config.from_dict(raw), check_data=False)
    except ConfigError as exc:
        return set(exc.problems)
    return set()


def _value_problem(base_raw: dict, base: set, key: str, value, validate) -> str:
    """The config's own rules at ``key: value``: the first problem the config as written does
    not have (a value the model refuses), or ''."""
    raw = copy.deepcopy(base_raw)
    section, name = key.split(".")
    raw[section][name] = typed(key, value)
    found = sorted(_problems_of(raw, validate) - base)
    if not found:
        return ""
    where, message = found[0]
    return f"{where}: {message}" if where != key else message


def space_problems(cfg: Config, space: Dict[str, RangeConfig],
                   validate) -> List[Tuple[str, str]]:
    """``[(key, line)]`` of the space's problems (see the module docstring)."""
    problems = []
    base_raw = {k: v for k, v in cfg.to_dict().items() if k != "tuning"}
    base = None
    for key, r in space.items():
        if key not in TUNABLE:
            problems.append((space_key(key), unknown_parameter(key)))
            continue
        shape = _shape_problem(key, r)
        if shape:
            problems.append((space_key(key), shape))
            continue
        base = _problems_of(base_raw, validate) if base is None else base
        for label, value in points(key, r):
            problem = _value_problem(base_raw, base, key, value, validate)
            if problem:
                problems.append((space_key(key), f"{label} {typed(key, value):g} is refused by "
                                 f"the config's rules: {problem}"))
                break
    return problems


def tuning_problems(cfg: Config, validate) -> List[Tuple[str, str]]:
    """Every problem of ``cfg.tuning`` (none without one), each ``(dotted key, one line)``;
    ``validate``: :func:`pipelines.validate.validate`, which calls this (no import circle)."""
    t: TuningConfig = cfg.tuning
    if t is None:
        return []
    problems = []
    if t.algorithm not in ALGORITHMS:
        near = difflib.get_close_matches(str(t.algorithm), ALGORITHMS, n=1)
        problems.append(("tuning.algorithm", f"{t.algorithm!r}: use one of "
                         f"{', '.join(ALGORITHMS)}" + (f"; did you mean {near[0]!r}?" if near
                                                       else "")))
    for name, (low, high) in LIMITS.items():
        value = getattr(t, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append((f"tuning.{name}", f"must be in {low}..{high}, got {value!r}"))
    if seed_problem(t.seed):
        problems.append(("tuning.seed", seed_problem(t.seed)))
    low, high = SLICE_FRACTION
    if not (math.isfinite(t.validation_fraction) and low < t.validation_fraction < high):
        problems.append(("tuning.validation_fraction", f"must be in ({low:g}, {high:g}): the "
                         "last part of train by time that trials are scored on"))
    if not cfg.data.timestamp:
        problems.append(("tuning", "the search scores trials on the last part of train by time, "
                         "before the eval cut: set data.timestamp (the eval split stays the "
                         "gate's alone)"))
    space, unresolved = resolve_space(cfg, t.space or default_space(cfg))
    return problems + unresolved + space_problems(cfg, space, validate)


LR_KEY = "training.learning_rate"  # the one key a recorded lr-check gives a range for


def resolve_space(cfg: Config, space: Dict[str, RangeConfig]
                  ) -> Tuple[Dict[str, RangeConfig], List[Tuple[str, str]]]:
    """``space`` with each ``{from_lr_check: true}`` replaced by lr-check's recorded range
    (:func:`pipelines.config.learning_rate.lr_check_range`, log scale), and the problems
    of those that can't be (each ``(key, line)``; the key left out of the space)."""
    from pipelines.config.learning_rate import lr_check_range

    out, problems = {}, []
    for key, r in space.items():
        if not r.from_lr_check:
            out[key] = r
            continue
        if key != LR_KEY:
            problems.append((space_key(key), f"from_lr_check gives a range for {LR_KEY} "
                             "only: give min and max, or values"))
        elif r.values or r.min is not None or r.max is not None or r.log is False:
            problems.append((space_key(key), "give from_lr_check: true, or min and max (or "
                             "values), not both"))
        else:
            found, problem = lr_check_range(cfg)
            if problem:
                problems.append((space_key(key), problem))
            else:
                out[key] = RangeConfig(min=found[0], max=found[1], log=True)
    return out, problems


def search_space(cfg: Config) -> Dict[str, RangeConfig]:
    """The space a search runs: ``tuning.space``, or the default space, lr-check's range in
    place of ``from_lr_check`` (ConfigError naming the key when it can't be: validation
    has said so already)."""
    t = cfg.tuning or TuningConfig()
    space, problems = resolve_space(cfg, dict(t.space) if t.space else default_space(cfg))
    if problems:
        raise ConfigError(problems)
    return space
