"""Vertex AI Pipelines: checking the `vertex` config section and submitting a compiled spec.

`twotower submit --config C --spec pipeline.json` creates a
``google.cloud.aiplatform.PipelineJob`` from the compiled PipelineSpec with the
config's project, region, pipeline root, service account, labels and caching,
and prints the job's resource name and console link (``--wait`` follows its
state). The client library is imported only here, and only when submitting.
"""
from __future__ import annotations

import json
import os
import re
import time
from typing import Dict, List, Optional, Tuple

from pipelines.config import Config, ConfigError
from pipelines.runners import cloud

PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]\Z")
REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+\Z")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\Z")
NETWORK = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_.-]*\Z")
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}\Z")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}\Z")
CONSOLE = ("https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{job}"
           "?project={project}")
DONE = ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")


def problems(cfg: Config, submitting: bool = False) -> List[Tuple[str, str]]:
    """``(key, message)`` for each bad value of ``vertex``; with ``submitting``, missing ones too."""
    v, out = cfg.vertex, []
    if submitting:
        for key in ("project", "region", "pipeline_root"):
            if not getattr(v, key):
                out.append((f"vertex.{key}", "is needed to submit to Vertex AI (e.g. "
                            + {"project": "my-project", "region": "europe-west4",
                               "pipeline_root": "gs://my-bucket/twotower"}[key] + ")"))
    if v.project and not PROJECT.match(v.project):
        out.append(("vertex.project", f"{v.project!r} is not a project id: 6-30 lower-case "
                    "letters, digits and '-', starting with a letter"))
    if v.region and not REGION.match(v.region):
        out.append(("vertex.region", f"{v.region!r} is not a region, e.g. europe-west4"))
    if v.pipeline_root and not v.pipeline_root.startswith("gs://"):
        out.append(("vertex.pipeline_root", f"{v.pipeline_root!r} must be a gs:// location "
                    "(Vertex AI writes every run's artifacts there)"))
    for key, account in (("vertex.service_account", v.service_account),
                         ("vertex.dataflow.service_account",
                          v.dataflow.service_account if v.dataflow else None)):
        if account and not EMAIL.match(account):
            out.append((key, f"{account!r} is not a service account's e-mail, e.g. "
                        "pipelines@my-project.iam.gserviceaccount.com"))
    for key, value in v.labels.items():
        if not LABEL_KEY.match(key):
            out.append((f"vertex.labels.{key}", "label keys are 1-63 lower-case letters, digits, "
                        "'_' or '-', starting with a letter"))
        if not isinstance(value, str) or not LABEL_VALUE.match(value):
            out.append((f"vertex.labels.{key}", f"{value!r}: label values are at most 63 "
                        "lower-case letters, digits, '_' or '-'"))
    if v.dataflow is not None:
        f = v.dataflow
        if f.temp_location and not f.temp_location.startswith("gs://"):
            out.append(("vertex.dataflow.temp_location", f"{f.temp_location!r} must be a gs:// "
                        "location"))
        if not 1 <= f.max_workers <= 1000:
            out.append(("vertex.dataflow.max_workers", f"must be in 1..1000, got {f.max_workers}"))
        if isinstance(f.disk_size_gb, bool) or not 30 <= f.disk_size_gb <= 65536:
            out.append(("vertex.dataflow.disk_size_gb", f"must be in 30..65536 GB, got "
                        f"{f.disk_size_gb}: a worker unpacks the ~12 GB training image (50 GB "
                        "by default; Dataflow's own default, 25, is too small)"))
        if not re.match(r"[a-z][a-z0-9-]{1,62}\Z", f.machine_type or ""):
            out.append(("vertex.dataflow.machine_type", f"{f.machine_type!r} is not a machine "
                        "type, e.g. n1-standard-4"))
        for key in ("network", "subnetwork"):
            value = getattr(f, key)
            if value and (not NETWORK.match(value) or ".." in value):
                out.append((f"vertex.dataflow.{key}", f"{value!r} is not a network name or "
                            "path, e.g. default or regions/europe-west4/subnetworks/default"))
    if v.training is not None:
        out += _training_problems(v.training)
    if v.model_upload is not None:
        u = v.model_upload
        wrong = cloud.image_problem(u.serving_image) or cloud.serving_tf_problem(
            u.serving_image, cloud.training_tensorflow())
        if wrong:
            out.append(("vertex.model_upload.serving_image", wrong))
        if cfg.pipeline.serving_index == "scann":
            out.append(("vertex.model_upload", "a ScaNN model needs ScaNN's ops in the serving "
                        "container: use pipeline.serving_index: exact, or your own image"))
    from pipelines.runners.vector_search import problems as vector_search_problems

    out += vector_search_problems(cfg)
    if v.api_endpoint and not re.match(r"(https://)?[A-Za-z0-9.-]+(:[0-9]+)?\Z|"
                                       r"http://(127\.0\.0\.1|localhost)(:[0-9]+)?\Z",
                                       v.api_endpoint):
        out.append(("vertex.api_endpoint", f"{v.api_endpoint!r}: a host name (https), or "
                    "http://127.0.0.1:PORT for a local stand-in"))
    return out


