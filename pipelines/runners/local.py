"""`twotower run`: the pipeline (:mod:`pipelines.build.builder`) on this machine.

The data is prepared by the DuckDB SQL program, the modules generated, and
the pipeline run by LocalDagRunner on Beam's DirectRunner, with SQLite ML
Metadata under the pipeline root (layout: :mod:`pipelines.build.builder`). Also the
readers of a finished local run: its results, Transform outputs and component
timings from ML Metadata.
"""
from __future__ import annotations

import glob
import os
import shutil
from typing import Dict, List

from pipelines.build.builder import build_pipeline, component_ids, paths, write_schema
from pipelines.build.codegen import write_modules
from pipelines.config.schema import Config, ConfigError, pipeline_folder
from pipelines.data.prepare import SQL_FILE, dropped_text, prepare
from pipelines.build.gate import read_decision
from pipelines.runners.lock import LOCK_FILE, holding
from pipelines.runners.metadata import last_run, output_uri, push_destination, pushed_models
from pipelines.runners.metadata import store as _store
from pipelines.runners.recorded import metadata_errors, read_record, relocated
from pipelines.runners.scratch import private_tmp


def pipeline_dir(cfg: Config) -> str:
    """The pipeline's own folder, ``<pipeline.root>/<pipeline.name>`` (root default ``runs``).

    Pipelines share a root, never a folder: each has its own prepared input,
    modules, ML Metadata, serving models, logs and lock, so two pipelines with
    different names run side by side under one root, and a second run of the
    same pipeline is refused (:mod:`pipelines.runners.lock`).
    """
    return pipeline_folder(cfg)


def is_pipeline_dir(path: str) -> bool:
    """Whether ``path`` is a pipeline's folder (a run or a preparation wrote it)."""
    return any(os.path.exists(os.path.join(path, part))
               for part in (LOCK_FILE, "modules", "tfx", "logs", "input"))


def pipelines_in(path: str) -> List[str]:
    """The pipeline folders directly under ``path`` (a root), by name."""
    return sorted(name for name in (os.listdir(path) if os.path.isdir(path) else [])
                  if is_pipeline_dir(os.path.join(path, name)))


def resolve_pipeline_dir(path: str, key: str = "ROOT") -> str:
    """``path`` if it is a pipeline's folder; else a one-line error naming the folders to give.

    Raises:
      ConfigError: ``path`` is a root holding pipelines (they are listed), or neither.
    """
    if is_pipeline_dir(path):
        return path
    inside = pipelines_in(path)
    if inside:
        raise ConfigError([(key, f"{path} is a root holding the pipelines {', '.join(inside)}: "
                            f"give one of their folders, e.g. {os.path.join(path, inside[0])}")])
    raise ConfigError([(key, f"{path} is not a pipeline folder: give "
                        "<pipeline.root>/<pipeline.name>, e.g. runs/b2b-demo")])


def newest(pattern: str) -> str:
    """The match with the highest numeric last path part (TFX execution ids)."""
    return newest_of(glob.glob(pattern))


def newest_of(found: List[str]) -> str:
    """The path with the highest numeric last part (execution ids, serving versions)."""
    found = [p for p in found if os.path.basename(p).isdigit()]
    return max(found, key=lambda p: int(os.path.basename(p))) if found else ""


