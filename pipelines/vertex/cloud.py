"""Google Cloud's rules a first submission meets, as data: GPUs per machine, IAM roles, images.

Each table is read by validation (a config breaking one is refused with one
line before anything is staged), by the refusal messages of `submit`, and by
the tests that check docs/vertex.md names every role.

- :data:`GPU_MACHINES`: which machine types take which GPU, and how many
  (Vertex AI Training's GPU compatibility: an L4 needs a g2 machine, an A100
  an a2 one, and those machines come with a fixed number).
- :data:`ROLES`: who needs which role, on what, for which feature
  (``vertex.dataflow``, ``vertex.training``, ``data.bigquery``).
- :func:`image_problem`: a container image reference (``host/path[:tag][@sha256:...]``).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from typing import Dict, List, Optional, Tuple

from pipelines.vertex.image import LOCK, locked

# GPU -> (machine types that take it: a regex, {machine type: its fixed GPU count} or None
#         when the count is free among 1, 2, 4, 8).
GPU_MACHINES: Dict[str, Tuple[str, Optional[Dict[str, int]]]] = {
    "NVIDIA_TESLA_T4": (r"n1-(standard|highmem|highcpu)-\d+", None),
    "NVIDIA_TESLA_V100": (r"n1-(standard|highmem|highcpu)-\d+", None),
    "NVIDIA_TESLA_P100": (r"n1-(standard|highmem|highcpu)-\d+", None),
    "NVIDIA_TESLA_P4": (r"n1-(standard|highmem|highcpu)-\d+", None),
    "NVIDIA_L4": (r"g2-standard-\d+", {"g2-standard-4": 1, "g2-standard-8": 1,
                                       "g2-standard-12": 1, "g2-standard-16": 1,
                                       "g2-standard-32": 1, "g2-standard-24": 2,
                                       "g2-standard-48": 4, "g2-standard-96": 8}),
    "NVIDIA_TESLA_A100": (r"a2-(highgpu|megagpu)-\d+g", {
        "a2-highgpu-1g": 1, "a2-highgpu-2g": 2, "a2-highgpu-4g": 4, "a2-highgpu-8g": 8}),
    "NVIDIA_A100_80GB": (r"a2-ultragpu-\d+g", {
        "a2-ultragpu-1g": 1, "a2-ultragpu-2g": 2, "a2-ultragpu-4g": 4, "a2-ultragpu-8g": 8}),
    "NVIDIA_H100_80GB": (r"a3-highgpu-\d+g", {
        "a3-highgpu-1g": 1, "a3-highgpu-2g": 2, "a3-highgpu-4g": 4, "a3-highgpu-8g": 8}),
    "NVIDIA_H100_MEGA_80GB": (r"a3-megagpu-8g", {"a3-megagpu-8g": 8}),
    "NVIDIA_H200_141GB": (r"a3-ultragpu-8g", {"a3-ultragpu-8g": 8}),
}
GPU_FAMILIES = ("g2-", "a2-", "a3-")  # machine series that come with their GPUs


def gpu_problem(machine: str, gpu: Optional[str], count: int) -> Optional[Tuple[str, str]]:
    """``(key, one line)`` when ``machine`` can't take ``count`` x ``gpu``; None when it can."""
    if not count:
        if machine.startswith(GPU_FAMILIES):
            takes = sorted(g for g, (pattern, fixed) in GPU_MACHINES.items()
                           if re.fullmatch(pattern, machine))
            named = ", ".join(takes) or "see Vertex AI's GPU table"
            return ("vertex.training.accelerator_count",
                    f"is 0 but {machine} comes with GPUs ({named}): set "
                    "vertex.training.accelerator_type and accelerator_count, or use an n1 machine")
        return None
    if gpu not in GPU_MACHINES:
        return ("vertex.training.accelerator_type", f"{gpu!r} is not a GPU Vertex AI Training "
                f"offers: one of {', '.join(sorted(GPU_MACHINES))}")
    pattern, fixed = GPU_MACHINES[gpu]
    if not re.fullmatch(pattern, machine):
        examples = sorted(fixed)[:2] if fixed else ["n1-standard-8"]
        return ("vertex.training.machine_type", f"{machine} can't take {gpu} GPUs: use "
                f"{' or '.join(examples)} (a {pattern.split('-')[0]} machine)")
    if fixed is not None and fixed.get(machine) != count:
        if machine not in fixed:
            return ("vertex.training.machine_type", f"{machine} is not a machine type for {gpu}: "
                    f"one of {', '.join(fixed)}")
        return ("vertex.training.accelerator_count", f"{machine} comes with {fixed[machine]} "
                f"{gpu}, not {count}: set accelerator_count: {fixed[machine]} or pick the "
                "machine with that many")
    return None


