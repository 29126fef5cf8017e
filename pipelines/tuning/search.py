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
from pipelines.runners.trials import rows

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
    """One row per trial (values, objective, epochs, seconds, stopped-because;
    :func:`pipelines.runners.trials.rows`), the baselines on the same slice beneath."""
    header, cells = rows(result["trials"], result["objective"],
                         (result.get("best") or {}).get("trial"))
    widths = [max([len(h), 5] + [len(r[i]) for r in cells]) for i, h in enumerate(header[:-1])]

    def line(row):
        return " ".join(f"{c:>{w}}" for c, w in zip(row, widths)) + f"  {row[-1]}"

    lines = [line(header)] + [line(row) for row in cells]
    at = len(header) - 4  # the objective's column
    for name, value in sorted(result["baselines"].items(), key=lambda x: -x[1]):
        label = f"baseline {name}"
        left = sum(widths[:at]) + at - 1
        lines.append(f"{label:>{left}} {value:>{widths[at]}.4f}")
    return "\n".join(lines)