def results(root: str) -> dict:
    """What the newest run under ``root`` did (:func:`pipelines.runners.metadata.last_run`),
    and the model the pipeline serves now.

    ``metrics`` (``metrics_file``), ``refit`` and ``gate`` are the records of the newest
    run's own Trainer, RefitTrainer and PopularityGate executions, the cached ones included
    (None where that run had none: ``training.refit: false`` has no refit, whatever an earlier
    run in the same folder left). ``pushed``: that run's Pusher pushed a new version;
    ``reused_push``: its cached Pusher reuses an earlier push. ``serving_model``: the newest
    push (:func:`pushed_models`), '' when none, or when its folder is gone: then
    ``serving_missing`` names it (an older version is never served in its place).

    A record that can't be read (a damaged ``training_metrics.json``) is None, and
    ``unreadable`` lists the one-line problem (:func:`pipelines.runners.recorded.read_record`)
    for the command to warn of; the SavedModel and the logs need no record. Paths ML
    Metadata recorded are read inside ``root`` (:func:`pipelines.runners.recorded.relocated`:
    the folder may be a copy), and a damaged store is one DataError naming the file.
    """
    where = paths(root)
    with metadata_errors(where["metadata"]):
        run = last_run(where["metadata"])
        pushed = [relocated(root, p) for p in pushed_models(where["metadata"])]

    def uri(component, output):  # recorded absolute: read inside this (maybe copied) folder
        return relocated(root, output_uri(run, component, output))

    out = {"root": root, "metrics_file": "", "metrics": None, "serving_model": "",
           "serving_missing": "", "gate": None, "refit": None, "pushed": False,
           "reused_push": False, "run_push": "", "unreadable": [],
           "transform_graph": uri("Transform", "transform_graph"),
           "transformed_examples": uri("Transform", "transformed_examples"),
           "tuner_results": uri("Tuner", "tuner_results")}  # a tuning: run's search, or ''
    run_dir = uri("Trainer", "model_run")
    if not run_dir and not os.path.exists(where["metadata"]):
        # no ML Metadata at all: a Trainer run without the pipeline (run_fn called directly);
        # its newest folder is the only record there is (nothing else: no gate, push, refit)
        run_dir = newest(os.path.join(where["tfx"], "Trainer", "model_run", "*"))
    if run_dir:
        out["metrics_file"] = os.path.join(run_dir, "training_metrics.json")
        out["metrics"] = _record(out, out["metrics_file"])
    refit_dir = uri("RefitTrainer", "model_run")  # training.refit, if it ran
    out["refit"] = (_record(out, os.path.join(refit_dir, "training_metrics.json"))
                    if refit_dir else None)
    blessing = uri("PopularityGate", "blessing")
    out["gate"] = read_decision(blessing) if blessing else None
    newest_push = pushed[-1] if pushed else ""
    if newest_push and os.path.isdir(newest_push):
        out["serving_model"] = newest_push
    else:
        out["serving_missing"] = newest_push
    pusher = run.get("Pusher") or {}
    artifacts = pusher.get("outputs", {}).get("pushed_model") or []
    destination = relocated(root, push_destination(artifacts[-1])) if artifacts else ""
    if destination and pusher["state"] in ("COMPLETE", "CACHED"):
        out["run_push"] = destination  # the version this run's model is served from
        out["pushed"] = pusher["state"] == "COMPLETE"
        out["reused_push"] = pusher["state"] == "CACHED"
    return out


def _record(out: dict, path: str):
    """The JSON record at ``path`` (None if absent); a damaged one is None, its problem
    listed in ``out['unreadable']``."""
    found, problem = read_record(path)
    if problem:
        out["unreadable"].append(problem)
    return found


def run_local(cfg: Config, log=print, root: str = "", until: str = "") -> dict:
    """Prepares data, generates modules and runs the pipeline; returns :func:`results`.

    ``until`` names the last component to run (``Transform`` for lr-check; default all).
    ``results()['pushed']`` says whether this run pushed a new serving model.
    Raises whatever a component raised (LocalDagRunner stops at the first
    failing component), or ConfigError when another run holds ``root``
    (:mod:`pipelines.runners.lock`).
    """
    root = root or pipeline_dir(cfg)
    until = until or component_ids(cfg)[-1]
    with holding(root, cfg.pipeline.name):  # one run at a time of a pipeline
        return _run_local(cfg, log, root, until)