def _training_problems(t) -> List[Tuple[str, str]]:
    out = []
    if not re.match(r"[a-z][a-z0-9-]{1,62}\Z", t.machine_type or ""):
        out.append(("vertex.training.machine_type", f"{t.machine_type!r} is not a machine type, "
                    "e.g. n1-standard-8 (or g2-standard-8 for L4 GPUs)"))
    if t.accelerator_count not in (0, 1, 2, 4, 8):
        out.append(("vertex.training.accelerator_count", f"must be 0, 1, 2, 4 or 8, got "
                    f"{t.accelerator_count}"))
    if t.accelerator_count and not re.match(r"[A-Z][A-Z0-9_]{2,63}\Z", t.accelerator_type or ""):
        out.append(("vertex.training.accelerator_type", f"{t.accelerator_type!r}: name the GPU, "
                    "e.g. NVIDIA_TESLA_T4 or NVIDIA_L4"))
    if t.accelerator_type and not t.accelerator_count:
        out.append(("vertex.training.accelerator_count", f"is 0 but accelerator_type is "
                    f"{t.accelerator_type}: set how many"))
    wrong = None if out else cloud.gpu_problem(t.machine_type, t.accelerator_type,
                                               t.accelerator_count)
    if wrong:  # the machine can't take these GPUs (or comes with GPUs not asked for)
        out.append(wrong)
    if t.replica_count != 1:
        out.append(("vertex.training.replica_count", "must be 1: training runs on one machine "
                    "(up to 8 GPUs with MirroredStrategy); multi-worker training is not "
                    "supported"))
    return out


def pipeline_folder(cfg: Config) -> str:
    """``<vertex.pipeline_root>/<pipeline.name>``: this pipeline's part of a shared root
    (its staged files, its job's artifacts under ``tfx/``, its pushed models)."""
    return f"{cfg.vertex.pipeline_root.rstrip('/')}/{cfg.pipeline.name}"


def dataflow_args(cfg: Config, image: str) -> List[str]:
    """``beam_pipeline_args`` that run the Beam components on Dataflow.

    The workers use the training image (``--sdk_container_image``): it holds the
    custom ExampleGen's executor, which runs on them, and sets
    ``RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1`` (:mod:`pipelines.image`). Their
    disks hold that ~12 GB image (``--disk_size_gb``, 50 by default); the jobs
    carry ``vertex.labels``.
    """
    v, f = cfg.vertex, cfg.vertex.dataflow
    root = (v.pipeline_root or "").rstrip("/")
    args = ["--runner=DataflowRunner", f"--project={v.project}", f"--region={v.region}",
            f"--temp_location={f.temp_location or root + '/beam-temp'}",
            f"--machine_type={f.machine_type}", f"--max_num_workers={f.max_workers}",
            f"--disk_size_gb={f.disk_size_gb}", f"--sdk_container_image={image}",
            "--experiments=use_runner_v2"]
    args += [f"--labels={key}={value}" for key, value in sorted(v.labels.items())]
    account = f.service_account or v.service_account
    if account:
        args.append(f"--service_account_email={account}")
    for key in ("network", "subnetwork"):
        if getattr(f, key):
            args.append(f"--{key}={getattr(f, key)}")
    return args


def beam_args(cfg: Config, image: str) -> Optional[List[str]]:
    """The Beam components' arguments on Vertex AI: Dataflow's, or the DirectRunner's in the
    component's container (plus the project and a gs:// temp location that reading
    BigQuery needs); None: the builder's default."""
    if cfg.vertex.dataflow is not None:
        return dataflow_args(cfg, image)
    if not cfg.data.bigquery:
        return None
    from pipelines.builder import beam_args as direct

    root = cfg.vertex.pipeline_root.rstrip("/")
    return direct(cfg) + [f"--project={cfg.vertex.project}",
                          f"--temp_location={root}/beam-temp"]


