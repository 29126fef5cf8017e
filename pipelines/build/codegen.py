"""Writes the Transform and Trainer module files that TFX runs: thin modules over the runtime.

A generated module is what a user opens to see what ran: a header (what
generated it, the library version, the digest of the runtime's sources), the
entry point TFX calls (``preprocessing_fn`` or ``run_fn``) and the frozen
config ``SPEC``: the Trainer's, every section the runtime reads with only the
options that apply to each feature's kind (:func:`frozen_spec`); the
Transform's, only what the Transform reads (:func:`transform_spec`).

Each module is its own cache key: it lives in a folder of its own
(:data:`MODULE_FILES`), because TFX versions a module's wheel by hashing every
``.py`` file of the module's folder, and it holds and checks the digest of
only the runtime packages it imports (:data:`MODULE_RUNTIME`). A change of
``training.*`` or of the Trainer's runtime leaves the Transform module's bytes,
so both Transforms' cache keys, as they were.

The code a module runs is the runtime, the packages
``transform`` and ``trainer`` (:mod:`transform.runtime_digest`), imported
where the module runs: locally from this library's installation; in the
user-module wheel TFX builds from a module file (``udf_utils`` packages only
the ``.py`` files of the module's folder, as top-level modules) from the
environment the step runs in; on Vertex AI from the training image, which
holds a copy of the runtime (:mod:`pipelines.vertex.image`). The module checks at
import that the runtime it finds is the one it was generated against, and
fails in one line otherwise.

Nothing from the config reaches the code except through ``repr()`` of plain
data, so any column name, quote or brace in it stays a string literal.
Output is deterministic: the same config (and runtime) gives the same bytes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from typing import Dict

from pipelines.config.schema import Config
from pipelines.config.learning_rate import learning_rate_ceiling
from pipelines.version import __version__
from pipelines.data.written import atomic
from transform.kinds import frozen_feature, transform_feature
from transform.naming import TRANSFORM_DATA_KEYS
from transform.runtime_digest import RUNTIME_PACKAGES, runtime_digest

TRANSFORM_FILE = "transform_module.py"
TRAINER_FILE = "trainer_module.py"
# Where each module lives under the modules folder ('/'-separated): a folder each, so the
# hash TFX gives a module's wheel (every .py of its folder) changes only with that module.
MODULE_FILES = {"transform": f"transform/{TRANSFORM_FILE}", "trainer": f"trainer/{TRAINER_FILE}"}
# The runtime packages each module imports: its runtime digest covers these and no other.
MODULE_RUNTIME = {"transform": ("transform",), "trainer": RUNTIME_PACKAGES}
# Config sections the runtime never reads (the Vertex AI section is the runners').
UNREAD_SECTIONS = ("vertex",)


class CodegenError(RuntimeError):
    """A config value can't be frozen into generated code (a bug in validation)."""


