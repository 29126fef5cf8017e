"""The training image for Vertex AI: the TFX base image plus what the generated modules import.

The generated modules are thin (:mod:`pipelines.build.codegen`): they import the
runtime, the packages ``transform`` and ``trainer``, which the image holds a
copy of (TFX's user-module wheel holds only the modules' own folder). The
runtime needs TensorFlow, TensorFlow Transform and NumPy, which the TFX image
has, plus TensorFlow Recommenders, tf-keras (TFRS 0.7.7 runs on Keras 2:
``TF_USE_LEGACY_KERAS=1``) and, with ``pipeline.serving_index: scann``,
ScaNN. Of ``pipelines``, the pipeline's custom TFX components go in
(``pipelines/build/components/``: the exact Parquet ExampleGen, the runtime
parameters, the push gate, the model upload, the Vector Search deployment) with
every module of this library they import, found by reading their sources
(:mod:`pipelines.vertex.image_closure`), not listed by hand; the build runs an import
of every executor class they define, so an image missing one fails to build.
Every version is the one ``requirements.lock`` pins, so the image trains with
what the tests ran.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
from typing import Dict, List

from pipelines.config.schema import Config
from pipelines.vertex.image_closure import closure, component_modules, executors
from pipelines.data.written import atomic
from transform.runtime_digest import runtime_files as digest_files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCK = os.path.join(ROOT, "requirements.lock")
BASE = "gcr.io/tfx-oss-public/tfx"
IMAGE_CODE = "/opt/twotower"
MARKER = ".twotower-image"


def runtime_files() -> List[str]:
    """The runtime's files (every ``.py`` of ``transform/`` and ``trainer/``), relative to ROOT:
    the same files whose digest the generated modules check at import."""
    return [relative for relative, _ in digest_files()]


SERVER = "pipelines.vertex.serve"  # the serving command (`serving_image: twotower`): not an executor


def component_files() -> List[str]:
    """The custom components' modules and the server, and every module of this library they
    import (with their packages' ``__init__.py``), relative to ROOT, sorted."""
    return closure(component_modules() + [SERVER])


def image_files() -> List[str]:
    """Every file of this library the image holds: the components' closure and the runtime."""
    return sorted(set(component_files()) | set(runtime_files()))


def import_check() -> str:
    """The build-time check: Python code importing the added packages and every executor
    class the components define (``module.Class``: the names a compiled spec runs)."""
    classes = "; ".join(f"from {module} import {', '.join(names)}"
                        for module, names in executors().items() if names)
    return (f"import tensorflow_recommenders, tf_keras, transform.features, trainer.training, "
            f"{SERVER}; {classes}")


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
            "# every executor class a compiled spec may name imports from this copy alone\n"
            f"RUN cd / && python -c {shlex.quote(import_check())}\n")


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
    runtime = dict(digest_files())
    for relative in image_files():  # the runtime byte for byte: its digest is checked
        target = os.path.join(code, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(runtime.get(relative, os.path.join(ROOT, relative)), target)
    path = os.path.join(out_dir, "Dockerfile")
    with atomic(path, "w", encoding="utf-8") as handle:  # renamed over it when whole
        handle.write(dockerfile(cfg, lock))
    return path
