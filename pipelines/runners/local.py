"""`twotower run`: the pipeline (:mod:`pipelines.builder`) on this machine.

The data is prepared by the DuckDB SQL program, the modules generated, and
the pipeline run by LocalDagRunner on Beam's DirectRunner, with SQLite ML
Metadata under the pipeline root (layout: :mod:`pipelines.builder`). Also the
readers of a finished local run: its results, Transform outputs and component
timings from ML Metadata.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Dict, List

from pipelines.builder import build_pipeline, component_ids, paths, write_schema
from pipelines.codegen import write_modules
from pipelines.config import Config, ConfigError
from pipelines.data.prepare import SQL_FILE, dropped_text, prepare
from pipelines.gate import read_decision
from pipelines.runners.lock import LOCK_FILE, holding
from pipelines.runners.scratch import private_tmp


DEFAULT_ROOT = "runs"


def pipeline_dir(cfg: Config) -> str:
    """The pipeline's own folder, ``<pipeline.root>/<pipeline.name>`` (root default ``runs``).

    Pipelines share a root, never a folder: each has its own prepared input,
    modules, ML Metadata, serving models, logs and lock, so two pipelines with
    different names run side by side under one root, and a second run of the
    same pipeline is refused (:mod:`pipelines.runners.lock`).
    """
    return os.path.abspath(os.path.join(cfg.pipeline.root or DEFAULT_ROOT, cfg.pipeline.name))


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
    """Metrics, gate decision and model paths of the newest run under ``root``."""
    where = paths(root)
    run_dir = newest(os.path.join(where["tfx"], "Trainer", "model_run", "*"))
    out = {"root": root, "metrics_file": "", "metrics": None, "serving_model": "",
           "gate": None}
    if run_dir:
        out["metrics_file"] = os.path.join(run_dir, "training_metrics.json")
        if os.path.exists(out["metrics_file"]):
            with open(out["metrics_file"], encoding="utf-8") as handle:
                out["metrics"] = json.load(handle)
    out["refit"] = None  # the RefitTrainer's record (training.refit), if one ran
    refit_dir = newest(os.path.join(where["tfx"], "RefitTrainer", "model_run", "*"))
    refit_file = os.path.join(refit_dir, "training_metrics.json") if refit_dir else ""
    if refit_file and os.path.exists(refit_file):
        with open(refit_file, encoding="utf-8") as handle:
            out["refit"] = json.load(handle)
    blessing = newest(os.path.join(where["tfx"], "PopularityGate", "blessing", "*"))
    out["gate"] = read_decision(blessing) if blessing else None
    pushed = {os.path.realpath(p) for p in pushed_models(where["metadata"])}
    out["serving_model"] = newest_of([p for p in glob.glob(os.path.join(where["serving"], "*"))
                                      if os.path.realpath(p) in pushed])
    return out


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
    from tfx import v1 as tfx

    before = results(root)["serving_model"]
    log(f"running {component_ids(cfg).index(until) + 1} components with LocalDagRunner")
    with private_tmp(root):  # TFX's wheel builds and installs: removed when the run ends
        tfx.orchestration.LocalDagRunner().run(
            build_pipeline(cfg, where["input"], modules, root, until))
    out = results(root)
    out["pushed"] = bool(out["serving_model"]) and out["serving_model"] != before
    out["cached"] = cached_components(where["metadata"], cfg.pipeline.name)
    # unchanged input and config: the Pusher's earlier push is reused (pipeline.enable_cache)
    out["reused_push"] = "Pusher" in out["cached"] and bool(out["serving_model"])
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


def _store(metadata_path: str):
    """ML Metadata's SQLite store under a pipeline's folder, read-only."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def pushed_models(metadata_path: str) -> List[str]:
    """The serving folders that a Pusher execution which COMPLETED recorded as pushed.

    The Pusher copies the model into ``serving/<version>`` in place: a push
    that failed midway (a full disk, a killed run) leaves a partial folder
    that looks like a version. Only what ML Metadata records as pushed by a
    finished execution is served.
    """
    if not os.path.exists(metadata_path):
        return []
    from ml_metadata.proto import metadata_store_pb2

    store = _store(metadata_path)
    artifacts = store.get_artifacts_by_type("PushedModel")  # [] before any push
    complete = metadata_store_pb2.Execution.COMPLETE
    cached = metadata_store_pb2.Execution.CACHED  # a rerun reusing the push (the cache)
    out = []
    for artifact in artifacts:
        props = artifact.custom_properties
        if props["pushed"].int_value != 1 or not props["pushed_destination"].string_value:
            continue
        events = store.get_events_by_artifact_ids([artifact.id])
        producers = [e.execution_id for e in events
                     if e.type == metadata_store_pb2.Event.OUTPUT]
        states = [x.last_known_state for x in store.get_executions_by_id(producers)]
        if complete in states and all(state in (complete, cached) for state in states):
            out.append(props["pushed_destination"].string_value)
    return out


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
    from ml_metadata.proto import metadata_store_pb2

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
    from ml_metadata.proto import metadata_store_pb2

    store = _store(metadata_path)
    done = set()
    for execution in store.get_executions():
        if execution.last_known_state != metadata_store_pb2.Execution.COMPLETE:
            continue
        for context in store.get_contexts_by_execution(execution.id):
            if context.name.startswith(pipeline_name + "."):
                done.add(context.name[len(pipeline_name) + 1:])
    return sorted(done)