def render_literal(value, indent: int = 0) -> str:
    """A deterministic, readable Python literal of plain data (dict/list/scalars)."""
    pad, inner = "    " * indent, "    " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{k!r}: {render_literal(v, indent + 1)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            return "[" + ", ".join(repr(v) for v in value) + "]"
        items = [f"{inner}{render_literal(v, indent + 1)}," for v in value]
        return "[\n" + "\n".join(items) + f"\n{pad}]"
    if isinstance(value, float) and not math.isfinite(value):
        raise CodegenError(f"cannot freeze the non-finite number {value!r} into generated code")
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise CodegenError(f"cannot freeze a {type(value).__name__} into generated code")


def frozen_spec(config: Config) -> dict:
    """The config as the runtime reads it: every section but :data:`UNREAD_SECTIONS`, each
    feature with only the options of its kind (``transform.kinds``).

    For a validated config nothing is lost: an option that does not apply to a
    kind must keep its default, so ``Config.from_dict(frozen_spec(c))`` equals
    ``c`` but for the unread sections' defaults.
    """
    spec = {k: v for k, v in config.to_dict().items() if k not in UNREAD_SECTIONS}
    if "tuning" in spec:  # the space the search runs, the default one resolved
        from pipelines.config.tuning_rules import search_space

        spec["tuning"]["space"] = {key: dataclasses.asdict(r)
                                   for key, r in search_space(config).items()}
    for tower in ("query_tower", "candidate_tower"):
        spec[tower]["features"] = [frozen_feature(f) for f in spec[tower]["features"]]
    return spec


def transform_spec(config: Config) -> dict:
    """What the Transform reads of the config: of ``data``, the id and time columns
    (:data:`transform.naming.TRANSFORM_DATA_KEYS`); of each tower, its features, each with
    only the options its kind's Transform reads (:func:`transform.kinds.transform_feature`).

    Nothing of ``training``, ``model``, ``pipeline``, the towers' layers or the
    tower-only options (``embedding_dim``, a history's ``pooling``): changing
    them leaves the Transform module's bytes, so its cache key, as they were.
    """
    spec = frozen_spec(config)
    return {"data": {k: spec["data"].get(k) for k in TRANSFORM_DATA_KEYS},
            **{tower: {"features": [transform_feature(f) for f in spec[tower]["features"]]}
               for tower in ("query_tower", "candidate_tower")}}


def spec_fingerprint(spec: dict) -> str:
    """sha256 of a frozen spec's canonical JSON (as :meth:`Config.fingerprint` for a config)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def module_paths(out_dir: str) -> Dict[str, str]:
    """``{'transform': path, 'trainer': path}`` of the modules under ``out_dir``."""
    return {key: os.path.join(out_dir, *relative.split("/"))
            for key, relative in MODULE_FILES.items()}


def _packages(packages) -> str:
    return ("the package " if len(packages) == 1 else "the packages ") + " and ".join(packages)


def _meta(config: Config) -> Dict[str, object]:
    # the ceiling bounds a learning rate given at submission (trainer.runtime.apply_runtime)
    return {"config_fingerprint": config.fingerprint(), "library_version": __version__,
            "learning_rate_ceiling": learning_rate_ceiling(config)}


def _header(kind: str, config: Config, fingerprint: str, digest: str, packages,
            what: str) -> str:
    return "\n".join([
        f'"""TFX {kind} module of pipeline {config.pipeline.name!r}, generated by twotower '
        f"{__version__}. Do not edit by hand.",
        "",
        what,
        "",
        "Regenerate with `twotower generate --config CONFIG --out DIR`.",
        fingerprint,
        f"Runtime: {digest} ({_packages(packages)}; checked at import)",
        '"""',
    ])


def _runtime_check(filename: str, digest: str, packages) -> str:
    return "\n".join([
        f"LIBRARY_VERSION = {__version__!r}",
        f"RUNTIME_DIGEST = {digest!r}",
        "try:",
        "    from transform.runtime_digest import check_runtime",
        "except ImportError:",
        f"    raise ImportError({filename!r} + ' needs the twotower runtime ({_packages(packages)}"
        ") of twotower ' + LIBRARY_VERSION + ', which is not importable here: "
        "install twotower, or run in the image `twotower image` builds') from None",
        f"check_runtime(RUNTIME_DIGEST, {filename!r}, LIBRARY_VERSION, {tuple(packages)!r})",
    ])


def _module(header: str, check: str, imports: str, entry: str, frozen: Dict[str, object]) -> str:
    constants = "\n\n".join(f"{name} = {render_literal(value)}" for name, value in frozen.items())
    text = "\n\n".join([header, check, imports, "", entry, "", constants]) + "\n"
    compile(text, "<generated>", "exec")  # never write a module that doesn't parse
    return text


