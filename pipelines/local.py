"""The TFX pipeline, built from a config and run locally with LocalDagRunner.

ParquetExampleGen -> StatisticsGen -> ImportSchemaGen -> Transform -> Trainer
-> PopularityGate -> Pusher, on Beam's DirectRunner, with SQLite ML Metadata
under the pipeline root. The schema is not inferred: it is written from the
config (:mod:`pipelines.data.columns`), so every id stays a string. TFX is
imported inside the functions: it takes ~20 s, and nothing that only reads a
config should pay for it.

Layout under ``pipeline.root``::

    input/<split>/data.parquet     prepared ExampleGen input (pipelines.data.prepare)
    input/prepare.sql              the data preparation program that wrote it (DuckDB)
    modules/prepare.sql            the same program, beside the modules it feeds
    modules/transform_module.py    generated Transform module
    modules/trainer_module.py      generated Trainer module
    modules/schema.pbtxt           the explicit schema ImportSchemaGen imports
    tfx/                           TFX artifacts, one folder per component
    metadata.sqlite                ML Metadata
    serving/<version>/             the pushed serving SavedModel (if the gate blessed it)
"""
from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Dict, List, Optional

from pipelines.codegen import write_modules
from pipelines.config import Config
from pipelines.data.columns import schema_text
from pipelines.data.prepare import SQL_FILE, prepare
from pipelines.gate import read_decision
from transform.naming import (CATALOG_SPLIT, EVAL_SPLIT, TEST_SPLIT, TRAIN_SPLIT,
                              queries_split)

COMPONENTS = ("ParquetExampleGen", "StatisticsGen", "ImportSchemaGen", "Transform", "Trainer",
              "PopularityGate", "Pusher")
SCHEMA_FILE = "schema.pbtxt"


def pipeline_root(cfg: Config) -> str:
    return os.path.abspath(cfg.pipeline.root or os.path.join("runs", cfg.pipeline.name))


def paths(root: str) -> Dict[str, str]:
    return {"input": os.path.join(root, "input"), "modules": os.path.join(root, "modules"),
            "tfx": os.path.join(root, "tfx"), "metadata": os.path.join(root, "metadata.sqlite"),
            "serving": os.path.join(root, "serving")}


def split_names(cfg: Config) -> List[str]:
    """Every prepared split: interactions, the catalog, the held-out query snapshots."""
    held = [EVAL_SPLIT] + ([TEST_SPLIT] if cfg.data.split.test_fraction > 0 else [])
    return [TRAIN_SPLIT] + held + [CATALOG_SPLIT] + [queries_split(s) for s in held]


def write_schema(cfg: Config, modules_dir: str) -> str:
    os.makedirs(modules_dir, exist_ok=True)
    path = os.path.join(modules_dir, SCHEMA_FILE)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(schema_text(cfg))
    return path


def build_pipeline(cfg: Config, input_dir: str, modules: Dict[str, str], root: str,
                   until: str = COMPONENTS[-1], beam: Optional[List[str]] = None):
    """The TFX pipeline object (imports TFX), its components up to ``until``.

    ``beam``: the Beam components' ``beam_pipeline_args`` (default: the local
    DirectRunner's, :func:`beam_args`).
    """
    from tfx import v1 as tfx
    from tfx.proto import transform_pb2

    from pipelines.components.parquet_example_gen import parquet_example_gen
    from pipelines.components.popularity_gate import PopularityGate

    where = paths(root)
    splits = split_names(cfg)
    example_gen = parquet_example_gen(input_dir, tfx.proto.Input(splits=[
        tfx.proto.Input.Split(name=split, pattern=f"{split}/*.parquet") for split in splits]))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=modules["schema"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        module_file=modules["transform"],
        splits_config=transform_pb2.SplitsConfig(analyze=[TRAIN_SPLIT], transform=splits))
    trainer = tfx.components.Trainer(module_file=modules["trainer"],
                                     examples=transform.outputs["transformed_examples"],
                                     transform_graph=transform.outputs["transform_graph"],
                                     schema=schema_gen.outputs["schema"])
    lift = cfg.pipeline.min_lift_over_popularity
    gate = PopularityGate(model_run=trainer.outputs["model_run"],
                          min_lift=1.0 if lift is None else float(lift),
                          enabled=int(lift is not None))
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=gate.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=where["serving"])))
    components = [example_gen, statistics_gen, schema_gen, transform, trainer, gate, pusher]
    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline.name, pipeline_root=where["tfx"],
        components=components[:COMPONENTS.index(until) + 1],
        enable_cache=cfg.pipeline.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            where["metadata"]),
        beam_pipeline_args=beam_args(cfg) if beam is None else beam)


