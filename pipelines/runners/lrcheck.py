"""``twotower lr-check``: a learning-rate range test on the user's own data.

Runs ExampleGen -> StatisticsGen -> SchemaGen -> Transform under
``<pipeline root>/lr_check`` (so the real pipeline's metadata is untouched),
then trains a fresh model for ``steps`` steps at each rate
(:mod:`trainer.lr_probe`) and recommends one. Writes ``lr_check.json`` there.
"""
from __future__ import annotations

import json
import math
import os
from typing import List, Optional

from pipelines.config.schema import Config, ConfigError
from pipelines.runners.local import pipeline_dir, run_local, transform_outputs
from pipelines.config.learning_rate import LR_CHECK_FILE, LR_CHECK_FOLDER, learning_rate_ceiling
from trainer.parameters import parameter_problem, parameter_range

STEPS = 300
STEPS_RANGE = (10, 100_000)  # fewer says nothing about a rate; more is a training run
MULTIPLIERS = (0.1, 0.3, 1.0, 3.0, 10.0)


def default_rates(rate: float) -> List[float]:
    """The configured rate times 0.1, 0.3, 1, 3 and 10, to two significant digits.

    >>> default_rates(0.01)
    [0.001, 0.003, 0.01, 0.03, 0.1]
    """
    return [float(f"{rate * m:.2g}") for m in MULTIPLIERS]


def parse_rates(text: str) -> List[float]:
    """'0.001,0.01' -> [0.001, 0.01]; raises ConfigError naming the bad value.

    A rate must be one ``training.learning_rate`` takes (the runtime parameters' range,
    :mod:`trainer.parameters`): a rate the Trainer would refuse is refused here, before any
    component runs. The ceiling for risky rates does not apply: they are what this tests.
    """
    rates = []
    for part in text.split(","):
        try:
            rate = float(part)
        except ValueError:
            rate = math.nan
        if not math.isfinite(rate) or rate <= 0:
            raise ConfigError([("--rates", f"{part.strip()!r} is not a positive number")])
        check_rate(rate, "--rates")
        rates.append(rate)
    return sorted(set(rates))


def check_rate(rate: float, key: str) -> None:
    """Raises ConfigError (``key``) for a rate outside ``training.learning_rate``'s range."""
    problem = parameter_problem("learning_rate", rate)
    if problem:
        raise ConfigError([(key, f"{problem} (the range of training.learning_rate)")])


def check_steps(steps: int) -> None:
    low, high = STEPS_RANGE
    if isinstance(steps, bool) or not low <= steps <= high:
        raise ConfigError([("--steps", f"must be in {low}..{high:,}, got {steps}")])


def check_options(cfg: Config, rates_text: Optional[str], steps: int) -> List[float]:
    """The rates to test (``--rates``, else :func:`default_rates`), with ``steps`` checked:
    ConfigError naming the option before anything is written or run."""
    check_steps(steps)
    if rates_text:
        return parse_rates(rates_text)
    rates = default_rates(cfg.training.learning_rate)
    beyond = [rate for rate in rates if parameter_problem("learning_rate", rate)]
    if beyond:  # 10 x a configured 5.0 is beyond the range
        raise ConfigError([("--rates", f"the default rates (training.learning_rate x "
                            f"{MULTIPLIERS[0]:g}..{MULTIPLIERS[-1]:g}) reach {beyond[-1]:g}, "
                            f"outside the range of training.learning_rate "
                            f"{parameter_range('learning_rate')}: give --rates")])
    return rates


def _finite(value):
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def lr_check(cfg: Config, rates: Optional[List[float]] = None, steps: int = STEPS,
             log=print) -> dict:
    """Runs the range test; returns the report (also written to ``lr_check.json``)."""
    check_steps(steps)
    for rate in rates or []:
        check_rate(rate, "--rates")
    rates = rates or check_options(cfg, None, steps)
    root = os.path.join(pipeline_dir(cfg), LR_CHECK_FOLDER)
    run_local(cfg, log=log, root=root, until="Transform")
    found = transform_outputs(root)
    from trainer.lr_probe import probe_rates  # TFRS and TF Transform: off the CLI's fast path

    report = probe_rates(cfg.to_dict(), found["files"], found["transform_graph"], rates, steps,
                         ceiling=learning_rate_ceiling(cfg), log=log)
    report["configured_rate"] = cfg.training.learning_rate
    report["report_file"] = os.path.join(root, LR_CHECK_FILE)
    with open(report["report_file"], "w", encoding="utf-8") as handle:
        json.dump(_finite(report), handle, indent=2, sort_keys=True, allow_nan=False)
    return report


def format_report(report: dict) -> str:
    """The report as a table a person can read."""
    def num(value, fmt=".4g"):
        return "-" if value is None or not math.isfinite(value) else format(value, fmt)

    lines = [f"learning-rate range test: {report['optimizer']}, {report['steps']} steps per rate",
             f"{'rate':>8} {'status':>10} {'first loss':>11} {'last loss':>10} "
             f"{'slope/100':>10} {'query grad (median, last)':>27} "
             f"{'candidate grad (median, last)':>31}"]
    for r in report["results"]:
        q, c = r["grad_norm"]["query"], r["grad_norm"]["candidate"]
        lines.append(f"{r['rate']:>8g} {r['status']:>10} {num(r['first_loss']):>11} "
                     f"{num(r['last_loss']):>10} {num(r['slope_per_100_steps'], '.3g'):>10} "
                     f"{num(q['median'], '.3g') + ', ' + num(q['last'], '.3g'):>27} "
                     f"{num(c['median'], '.3g') + ', ' + num(c['last'], '.3g'):>31}")
    if report["recommended"] is None:
        lines.append(f"no recommendation: {report['reason']}")
    else:
        lines.append(f"recommended training.learning_rate: {report['recommended']:g} "
                     f"({report['reason']})")
        if report["recommended"] != report["configured_rate"]:
            lines.append(f"the config has {report['configured_rate']:g}; run with --set "
                         f"training.learning_rate={report['recommended']:g}")
    lines.append(f"report: {report['report_file']}")
    return "\n".join(lines)
