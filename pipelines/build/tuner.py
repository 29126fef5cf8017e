"""The pipeline's Tuner step (``tuning:``): TFX's Tuner with the generated ``tuner_fn``.

Between Transform and Trainer; its ``best_hyperparameters`` are the Trainer's
(and the refit's) ``hyperparameters`` input, so the values the search chose
are what trains (:func:`trainer.tuning_space.apply_values` in ``run_fn``), and
ML Metadata records the Tuner's output as the Trainer's input. The step reads
the train split and the catalog (handed as its eval split): never the eval
split the gate judges. Cached like every step: an unchanged Transform output
and Trainer module reuse the search. Run here (or on Vertex AI with ``tuning.parallel``
1) it keeps each trial's record and TensorBoard run in its ``tuner_results`` output
(:mod:`pipelines.build.components.tuner_records`): the report's trial table, the HParams view.

Compiled for Vertex AI with ``tuning.parallel`` > 1 it is TFX's Google Cloud
Tuner (``tfx.extensions.google_cloud_ai_platform.Tuner``): one Vertex AI
Training job of ``parallel`` replicas in the training image (workerpool0 also
serves keras-tuner's oracle), each running trials at once against that oracle.
Each replica's own disk is not shared, so the search's folder is on the
pipeline's bucket (``REMOTE_TRIALS_WORKING_DIR_KEY``:
``<vertex.pipeline_root>/<pipeline.name>/tuner-trials``, one project per search,
:func:`trainer.tuning.tuner_from_fn_args`): the trials' records, the oracle's
state (a search started again resumes there) and their TensorBoard runs.
"""
from __future__ import annotations

from typing import Dict, Optional

from pipelines.config.schema import Config
from transform.naming import CATALOG_SPLIT, TRAIN_SPLIT

OBJECTIVE_KEY = "twotower_objective"  # trainer.tuning.OBJECTIVE_KEY (checked by a test)


def tuner_step(cfg: Config, modules: Dict[str, str], transform, schema_gen,
               image: Optional[str] = None, folder: Optional[str] = None):
    """The Tuner component over ``transform``'s output (imports TFX); ``folder``: the
    pipeline's own on the bucket (``builder.pipeline_folder``; compiled for Vertex AI)."""
    from tfx.proto import trainer_pb2, tuner_pb2

    from pipelines.build.codegen import frozen_spec
    from pipelines.build.gate import objective_of

    args = dict(module_file=modules["trainer"],
                examples=transform.outputs["transformed_examples"],
                transform_graph=transform.outputs["transform_graph"],
                schema=schema_gen.outputs["schema"],
                train_args=trainer_pb2.TrainArgs(splits=[TRAIN_SPLIT]),
                eval_args=trainer_pb2.EvalArgs(splits=[CATALOG_SPLIT]))
    custom = {OBJECTIVE_KEY: objective_of(frozen_spec(cfg))}
    if image and cfg.tuning.parallel > 1:
        from tfx import v1 as tfx  # the Vertex AI extension: only in a compiled pipeline

        vx = tfx.extensions.google_cloud_ai_platform
        custom.update(vertex_tuning_config(cfg, image, folder))
        return vx.Tuner(tune_args=tuner_pb2.TuneArgs(num_parallel_trials=cfg.tuning.parallel),
                        custom_config=custom, **args)
    from pipelines.build.components.tuner_records import RecordedTuner

    return RecordedTuner(custom_config=custom, **args).with_id("Tuner")


def vertex_tuning_config(cfg: Config, image: str, folder: str) -> dict:
    """The Google Cloud Tuner's ``custom_config``: each parallel worker a Vertex AI Training
    job on ``vertex.training``'s machine (default n1-standard-8), in the training image; the
    search's folder under ``folder``."""
    from tfx import v1 as tfx

    vx, v = tfx.extensions.google_cloud_ai_platform, cfg.vertex
    t = v.training
    machine = {"machine_type": t.machine_type if t else "n1-standard-8"}
    if t and t.accelerator_count:
        machine.update(accelerator_type=t.accelerator_type, accelerator_count=t.accelerator_count)
    job = {"worker_pool_specs": [{"machine_spec": machine, "replica_count": 1,
                                  "container_spec": {"image_uri": image}}]}
    if v.service_account:
        job["service_account"] = v.service_account
    return {vx.ENABLE_VERTEX_KEY: True, vx.VERTEX_REGION_KEY: v.region,
            vx.experimental.TUNING_ARGS_KEY: {"project": v.project, "job_spec": job},
            vx.experimental.REMOTE_TRIALS_WORKING_DIR_KEY: f"{folder}/tuner-trials"}