# (feature, who, role, on what, why). feature None: every Vertex AI run.
ROLES: List[Tuple[Optional[str], str, str, str, str]] = [
    (None, "service account", "roles/aiplatform.user", "the project",
     "runs the pipeline's steps, uploads the model"),
    (None, "service account", "roles/storage.objectAdmin", "the vertex.pipeline_root bucket",
     "reads the staged files, writes every artifact"),
    (None, "service account", "roles/artifactregistry.reader", "the image's repository",
     "pulls the training image"),
    ("vertex.dataflow", "service account", "roles/dataflow.worker", "the project",
     "runs the Dataflow workers"),
    ("vertex.dataflow", "service account", "roles/dataflow.developer", "the project",
     "launches the Dataflow jobs"),
    ("vertex.dataflow", "service account", "roles/iam.serviceAccountUser",
     "the service account itself", "launches the Dataflow workers as itself"),
    ("vertex.training", "service account", "roles/iam.serviceAccountUser",
     "the service account itself", "launches the Vertex AI Training CustomJob as itself"),
    ("data.bigquery", "service account", "roles/bigquery.user", "the project",
     "runs the split queries and creates the temporary dataset Beam's BigQuery read needs "
     "(bigquery.datasets.create)"),
    ("data.bigquery", "service account", "roles/bigquery.dataViewer", "the source tables' dataset",
     "reads the tables"),
    (None, "you", "roles/aiplatform.user", "the project", "submits the pipeline job"),
    (None, "you", "roles/iam.serviceAccountUser", "the job's service account",
     "runs the job as it"),
    (None, "you", "roles/storage.objectAdmin", "the vertex.pipeline_root bucket",
     "compile stages the data and modules there"),
]


def features(cfg) -> List[str]:
    """The features of ``cfg`` that need roles of their own (the first column of :data:`ROLES`)."""
    on = {"vertex.dataflow": cfg.vertex.dataflow is not None,
          "vertex.training": cfg.vertex.training is not None,
          "data.bigquery": bool(cfg.data.bigquery)}
    return [name for name, used in on.items() if used]


def roles_needed(cfg, who: str) -> List[Tuple[str, str]]:
    """``[(role, on what)]`` that ``who`` ("service account" or "you") needs for ``cfg``."""
    used = set(features(cfg))
    out = []
    for feature, person, role, where, _ in ROLES:
        if person == who and (feature is None or feature in used) and (role, where) not in out:
            out.append((role, where))
    return out


def roles_line(cfg) -> str:
    """One line naming every role this config needs, for a refusal message."""
    account = cfg.vertex.service_account or "the Compute Engine default service account"
    mine = ", ".join(f"{r} on {w}" for r, w in roles_needed(cfg, "you"))
    theirs = ", ".join(f"{r} on {w}" for r, w in roles_needed(cfg, "service account"))
    return f"you need {mine}; {account} needs {theirs}"


# host[:port]/path[:tag][@sha256:digest] (Docker's reference grammar, lower-case path parts).
_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE = re.compile(r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?)/"
                   rf"(?P<path>{_PART}(?:/{_PART})*)"
                   r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
                   r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?\Z")