def _run_local(cfg: Config, log, root: str, until: str) -> dict:
    where = paths(root)
    report = prepare(cfg, where["input"])
    test = f", {report['test_rows']} test" if "test_rows" in report else ""
    log(("input unchanged, kept: " if report.get("reused") else "prepared ")
        + f"{report['rows']} interactions: {report['train_rows']} train, "
        f"{report['eval_rows']} eval{test} ({report['split_method']} split), "
        f"{report['catalog_candidates']} catalog candidates -> {where['input']}"
        f"{dropped_text(report)}")
    modules = write_modules(cfg, where["modules"])
    modules["schema"] = write_schema(cfg, where["modules"])
    shutil.copyfile(os.path.join(where["input"], SQL_FILE),
                    os.path.join(where["modules"], SQL_FILE))
    log(f"generated {modules['transform']} and {modules['trainer']}")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # not tfx.v1: builder

    log(f"running {component_ids(cfg).index(until) + 1} components with LocalDagRunner")
    with private_tmp(root):  # TFX's wheel builds and installs: removed when the run ends
        LocalDagRunner().run(
            build_pipeline(cfg, where["input"], modules, root, until))
    out = results(root)  # this run's own executions (the lock keeps other runs out)
    out["cached"] = cached_components(where["metadata"], cfg.pipeline.name)
    return out


def transform_outputs(root: str) -> Dict[str, object]:
    """The newest Transform run under ``root``: its graph and ``{split: [pattern]}``."""
    tfx_dir = paths(root)["tfx"]
    graph = newest(os.path.join(tfx_dir, "Transform", "transform_graph", "*"))
    examples = newest(os.path.join(tfx_dir, "Transform", "transformed_examples", "*"))
    if not graph or not examples:
        raise FileNotFoundError(f"no Transform output under {tfx_dir}")
    files = {os.path.basename(p)[len("Split-"):]: [os.path.join(p, "*")]
             for p in glob.glob(os.path.join(examples, "Split-*"))}
    return {"transform_graph": graph, "files": files}


def component_seconds(metadata_path: str, pipeline_name: str) -> Dict[str, float]:
    """Wall seconds of each component's newest execution, from ML Metadata's timestamps."""
    store = _store(metadata_path)
    newest: Dict[str, tuple] = {}
    for execution in store.get_executions():
        for context in store.get_contexts_by_execution(execution.id):
            if context.name.startswith(pipeline_name + "."):
                name = context.name[len(pipeline_name) + 1:]
                seconds = (execution.last_update_time_since_epoch
                           - execution.create_time_since_epoch) / 1000.0
                if execution.id > newest.get(name, (-1, 0.0))[0]:
                    newest[name] = (execution.id, seconds)
    return {name: seconds for name, (_, seconds) in newest.items()}


def cached_components(metadata_path: str, pipeline_name: str) -> List[str]:
    """Component ids whose newest execution ML Metadata records as CACHED (reused)."""
    from ml_metadata.proto import metadata_store_pb2  # ML Metadata: off the CLI's fast path

    store = _store(metadata_path)
    newest: Dict[str, tuple] = {}
    for execution in store.get_executions():
        for context in store.get_contexts_by_execution(execution.id):
            if context.name.startswith(pipeline_name + "."):
                name = context.name[len(pipeline_name) + 1:]
                if execution.id > newest.get(name, (-1, 0))[0]:
                    newest[name] = (execution.id, execution.last_known_state)
    return sorted(name for name, (_, state) in newest.items()
                  if state == metadata_store_pb2.Execution.CACHED)


def completed_components(metadata_path: str, pipeline_name: str) -> List[str]:
    """Component ids with a COMPLETE execution in ML Metadata (for tests and checks)."""
    from ml_metadata.proto import metadata_store_pb2  # ML Metadata: off the CLI's fast path

    store = _store(metadata_path)
    done = set()
    for execution in store.get_executions():
        if execution.last_known_state != metadata_store_pb2.Execution.COMPLETE:
            continue
        for context in store.get_contexts_by_execution(execution.id):
            if context.name.startswith(pipeline_name + "."):
                done.add(context.name[len(pipeline_name) + 1:])
    return sorted(done)