def transform_module(config: Config) -> str:
    """Source of the Transform module (defines ``preprocessing_fn``)."""
    packages = MODULE_RUNTIME["transform"]
    digest, spec = runtime_digest(packages), transform_spec(config)
    entry = ('def preprocessing_fn(inputs):\n'
             '    """TFX Transform entry point: raw features -> transformed features.\n\n'
             '    ``inputs``: ``{column: [batch, 1] Tensor or SparseTensor}`` of the prepared\n'
             '    columns; returns ``{name: [batch, ...] Tensor}`` named by the naming contract\n'
             '    (``transform.naming``): the reserved id keys and one output per feature.\n'
             '    """\n'
             '    return transform_all(inputs, SPEC)')
    what = ("TFX calls `preprocessing_fn` (below) on the prepared columns; the work is the\n"
            "runtime's `transform.preprocess.transform_all`, one transform per feature kind\n"
            "(`transform.kinds`), for `SPEC` at the end of this file: what the Transform reads\n"
            "of the config (its id and time columns, the towers' features), nothing else.")
    imports = ("# TensorFlow Transform is imported here, after the runtime check\n"
               "from transform.preprocess import transform_all  # noqa: E402")
    fingerprint = f"Transform spec fingerprint: {spec_fingerprint(spec)}"
    return _module(_header("Transform", config, fingerprint, digest, packages, what),
                   _runtime_check(TRANSFORM_FILE, digest, packages), imports, entry,
                   {"SPEC": spec})


def trainer_module(config: Config) -> str:
    """Source of the Trainer module (defines ``run_fn``)."""
    packages = MODULE_RUNTIME["trainer"]
    digest = runtime_digest(packages)
    entry = ('def run_fn(fn_args):\n'
             '    """TFX Trainer entry point: trains, evaluates and exports the model.\n\n'
             '    ``fn_args``: TFX\'s ``FnArgs`` (train/eval files, the transform graph, the\n'
             '    serving and run folders, the runtime parameters); returns the training\n'
             '    record that ``training_metrics.json`` in the run folder also holds.\n'
             '    """\n'
             '    return run_from_fn_args(fn_args, SPEC, META)')
    what = ("TFX calls `run_fn` (below); the work is the runtime's\n"
            "`trainer.training.run_from_fn_args`: the two towers the config `SPEC` (at the\n"
            "end of this file) describes are built, trained, evaluated against popularity\n"
            "and exported with a serving signature. `META` records what generated it.")
    imports = ("# TensorFlow and TFRS are imported here, after the runtime check\n"
               "from trainer.training import run_from_fn_args  # noqa: E402")
    if config.tuning is not None:  # the Tuner step's entry point (trainer.tuning)
        entry += ('\n\n\ndef tuner_fn(fn_args):\n'
                  '    """TFX Tuner entry point: the hyperparameter search over the train split.\n\n'
                  '    Trials are scored on a validation slice of train by time (never eval or test);\n'
                  '    returns a ``TunerFnResult`` whose best hyperparameters reach ``run_fn``.\n'
                  '    """\n'
                  '    return tuner_from_fn_args(fn_args, SPEC, META)')
        imports += "\nfrom trainer.tuning import tuner_from_fn_args  # noqa: E402"
        what += ("\nWith `tuning:`, TFX calls `tuner_fn` first (the Tuner step): the runtime's\n"
                 "`trainer.tuning.tuner_from_fn_args` searches `SPEC['tuning']['space']`.")
    fingerprint = f"Config fingerprint: {config.fingerprint()}"
    return _module(_header("Trainer", config, fingerprint, digest, packages, what),
                   _runtime_check(TRAINER_FILE, digest, packages), imports, entry,
                   {"META": _meta(config), "SPEC": frozen_spec(config)})


def write_modules(config: Config, out_dir: str) -> Dict[str, str]:
    """Writes both modules under ``out_dir``, each in its folder (:data:`MODULE_FILES`);
    returns ``{'transform': path, 'trainer': path}``."""
    paths = module_paths(out_dir)
    for key, text in (("transform", transform_module(config)),
                      ("trainer", trainer_module(config))):
        os.makedirs(os.path.dirname(paths[key]), exist_ok=True)
        with atomic(paths[key], "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)  # beside the file, renamed over it when whole
    return paths