def training_custom_config(cfg: Config, image: str) -> dict:
    """The Vertex AI Training Trainer's ``custom_config``: one machine, maybe GPUs, our image.

    The number of GPUs asked for travels to ``run_fn`` too
    (:func:`trainer.runtime.choose_strategy` fails if they are not visible).
    """
    from tfx import v1 as tfx

    from trainer.runtime import GPUS_KEY

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


def read_spec(path: str) -> dict:
    """The compiled PipelineSpec JSON; raises ConfigError naming what is wrong."""
    try:
        with open(path, encoding="utf-8") as handle:
            spec = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError([("--spec", f"{path}: not a readable JSON file ({exc})")]) from None
    if "components" not in spec.get("pipelineSpec", spec):
        raise ConfigError([("--spec", f"{path}: no pipelineSpec.components; compile it with "
                            "`twotower compile --target vertex`")])
    return spec


def parse_params(cfg: Config, items: List[str]) -> Dict[str, object]:
    """``--param NAME=VALUE`` items as typed pipeline parameter values, checked.

    The rows of the runtime parameters' table (:mod:`trainer.parameters`), as
    validation and the Trainer check them: what one refuses, all refuse.

    Raises:
      ConfigError: an unknown name, a value of the wrong type or range, or a
        learning rate above what the config's towers take.
    """
    from pipelines.learning_rate import learning_rate_ceiling
    from trainer.parameters import RUNTIME_PARAMETERS, parameter_problem, parameter_value

    out, found = {}, []
    for item in items:
        name, _, text = item.partition("=")
        if name not in RUNTIME_PARAMETERS:
            found.append(("--param", f"{item!r}: the parameters are "
                          f"{', '.join(f'{n}=VALUE' for n in RUNTIME_PARAMETERS)}"))
            continue
        try:
            value = parameter_value(name, text)
        except ValueError as exc:
            found.append(("--param", f"{name}: {exc}"))
            continue
        problem = parameter_problem(name, value, learning_rate_ceiling(cfg))
        if problem:
            found.append(("--param", f"{name}: {problem}"))
            continue
        out[name] = value
    if found:
        raise ConfigError(found)
    return out


def submit(cfg: Config, spec_path: str, wait: bool = False, log=print,
           params: Optional[Dict[str, object]] = None) -> dict:
    """Submits the compiled spec; returns ``{'name', 'link', 'state'}``.

    ``params``: pipeline parameter values for this run (:func:`parse_params`),
    over the ones the spec was compiled with.

    Raises:
      ConfigError: a missing or bad ``vertex`` value, or an unreadable spec.
      RuntimeError: Vertex AI refused the job (the message says why and what to check).
    """
    found = problems(cfg, submitting=True)
    if found:
        raise ConfigError(found)
    read_spec(spec_path)
    os.environ.setdefault("GOOGLE_CLOUD_DISABLE_TELEMETRY", "true")
    from google.api_core import exceptions
    from google.cloud import aiplatform

    v = cfg.vertex
    options = {"project": v.project, "location": v.region}
    if v.api_endpoint:
        options["api_endpoint"] = v.api_endpoint
    if v.api_endpoint and v.api_endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        options.update(credentials=AnonymousCredentials(), api_transport="rest")
    aiplatform.init(**options)
    job = aiplatform.PipelineJob(display_name=cfg.pipeline.name, template_path=spec_path,
                                 pipeline_root=f"{pipeline_folder(cfg)}/tfx", enable_caching=v.enable_caching,
                                 labels=dict(v.labels) or None,
                                 parameter_values=dict(params or {}) or None)
    try:
        job.submit(service_account=v.service_account)
    except exceptions.GoogleAPICallError as exc:
        hint = {403: "check that the APIs are enabled and the roles granted: "
                     + cloud.roles_line(cfg),
                404: "check vertex.project and vertex.region"}.get(exc.code or 0,
                                                                  "retry; if it persists, see "
                                                                  "the Vertex AI status page")
        raise RuntimeError(f"Vertex AI refused the pipeline job ({exc.code} "
                           f"{type(exc).__name__}: {exc.message}); {hint}") from None
    name = job.resource_name
    link = CONSOLE.format(region=v.region, job=name.rsplit("/", 1)[-1], project=v.project)
    log(f"submitted {name}\n{link}")
    state = None
    while wait and state not in DONE:
        state = job.state.name  # a GET of the job
        log(f"{time.strftime('%H:%M:%S')} {state}")
        if state not in DONE:
            time.sleep(30)
    return {"name": name, "link": link, "state": state}
