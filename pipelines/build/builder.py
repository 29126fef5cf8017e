"""The TFX pipeline, built once from a config; the runners run or compile it.

ParquetExampleGen -> StatisticsGen -> ImportSchemaGen -> Transform -> Trainer
-> PopularityGate [-> RefitTransform -> RefitTrainer] -> Pusher. The schema is not inferred: it is written from
the config (:mod:`pipelines.data.columns`), so every id stays a string. The
local runner (:mod:`pipelines.runners.local`) runs it with LocalDagRunner on
Beam's DirectRunner; the Vertex runner (:mod:`pipelines.runners.compile`)
compiles the same object with KubeflowV2DagRunner. TFX is imported inside the
functions: it takes ~20 s, and nothing that only reads a config should pay
for it; a local pipeline imports only the TFX modules it uses, never ``tfx.v1``
(whose extensions import the Vertex AI SDK: ~6 s of every local run).

Layout of one pipeline's folder (local: ``<pipeline.root>/<pipeline.name>``;
Vertex AI: ``<vertex.pipeline_root>/<pipeline.name>``, where ``input/`` and
``modules/`` sit under ``staged/<content digest>/``); pipelines share a root,
never a folder::

    input/<split>/data.parquet     prepared ExampleGen input (pipelines.data.prepare)
    input/prepare.sql              the data preparation program that wrote it (DuckDB)
    modules/prepare.sql            the same program, beside the modules it feeds
    modules/transform/transform_module.py  generated Transform module, in a folder of its own:
    modules/trainer/trainer_module.py      TFX versions a module's wheel by every .py file of
                                           its folder, so each module is its own cache key
    modules/schema-<digest>.pbtxt  the explicit schema ImportSchemaGen imports, named by
                                   its content (its path is the component's cache key)
    tfx/                           TFX artifacts, one folder per component
    metadata.sqlite                ML Metadata (local runs)
    serving/<version>/             the pushed serving SavedModel (if the gate blessed it)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Dict, List, Optional, Tuple, Union

from pipelines.build.beam import direct_args
from pipelines.config.schema import Config, ConfigError
from pipelines.build.gate import cutoffs as gate_cutoffs
from pipelines.config.learning_rate import learning_rate_ceiling
from pipelines.data.columns import schema_text
from pipelines.vertex import serve
from pipelines.vertex.cloud import OWN_IMAGE
from trainer.parameters import RUNTIME_PARAMETERS, check_parameters
from transform.naming import (CATALOG_SPLIT, EVAL_SPLIT, REFIT_KEY, TEST_SPLIT, TRAIN_SPLIT,
                              has_test_split, queries_split)

# Execution order. The refit pair (training.refit) re-analyses train + eval and fits the
# chosen epochs on both; its model is the one pushed (trainer.training).
SELECTION = ("ParquetExampleGen", "StatisticsGen", "ImportSchemaGen", "Transform", "Trainer",
             "PopularityGate")
REFIT = ("RefitTransform", "RefitTrainer")
COMPONENTS = SELECTION + REFIT + ("Pusher",)  # with the default training.refit: true


def component_ids(cfg: Config) -> Tuple[str, ...]:
    """The pipeline's components in execution order, for this config (``tuning:`` adds the
    Tuner between Transform and Trainer)."""
    selection = SELECTION if cfg.tuning is None else (
        SELECTION[:SELECTION.index("Trainer")] + ("Tuner",)
        + SELECTION[SELECTION.index("Trainer"):])
    return selection + (REFIT if cfg.training.refit else ()) + ("Pusher",)


SCHEMA_PREFIX, SCHEMA_SUFFIX = "schema-", ".pbtxt"


def paths(root: str) -> Dict[str, str]:
    return {"input": os.path.join(root, "input"), "modules": os.path.join(root, "modules"),
            "tfx": os.path.join(root, "tfx"), "metadata": os.path.join(root, "metadata.sqlite"),
            "serving": os.path.join(root, "serving")}


def split_names(cfg: Config) -> List[str]:
    """Every prepared split: interactions, the catalog, the held-out query snapshots."""
    held = [EVAL_SPLIT] + ([TEST_SPLIT] if has_test_split(cfg.to_dict()["data"]["split"])
                           else [])
    return [TRAIN_SPLIT] + held + [CATALOG_SPLIT] + [queries_split(s) for s in held]


def write_schema(cfg: Config, modules_dir: str) -> str:
    """Writes the config's schema as ``schema-<sha256 prefix>.pbtxt`` and returns its path.

    ImportSchemaGen's only property is the file's path, so TFX's cache (and Vertex AI's) keys
    on the path, not the text: a schema written over under one name would let a rerun reuse
    the old schema after a feature was added (its Transform then fails on a missing column,
    or, worse, trains without it). Named by content, a changed schema is a new path and the
    cache misses. Older ``schema-*.pbtxt`` files this function wrote there are removed.
    """
    text = schema_text(cfg)
    name = f"{SCHEMA_PREFIX}{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}{SCHEMA_SUFFIX}"
    os.makedirs(modules_dir, exist_ok=True)
    path = os.path.join(modules_dir, name)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)
    for old in os.listdir(modules_dir):
        if old != name and old.startswith(SCHEMA_PREFIX) and old.endswith(SCHEMA_SUFFIX):
            os.remove(os.path.join(modules_dir, old))
    return path


def example_gen(source: Union[str, Dict[str, str]], splits: List[str]):
    """The ExampleGen: prepared Parquet splits under a folder, or one BigQuery query per split.

    ``source``: the folder (local or gs://) the data preparation wrote, or
    ``{split: BigQuery SQL}`` (:mod:`pipelines.data.sql.bigquery`).
    """
    from tfx.proto.example_gen_pb2 import Input  # TFX: off the CLI's fast path

    if isinstance(source, dict):
        # TFX: off the CLI's fast path
        from tfx.extensions.google_cloud_big_query.example_gen.component import (
            BigQueryExampleGen)

        if sorted(source) != sorted(splits):
            raise ValueError(f"BigQuery queries for {sorted(source)}, splits {sorted(splits)}")
        return BigQueryExampleGen(input_config=Input(splits=[
            Input.Split(name=split, pattern=source[split]) for split in splits]))
    # Beam and TFX: off the CLI's fast path
    from pipelines.build.components.parquet_example_gen import parquet_example_gen

    return parquet_example_gen(source, Input(splits=[
        Input.Split(name=split, pattern=f"{split}/*.parquet") for split in splits]))


def build_pipeline(cfg: Config, source: Union[str, Dict[str, str]], modules: Dict[str, str],
                   root: str, until: Optional[str] = None, beam: Optional[List[str]] = None,
                   image: Optional[str] = None):
    """The TFX pipeline object (imports TFX), its components up to ``until`` (default: all).

    ``source``: see :func:`example_gen`. ``beam``: the Beam components'
    ``beam_pipeline_args`` (default: the local DirectRunner's, :func:`pipelines.build.beam.direct_args`).
    ``image``: the Vertex AI training image, for a pipeline compiled for Vertex
    AI: it adds the ``RuntimeParameters`` step (epochs, learning rate and batch
    size set at submission) and, with ``vertex.training``, runs the Trainer as
    a Vertex AI Training job in that image.
    """
    from tfx.components import Pusher, StatisticsGen, Transform  # TFX: off the CLI's fast path
    # TFX: off the CLI's fast path
    from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
    from tfx.orchestration import metadata, pipeline  # TFX: off the CLI's fast path
    from tfx.proto import pusher_pb2, trainer_pb2, transform_pb2  # TFX: off the CLI's fast path

    # TFX: off the CLI's fast path
    from pipelines.build.components.module_wheels import reuse_module_wheels
    # TFX: off the CLI's fast path
    from pipelines.build.components.popularity_gate import PopularityGate

    where = paths(root)
    splits = split_names(cfg)
    examples = example_gen(source, splits)
    statistics_gen = StatisticsGen(examples=examples.outputs["examples"])
    schema_gen = ImportSchemaGen(schema_file=modules["schema"])
    transform = Transform(
        examples=examples.outputs["examples"], schema=schema_gen.outputs["schema"],
        module_file=modules["transform"],
        splits_config=transform_pb2.SplitsConfig(analyze=[TRAIN_SPLIT], transform=splits))
    steps = [examples, statistics_gen, schema_gen, transform]
    trainer_args = dict(module_file=modules["trainer"],
                        examples=transform.outputs["transformed_examples"],
                        transform_graph=transform.outputs["transform_graph"],
                        schema=schema_gen.outputs["schema"])
    if cfg.tuning is not None:  # the search's best values train (pipelines.build.tuner)
        from pipelines.build.tuner import tuner_step

        steps.append(tuner_step(cfg, modules, transform, schema_gen, image,
                                pipeline_folder(cfg) if image else None))
        trainer_args["hyperparameters"] = steps[-1].outputs["best_hyperparameters"]
    elif image:
        steps.append(runtime_parameters(cfg))
        trainer_args["hyperparameters"] = steps[-1].outputs["hyperparameters"]
    trainer = make_trainer(cfg, image, trainer_args)
    lift = cfg.pipeline.min_lift_over_popularity
    gate = PopularityGate(model_run=trainer.outputs["model_run"],
                          min_lift=1.0 if lift is None else float(lift),
                          enabled=int(lift is not None),
                          cutoffs=json.dumps(gate_cutoffs(cfg.to_dict())),
                          against=cfg.pipeline.gate_against)
    components = steps + [trainer, gate]
    served = trainer
    if cfg.training.refit:
        refit_transform = Transform(
            examples=examples.outputs["examples"], schema=schema_gen.outputs["schema"],
            module_file=modules["transform"],
            splits_config=transform_pb2.SplitsConfig(analyze=[TRAIN_SPLIT, EVAL_SPLIT],
                                                     transform=refit_splits(cfg))
        ).with_id("RefitTransform")
        refit_transform.add_upstream_node(gate)  # after the choice is made and judged
        served = make_trainer(cfg, image, dict(
            trainer_args, examples=refit_transform.outputs["transformed_examples"],
            transform_graph=refit_transform.outputs["transform_graph"],
            base_model=trainer.outputs["model"],
            train_args=trainer_pb2.TrainArgs(splits=[TRAIN_SPLIT, EVAL_SPLIT]),
            eval_args=trainer_pb2.EvalArgs(splits=[EVAL_SPLIT])), refit=True).with_id("RefitTrainer")
        components += [refit_transform, served]
    pusher = Pusher(
        model=served.outputs["model"], model_blessing=gate.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=where["serving"])))
    components.append(pusher)
    if image and cfg.vertex.model_upload is not None:
        components.append(model_upload(cfg, pusher, image))
    if image and cfg.vertex.vector_search is not None:
        components.append(vector_search_deploy(cfg, pusher, image))
    ids = [c.id for c in components]
    reuse_module_wheels(components)  # a module's wheel, built once per content
    return pipeline.Pipeline(
        pipeline_name=cfg.pipeline.name, pipeline_root=where["tfx"],
        components=components[:ids.index(until) + 1] if until else components,
        enable_cache=cfg.pipeline.enable_cache,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            where["metadata"]),
        beam_pipeline_args=direct_args(cfg) if beam is None else beam)


def make_trainer(cfg: Config, image: Optional[str], args: dict, refit: bool = False):
    """A Trainer (on Vertex AI Training with ``vertex.training`` in a compiled pipeline);
    ``refit``: the one that fits the chosen epochs on train + eval."""
    custom = {REFIT_KEY: True} if refit else {}
    if image and cfg.vertex.training is not None:
        from tfx import v1 as tfx  # the Vertex AI extension: only in a compiled pipeline

        custom.update(training_custom_config(cfg, image))
        return tfx.extensions.google_cloud_ai_platform.Trainer(custom_config=custom, **args)
    from tfx.components import Trainer  # TFX: off the CLI's fast path

    return Trainer(custom_config=custom or None, **args)


def refit_splits(cfg: Config) -> List[str]:
    """What the refit's Transform writes: the fitted splits, the catalog, the test split."""
    test = ([TEST_SPLIT, queries_split(TEST_SPLIT)]
            if has_test_split(cfg.to_dict()["data"]["split"]) else [])
    return [TRAIN_SPLIT, EVAL_SPLIT, CATALOG_SPLIT] + test


def runtime_parameters(cfg: Config):
    """The RuntimeParameters step: pipeline parameters with the config's values as defaults."""
    from tfx import v1 as tfx  # TFX: off the CLI's fast path

    # TFX: off the CLI's fast path
    from pipelines.build.components.runtime_parameters import RuntimeParameters

    param = tfx.dsl.experimental.RuntimeParameter
    return RuntimeParameters(**{
        name: param(name=name, ptype=RUNTIME_PARAMETERS[name]["type"], default=value)
        for name, value in parameter_values(cfg).items()})



def serving_container(setting: str, image: str):
    """``(image, Model.upload's container arguments)`` for a ``serving_image`` setting:
    ``twotower`` is the training ``image`` (``twotower image`` builds it) serving with
    :mod:`pipelines.vertex.serve`; any other (a prebuilt image, as validated) serves by itself."""
    return (image, dict(serve.UPLOAD)) if setting == OWN_IMAGE else (setting, {})


def model_upload(cfg: Config, pusher, image: str):
    """The ModelUpload step after the Pusher (``vertex.model_upload``)."""
    from pipelines.build.components.model_upload import ModelUpload  # TFX: off the CLI's fast path

    v, u = cfg.vertex, cfg.vertex.model_upload
    serving, container = serving_container(u.serving_image, image)
    return ModelUpload(pushed_model=pusher.outputs["pushed_model"], project=v.project,
                       region=v.region, display_name=u.display_name or cfg.pipeline.name,
                       serving_image=serving, labels=json.dumps(dict(v.labels)),
                       api_endpoint=v.api_endpoint or "",
                       serving_container=json.dumps(container, sort_keys=True))


def vector_search_deploy(cfg: Config, pusher, image: str):
    """The VectorSearchDeploy step after the Pusher (``vertex.vector_search``)."""
    # TFX: off the CLI's fast path
    from pipelines.build.components.vector_search import VectorSearchDeploy

    v, s = cfg.vertex, cfg.vertex.vector_search
    serving, container = serving_container(s.serving_image, image)
    settings = dict(dataclasses.asdict(s), serving_image=serving, serving_container=container)
    return VectorSearchDeploy(pushed_model=pusher.outputs["pushed_model"], project=v.project,
                              region=v.region, display_name=s.display_name or cfg.pipeline.name,
                              settings=json.dumps(settings, sort_keys=True),
                              labels=json.dumps(dict(v.labels)), api_endpoint=v.api_endpoint or "")


def parameter_values(cfg: Config) -> Dict[str, object]:
    """The pipeline parameters' values from the config (what a compiled spec starts with).

    Each is checked by the runtime parameters' table (:mod:`trainer.parameters`)
    with the config's learning-rate ceiling, as the Trainer will check it: a
    default the Trainer would refuse is never compiled.

    Raises:
      ConfigError: naming the ``training`` key.
    """
    out, refused = check_parameters({name: getattr(cfg.training, row["key"])
                                     for name, row in RUNTIME_PARAMETERS.items()},
                                    learning_rate_ceiling(cfg))
    if refused:
        raise ConfigError([(f"training.{RUNTIME_PARAMETERS[name]['key']}", problem)
                           for name, problem in refused])
    return out


def pipeline_folder(cfg: Config) -> str:
    """``<vertex.pipeline_root>/<pipeline.name>``: this pipeline's part of a shared root on
    Vertex AI (its staged files, its job's artifacts under ``tfx/``, its pushed models)."""
    return f"{cfg.vertex.pipeline_root.rstrip('/')}/{cfg.pipeline.name}"


def training_custom_config(cfg: Config, image: str) -> dict:
    """The Vertex AI Training Trainer's ``custom_config``: one machine, maybe GPUs, our image.

    The number of GPUs asked for travels to ``run_fn`` too
    (:func:`trainer.runtime.choose_strategy` fails if they are not visible).
    """
    from tfx import v1 as tfx  # heavy (~20 s): only when a pipeline is built

    from trainer.runtime import GPUS_KEY  # imports TensorFlow

    vx, v, t = tfx.extensions.google_cloud_ai_platform, cfg.vertex, cfg.vertex.training
    machine = {"machine_type": t.machine_type}
    if t.accelerator_count:
        machine.update(accelerator_type=t.accelerator_type, accelerator_count=t.accelerator_count)
    job = {"worker_pool_specs": [{"machine_spec": machine, "replica_count": t.replica_count,
                                  "container_spec": {"image_uri": image}}]}
    if v.service_account:
        job["service_account"] = v.service_account
    args = {"project": v.project, "job_spec": job}
    if v.labels:  # the CustomJob's own labels (TFX adds its telemetry labels beside them)
        args["labels"] = dict(v.labels)
    return {vx.ENABLE_VERTEX_KEY: True, vx.VERTEX_REGION_KEY: v.region,
            vx.TRAINING_ARGS_KEY: args,
            GPUS_KEY: t.accelerator_count}
