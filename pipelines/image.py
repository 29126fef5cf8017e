"""The training image for Vertex AI: the TFX base image plus what the generated modules import.

The generated modules are thin (:mod:`pipelines.codegen`): they import the
runtime, the packages ``transform`` and ``trainer``, which the image holds a
copy of (TFX's user-module wheel holds only the modules' own folder). The
runtime needs TensorFlow, TensorFlow Transform and NumPy, which the TFX image
has, plus TensorFlow Recommenders, tf-keras (TFRS 0.7.7 runs on Keras 2:
``TF_USE_LEGACY_KERAS=1``) and, with ``pipeline.serving_index: scann``,
ScaNN. Of ``pipelines``, only the pipeline's custom TFX components go in
(``pipelines/components/``: the exact Parquet ExampleGen, the runtime
parameters, the push gate, with ``pipelines/gate.py``, which the gate uses,
and the model upload): they import nothing else of it but the runtime.
Every version is the one ``requirements.lock`` pins, so the image trains with
what the tests ran.
"""
from __future__ import annotations

import os
import re
import shutil
from typing import Dict, List

from pipelines.config import Config
from pipelines.written import atomic
from transform.runtime_digest import runtime_files as digest_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK = os.path.join(ROOT, "requirements.lock")
BASE = "gcr.io/tfx-oss-public/tfx"
# The files of this library the image holds (the custom components' code), relative to ROOT.
COMPONENT_FILES = ("pipelines/__init__.py", "pipelines/gate.py", "pipelines/components/__init__.py",
                   "pipelines/components/parquet_example_gen.py",
                   "pipelines/components/popularity_gate.py",
                   "pipelines/components/runtime_parameters.py",
                   "pipelines/components/model_upload.py")
IMAGE_CODE = "/opt/twotower"
MARKER = ".twotower-image"


def runtime_files() -> List[str]:
    """The runtime's files (every ``.py`` of ``transform/`` and ``trainer/``), relative to ROOT:
    the same files whose digest the generated modules check at import."""
    return [relative for relative, _ in digest_files()]


def image_files() -> List[str]:
    """Every file of this library the image holds: the components and the runtime."""
    return list(COMPONENT_FILES) + runtime_files()


def locked(names: List[str], lock: str = LOCK) -> Dict[str, str]:
    """``{package: version}`` from the lock file; raises naming a package it lacks."""
    pins = {}
    with open(lock, encoding="utf-8") as handle:
        for line in handle:
            found = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", line)
            if found:
                pins[found.group(1).lower()] = found.group(2)
    missing = [n for n in names if n.lower() not in pins]
    if missing:
        raise ValueError(f"{lock} pins no {missing}; run `make lock`")
    return {n: pins[n.lower()] for n in names}


def packages(cfg: Config) -> List[str]:
    """What the image adds to the TFX base image, for this config."""
    names = ["tensorflow-recommenders", "tf-keras"]
    if cfg.pipeline.serving_index == "scann":
        names.append("scann")
    return names


def dockerfile(cfg: Config, lock: str = LOCK) -> str:
    """The Dockerfile text: deterministic for a config and a lock file."""
    pins = locked(["tfx"] + packages(cfg), lock)
    adds = " ".join(f"{name}=={version}" for name, version in pins.items() if name != "tfx")
    return (f"# The Vertex AI training image for pipeline {cfg.pipeline.name!r}: written by\n"
            "# `twotower image`; versions from requirements.lock.\n"
            f"FROM {BASE}:{pins['tfx']}\n"
            "ENV TF_USE_LEGACY_KERAS=1\n"
            "# Dataflow workers run this image: start the SDK in the image's own Python, not a\n"
            "# new virtual environment (which TFX-based images fail to create).\n"
            "ENV RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1\n"
            f"RUN python -m pip install --no-cache-dir {adds}\n"
            f"COPY twotower {IMAGE_CODE}\n"
            f"ENV PYTHONPATH={IMAGE_CODE}\n"
            "RUN python -c \"import tensorflow_recommenders, tf_keras, "
            "pipelines.components.parquet_example_gen, pipelines.components.popularity_gate, "
            "pipelines.components.runtime_parameters, pipelines.components.model_upload, "
            "transform.features, trainer.training\"\n")


def write(cfg: Config, out_dir: str, lock: str = LOCK) -> str:
    """Writes the build context: ``out_dir/Dockerfile`` and ``out_dir/twotower/`` (the custom
    components' code and the runtime); returns the Dockerfile's path."""
    os.makedirs(out_dir, exist_ok=True)
    code = os.path.join(out_dir, "twotower")
    if os.path.exists(code):  # replaced only if this function wrote it
        if not os.path.exists(os.path.join(code, MARKER)):
            raise ValueError(f"{code} exists but was not written by `twotower image` (no "
                             f"{MARKER} in it); it is left untouched: choose another --out")
        shutil.rmtree(code)
    os.makedirs(code)
    with open(os.path.join(code, MARKER), "w", encoding="utf-8") as handle:
        handle.write("written by twotower image; replaced on each run\n")
    sources = [(r, os.path.join(ROOT, r)) for r in COMPONENT_FILES] + digest_files()
    for relative, source in sources:  # the runtime byte for byte: its digest is checked
        target = os.path.join(code, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(source, target)
    path = os.path.join(out_dir, "Dockerfile")
    with atomic(path, "w", encoding="utf-8") as handle:  # renamed over it when whole
        handle.write(dockerfile(cfg, lock))
    return path