def image_problem(reference: str) -> Optional[str]:
    """Why ``reference`` is not a container image reference with a registry, or None."""
    found = IMAGE.match(reference) if isinstance(reference, str) else None
    host = found.group("host") if found else ""
    if found and ("." in host or ":" in host or host == "localhost"):
        return None  # Docker reads a first part without '.' or ':' as Docker Hub's path
    if found:
        return (f"{reference!r} is not a container image reference with a registry: Docker "
                f"reads {host!r} as a Docker Hub repository, not a host; name the registry, e.g. "
                "europe-west4-docker.pkg.dev/my-project/ml/twotower:1 (pin it by digest: "
                "...@sha256:<64 hex digits>)")
    return (f"{reference!r} is not a container image reference: "
            "HOST/PATH[:TAG][@sha256:DIGEST], e.g. "
            "europe-west4-docker.pkg.dev/my-project/ml/twotower:1 (pin it by digest: "
            "...@sha256:<64 hex digits>)")


# `serving_image: twotower`: the image `twotower image` builds (compile's --image), serving with
# its own server (pipelines/vertex/serve.py), on the training TensorFlow.
OWN_IMAGE = "twotower"
PREBUILT_TF = re.compile(r"[a-z0-9-]+-docker\.pkg\.dev/vertex-ai/prediction/"
                         r"tf2-(?:cpu|gpu)\.2-(?P<minor>[0-9]+)[.:@]")


def prebuilt_images() -> List[str]:
    """Vertex AI's prebuilt TensorFlow prediction images, as the locked google-cloud-aiplatform
    lists them (``aiplatform/constants/prediction.py``'s ``TF_CONTAINER_URIS``), read from
    that one file: importing the whole client takes seconds."""
    package = importlib.util.find_spec("google.cloud.aiplatform")
    if package is None or not package.submodule_search_locations:
        raise ImportError("google-cloud-aiplatform is not installed: it lists the prebuilt "
                          "prediction images (pip install -r requirements.lock)")
    path = os.path.join(list(package.submodule_search_locations)[0], "constants", "prediction.py")
    spec = importlib.util.spec_from_file_location("_aiplatform_prediction_constants", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.TF_CONTAINER_URIS)


def training_tensorflow() -> str:
    """The TensorFlow version the model trains with: the image's, pinned by requirements.lock
    (an installed copy of this library without the lock: the TensorFlow installed beside it,
    read from its metadata, without importing it)."""

    if os.path.exists(LOCK):
        return locked(["tensorflow"])["tensorflow"]
    return importlib.metadata.version("tensorflow")


def serving_image_problem(image: str, training_tf: str) -> Optional[str]:
    """Why ``image`` can't serve the model, or None: it must be ``twotower`` (the image
    ``twotower image`` builds) or a prebuilt TensorFlow image the SDK lists whose TensorFlow
    is not older than ``training_tf``."""
    if image == OWN_IMAGE:
        return None
    use = (f"use serving_image: {OWN_IMAGE} (the image `twotower image` builds, serving with "
           f"TensorFlow {training_tf}, as it trained)")
    listed = prebuilt_images()
    if image not in listed:
        newest = max(listed, key=lambda i: int(PREBUILT_TF.match(i).group("minor"))
                     if PREBUILT_TF.match(i) else -1)
        return (f"{image!r} is neither a prebuilt prediction image google-cloud-aiplatform lists "
                f"(the newest: {newest}) nor {OWN_IMAGE!r}: {use}")
    found = PREBUILT_TF.match(image)
    trained = re.match(r"2\.([0-9]+)", training_tf or "")
    if found and trained and int(found.group("minor")) < int(trained.group(1)):
        return (f"{image} serves with TensorFlow 2.{found.group('minor')} but the model trains "
                f"with TensorFlow {training_tf} (requirements.lock): a SavedModel may use ops an "
                f"older TensorFlow lacks; {use}")
    return None
