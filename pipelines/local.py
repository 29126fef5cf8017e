"""The TFX pipeline, built from a config and run locally with LocalDagRunner.

ExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer -> Pusher,
on Beam's DirectRunner, with SQLite ML Metadata under the pipeline root.
TFX is imported inside the functions: it takes ~20 s, and nothing that only
reads a config should pay for it.

Layout under ``pipeline.root``::

    input/{train,eval}/data.csv    prepared ExampleGen input (pipelines.prepare)
    modules/transform_module.py    generated Transform module
    modules/trainer_module.py      generated Trainer module
    tfx/                           TFX artifacts, one folder per component
    metadata.sqlite                ML Metadata
    serving/<version>/             the pushed serving SavedModel
"""
from __future__ import annotations

import glob
import json
import os
from typing import Dict, List

from pipelines.codegen import write_modules
from pipelines.config import Config
from pipelines.prepare import prepare
from pipelines.splits import SPLITS

COMPONENTS = ("CsvExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", "Pusher")


def pipeline_root(cfg: Config) -> str:
    return os.path.abspath(cfg.pipeline.root or os.path.join("runs", cfg.pipeline.name))


def paths(root: str) -> Dict[str, str]:
    return {"input": os.path.join(root, "input"), "modules": os.path.join(root, "modules"),
            "tfx": os.path.join(root, "tfx"), "metadata": os.path.join(root, "metadata.sqlite"),
            "serving": os.path.join(root, "serving")}


def build_pipeline(cfg: Config, input_dir: str, modules: Dict[str, str], root: str,
                   until: str = COMPONENTS[-1]):
    """The TFX pipeline object (imports TFX), its components up to ``until``."""
    from tfx import v1 as tfx

    where = paths(root)
    example_gen = tfx.components.CsvExampleGen(
        input_base=input_dir,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name=split, pattern=f"{split}/*")
            for split in (SPLITS if cfg.data.split.test_fraction > 0 else SPLITS[:2])]))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"],
                                          infer_feature_shape=True)
    transform = tfx.components.Transform(examples=example_gen.outputs["examples"],
                                         schema=schema_gen.outputs["schema"],
                                         module_file=modules["transform"])
    trainer = tfx.components.Trainer(module_file=modules["trainer"],
                                     examples=transform.outputs["transformed_examples"],
                                     transform_graph=transform.outputs["transform_graph"],
                                     schema=schema_gen.outputs["schema"])
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=where["serving"])))
    components = [example_gen, statistics_gen, schema_gen, transform, trainer, pusher]
    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline.name, pipeline_root=where["tfx"],
        components=components[:COMPONENTS.index(until) + 1],
        enable_cache=cfg.pipeline.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            where["metadata"]),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])


def _newest(pattern: str) -> str:
    """The match with the highest numeric last path part (TFX execution ids)."""
    found = [p for p in glob.glob(pattern) if os.path.basename(p).isdigit()]
    return max(found, key=lambda p: int(os.path.basename(p))) if found else ""


def results(root: str) -> dict:
    """Metrics and model paths of the newest run under ``root``."""
    where = paths(root)
    run_dir = _newest(os.path.join(where["tfx"], "Trainer", "model_run", "*"))
    out = {"root": root, "metrics_file": "", "metrics": None, "serving_model": ""}
    if run_dir:
        out["metrics_file"] = os.path.join(run_dir, "training_metrics.json")
        if os.path.exists(out["metrics_file"]):
            with open(out["metrics_file"], encoding="utf-8") as handle:
                out["metrics"] = json.load(handle)
    pushed = _newest(os.path.join(where["serving"], "*"))
    out["serving_model"] = pushed
    return out


def run_local(cfg: Config, log=print, root: str = "", until: str = COMPONENTS[-1]) -> dict:
    """Prepares data, generates modules and runs the pipeline; returns :func:`results`.

    ``until`` names the last component to run (``Transform`` for lr-check).
    Raises whatever a component raised (LocalDagRunner stops at the first
    failing component).
    """
    root = root or pipeline_root(cfg)
    where = paths(root)
    report = prepare(cfg, where["input"])
    test = f", {report['test_rows']} test" if "test_rows" in report else ""
    log(f"prepared {report['rows']} interactions: {report['train_rows']} train, "
        f"{report['eval_rows']} eval{test} ({report['split_method']} split) -> {where['input']}")
    if report["interactions_without_candidate_row"]:
        log(f"warning: {report['interactions_without_candidate_row']} interactions name a "
            "candidate missing from the candidate table; its features get their defaults")
    modules = write_modules(cfg, where["modules"])
    log(f"generated {modules['transform']} and {modules['trainer']}")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from tfx import v1 as tfx

    log("running " + " -> ".join(COMPONENTS[:COMPONENTS.index(until) + 1])
        + " with LocalDagRunner")
    tfx.orchestration.LocalDagRunner().run(
        build_pipeline(cfg, where["input"], modules, root, until))
    return results(root)


def transform_outputs(root: str) -> Dict[str, str]:
    """The newest Transform run under ``root``: transform graph and train/eval example globs."""
    tfx_dir = paths(root)["tfx"]
    graph = _newest(os.path.join(tfx_dir, "Transform", "transform_graph", "*"))
    examples = _newest(os.path.join(tfx_dir, "Transform", "transformed_examples", "*"))
    if not graph or not examples:
        raise FileNotFoundError(f"no Transform output under {tfx_dir}")
    return {"transform_graph": graph,
            "train": os.path.join(examples, "Split-train", "*"),
            "eval": os.path.join(examples, "Split-eval", "*")}


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
