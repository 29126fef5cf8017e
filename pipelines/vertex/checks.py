"""Checks of the ``vertex`` config section, beside validation (:mod:`pipelines.validate`).

Every value that reaches a Vertex AI request, a Dataflow argument or a
Vertex AI Training job is checked here first, and named by its dotted key:
project, region, pipeline root, service accounts, labels, Dataflow and
Training machines, the model upload's serving image, the API endpoint.
"""
from __future__ import annotations

import re
from typing import List, Tuple

from pipelines.config.schema import Config
from pipelines.vertex import cloud, vector_search

PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]\Z")
REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+\Z")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\Z")
NETWORK = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_.-]*\Z")
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}\Z")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}\Z")


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
        wrong = cloud.serving_image_problem(u.serving_image, cloud.training_tensorflow())
        if wrong:
            out.append(("vertex.model_upload.serving_image", wrong))
        if cfg.pipeline.serving_index == "scann" and u.serving_image != cloud.OWN_IMAGE:
            out.append(("vertex.model_upload", "a ScaNN model needs ScaNN's ops in the serving "
                        f"container: use serving_image: {cloud.OWN_IMAGE} (the image holds "
                        "ScaNN then), or pipeline.serving_index: exact"))
    out += vector_search.problems(cfg)
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
