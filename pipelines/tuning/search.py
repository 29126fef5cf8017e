"""`twotower tune`: the search run over the pipeline's Transform output, then the tuned YAML.

Runs ExampleGen -> StatisticsGen -> ImportSchemaGen -> Transform under
``<pipeline folder>/tune`` (cached like any run; the real pipeline's metadata
is untouched), then the trials in this process (:func:`trainer.tuning.run_search`)
with their project under ``tune/search/<project>``: a project per config and
space (``tuning.trials`` aside), so a search started again, interrupted or
with more ``--trials``, resumes and never repeats a finished trial.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Optional

from pipelines.config.schema import Config, ConfigError
from pipelines.build.gate import objective_of
from pipelines.config.tuning_rules import LIMITS, search_space
from pipelines.config.tuning import TuningConfig

SEARCH_FOLDER = "tune"


def tuned_path(config_path: str) -> str:
    """``my.yaml`` -> ``my.tuned.yaml`` (beside it; ``.json`` too becomes ``.tuned.yaml``)."""
    stem, _ = os.path.splitext(config_path)
    return stem + ".tuned.yaml"


def with_search(cfg: Config, trials: Optional[int]) -> Config:
    """The config with its ``tuning`` (the default section when it has none), ``--trials``
    in place of ``tuning.trials``; validated (ConfigError naming the key)."""
    from pipelines.validate import validate

    low, high = LIMITS["trials"]
    if trials is not None and not low <= trials <= high:
        raise ConfigError([("--trials", f"must be in {low}..{high}, got {trials}")])
    raw = cfg.to_dict()
    tuning = raw.get("tuning") or dataclasses.asdict(TuningConfig())
    if trials is not None:
        tuning["trials"] = trials
    tuned = Config.from_dict(dict(raw, tuning=tuning))
    tuned.tuning.space = search_space(tuned)  # frozen: the space the search runs
    validate(tuned, check_data=False)
    return tuned


def project_name(spec: dict) -> str:
    """``search-<digest>`` of everything a trial depends on: the frozen config with its
    resolved space, ``tuning.trials`` left out (more trials extend the same search)."""
    keyed = json.loads(json.dumps(spec))
    keyed["tuning"].pop("trials", None)
    text = json.dumps(keyed, sort_keys=True, separators=(",", ":"))
    return "search-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def tune(cfg: Config, log=print) -> dict:
    """Runs (or resumes) the search for a config with ``tuning`` (:func:`with_search`);
    returns :func:`trainer.tuning.run_search`'s result with ``objective``."""
    from pipelines.build.codegen import frozen_spec
    from pipelines.runners.local import pipeline_dir, run_local, transform_outputs

    root = os.path.join(pipeline_dir(cfg), SEARCH_FOLDER)
    run_local(cfg, log=log, root=root, until="Transform")
    found = transform_outputs(root)
    spec = frozen_spec(cfg)
    objective = objective_of(spec)
    from trainer.tuning import run_search

    result = run_search(spec, found["files"], found["transform_graph"],
                        os.path.join(root, "search"), project_name(spec), objective, log=log)
    result["objective"] = objective
    return result


def table(result: dict) -> str:
    """One row per trial (values, objective, epochs, seconds, stopped-because), the
    baselines on the same slice beneath."""
    objective, trials = result["objective"], result["trials"]
    keys = list(dict.fromkeys(k for t in trials for k in t["values"]))
    names = [k.split(".")[-1] if sum(x.split(".")[-1] == k.split(".")[-1] for x in keys) == 1
             else k for k in keys]
    widths = [max(len(n), 8) for n in names]
    head = (f"{'trial':>5} " + " ".join(f"{n:>{w}}" for n, w in zip(names, widths))
            + f" {objective:>12} {'epochs':>6} {'seconds':>7}  stopped because")
    lines = [head]
    best = (result.get("best") or {}).get("trial")
    for t in sorted(trials, key=lambda t: t["trial"]):
        cells = " ".join(f"{t['values'].get(k, float('nan')):>{w}.4g}"
                         for k, w in zip(keys, widths))
        why = t["stopped"]["reason"] if t["stopped"] else "-"
        mark = " *" if t["trial"] == best else ""
        lines.append(f"{t['trial']:>5} {cells} {t['objective']:>12.4f} {t['epochs']:>6} "
                     f"{t['seconds']:>7.0f}  {why}{mark}")
    for name, value in sorted(result["baselines"].items(), key=lambda x: -x[1]):
        lines.append(f"{'':>5} {'baseline ' + name:>{sum(widths) + len(widths) - 1}} "
                     f"{value:>12.4f}")
    return "\n".join(lines)


def slice_line(about: dict) -> str:
    return (f"validation slice: the last {about['fraction']:g} of train by time, "
            f"{about['slice_first']}..{about['slice_last']}: {about['slice_rows']:,} rows, "
            f"{about['queries']:,} queries scored; trials fit on {about['fit_first']}.."
            f"{about['fit_last']}: {about['fit_rows']:,} rows (eval and test never read)")