def beam_args(cfg: Config) -> List[str]:
    """DirectRunner options: in memory with one worker, or N worker processes."""
    workers = cfg.pipeline.beam_workers
    mode = "in_memory" if workers == 1 else "multi_processing"
    return [f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]


def _newest(pattern: str) -> str:
    """The match with the highest numeric last path part (TFX execution ids)."""
    found = [p for p in glob.glob(pattern) if os.path.basename(p).isdigit()]
    return max(found, key=lambda p: int(os.path.basename(p))) if found else ""


def results(root: str) -> dict:
    """Metrics, gate decision and model paths of the newest run under ``root``."""
    where = paths(root)
    run_dir = _newest(os.path.join(where["tfx"], "Trainer", "model_run", "*"))
    out = {"root": root, "metrics_file": "", "metrics": None, "serving_model": "",
           "gate": None}
    if run_dir:
        out["metrics_file"] = os.path.join(run_dir, "training_metrics.json")
        if os.path.exists(out["metrics_file"]):
            with open(out["metrics_file"], encoding="utf-8") as handle:
                out["metrics"] = json.load(handle)
    blessing = _newest(os.path.join(where["tfx"], "PopularityGate", "blessing", "*"))
    out["gate"] = read_decision(blessing) if blessing else None
    out["serving_model"] = _newest(os.path.join(where["serving"], "*"))
    return out


def run_local(cfg: Config, log=print, root: str = "", until: str = COMPONENTS[-1]) -> dict:
    """Prepares data, generates modules and runs the pipeline; returns :func:`results`.

    ``until`` names the last component to run (``Transform`` for lr-check).
    ``results()['pushed']`` says whether this run pushed a new serving model.
    Raises whatever a component raised (LocalDagRunner stops at the first
    failing component).
    """
    root = root or pipeline_root(cfg)
    where = paths(root)
    report = prepare(cfg, where["input"])
    test = f", {report['test_rows']} test" if "test_rows" in report else ""
    log(f"prepared {report['rows']} interactions: {report['train_rows']} train, "
        f"{report['eval_rows']} eval{test} ({report['split_method']} split), "
        f"{report['catalog_candidates']} catalog candidates -> {where['input']}")
    modules = write_modules(cfg, where["modules"])
    modules["schema"] = write_schema(cfg, where["modules"])
    shutil.copyfile(os.path.join(where["input"], SQL_FILE),
                    os.path.join(where["modules"], SQL_FILE))
    log(f"generated {modules['transform']} and {modules['trainer']}")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from tfx import v1 as tfx

    before = results(root)["serving_model"]
    log("running " + " -> ".join(COMPONENTS[:COMPONENTS.index(until) + 1])
        + " with LocalDagRunner")
    tfx.orchestration.LocalDagRunner().run(
        build_pipeline(cfg, where["input"], modules, root, until))
    out = results(root)
    out["pushed"] = bool(out["serving_model"]) and out["serving_model"] != before
    return out


def transform_outputs(root: str) -> Dict[str, object]:
    """The newest Transform run under ``root``: its graph and ``{split: [pattern]}``."""
    tfx_dir = paths(root)["tfx"]
    graph = _newest(os.path.join(tfx_dir, "Transform", "transform_graph", "*"))
    examples = _newest(os.path.join(tfx_dir, "Transform", "transformed_examples", "*"))
    if not graph or not examples:
        raise FileNotFoundError(f"no Transform output under {tfx_dir}")
    files = {os.path.basename(p)[len("Split-"):]: [os.path.join(p, "*")]
             for p in glob.glob(os.path.join(examples, "Split-*"))}
    return {"transform_graph": graph, "files": files}


def component_seconds(metadata_path: str, pipeline_name: str) -> Dict[str, float]:
    """Wall seconds of each component's newest execution, from ML Metadata's timestamps."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
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


def completed_components(metadata_path: str, pipeline_name: str) -> List[str]:
    """Component ids with a COMPLETE execution in ML Metadata (for tests and checks)."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    done = set()
    for execution in store.get_executions():
        if execution.last_known_state != metadata_store_pb2.Execution.COMPLETE:
            continue
        for context in store.get_contexts_by_execution(execution.id):
            if context.name.startswith(pipeline_name + "."):
                done.add(context.name[len(pipeline_name) + 1:])
    return sorted(done)
