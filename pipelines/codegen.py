"""Assembles the Transform and Trainer module files that TFX runs.

A generated module is the frozen config (a Python literal) plus the verbatim
bodies of this library's tested runtime modules, in dependency order, plus a
two-line entry point. Imports between those modules are dropped (the names
they import are defined above them in the same file); third-party imports are
hoisted, deduplicated and sorted. The result needs only TensorFlow, TFT and
TFRS, so it runs where this library is not installed (a Vertex AI image), and
what a user reads is exactly what ran.

Nothing from the config reaches the code except through ``repr()`` of plain
data, so any column name, quote or brace in it stays a string literal.
Output is deterministic: the same config gives the same bytes.
"""
from __future__ import annotations

import ast
import importlib.util
import math
import os
from typing import Dict, List, Sequence

from pipelines.config import Config
from pipelines.version import __version__
from pipelines.written import atomic

INTERNAL = ("transform", "trainer")
TRANSFORM_SOURCES = ("transform/naming.py", "transform/features.py")
TRAINER_SOURCES = ("transform/naming.py", "trainer/parameters.py", "trainer/data.py",
                   "trainer/towers.py", "trainer/prior.py", "trainer/model.py",
                   "trainer/monitoring.py", "trainer/evaluation.py", "trainer/held_out.py",
                   "trainer/inputs.py", "trainer/build.py", "trainer/export.py",
                   "trainer/serving.py", "trainer/vector_export.py",
                   "trainer/runtime.py", "trainer/training.py")
TRANSFORM_FILE = "transform_module.py"
TRAINER_FILE = "trainer_module.py"


class CodegenError(RuntimeError):
    """A runtime source breaks the assembly rules (a bug in this library)."""


def source_path(relative: str) -> str:
    package, filename = relative.split("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CodegenError(f"package {package!r} is not importable")
    return os.path.join(list(spec.submodule_search_locations)[0], filename)


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


def _defined_names(tree: ast.Module) -> List[str]:
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.extend(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _split_source(relative: str, text: str, defined: Dict[str, str]):
    """Returns (external import lines, body text); checks the assembly rules."""
    tree = ast.parse(text, filename=relative)
    lines = text.splitlines()
    drop = set()
    imports = []
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        drop.update(range(body[0].lineno - 1, body[0].end_lineno))  # module docstring
    for node in body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        drop.update(range(node.lineno - 1, node.end_lineno))
        if isinstance(node, ast.ImportFrom) and node.level:
            raise CodegenError(f"{relative}: relative imports can't be assembled")
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
        if any(m.split(".")[0] == "pipelines" for m in modules):
            raise CodegenError(f"{relative}: runtime code must not import pipelines")
        if any(m.split(".")[0] in INTERNAL for m in modules):
            if isinstance(node, ast.Import):
                raise CodegenError(f"{relative}: use 'from {modules[0]} import name'")
            for alias in node.names:
                if alias.asname or defined.get(alias.name) != node.module.replace(".", "/") + ".py":
                    raise CodegenError(f"{relative}: {node.module}.{alias.name} must be defined "
                                       "by an earlier source, and imported without 'as'")
            continue
        imports.append(ast.unparse(node))
    for name in _defined_names(tree):
        if name in defined:
            raise CodegenError(f"{relative}: {name!r} is also defined in {defined[name]}")
        defined[name] = relative
    kept = [line for i, line in enumerate(lines) if i not in drop]
    return imports, "\n".join(kept).strip("\n")


def assemble(sources: Sequence[str], header: str, frozen: Dict[str, object], entry: str) -> str:
    """Concatenates ``sources`` under one import block, with frozen constants and ``entry``."""
    defined: Dict[str, str] = {name: "<frozen>" for name in frozen}
    imports, bodies = set(), []
    for relative in sources:
        with open(source_path(relative), encoding="utf-8") as handle:
            found, body = _split_source(relative, handle.read(), defined)
        imports.update(found)
        bodies.append(f"# ---- {relative} " + "-" * max(3, 70 - len(relative)) + "\n\n" + body)
    plain = sorted(i for i in imports if i.startswith("import "))
    froms = sorted(i for i in imports if i.startswith("from "))
    constants = "\n\n".join(f"{name} = {render_literal(value)}" for name, value in frozen.items())
    parts = [header, "\n".join(plain + froms), constants] + bodies + [
        "# ---- entry point " + "-" * 52 + "\n\n" + entry]
    text = "\n\n\n".join(p.strip("\n") for p in parts) + "\n"
    compile(text, "<generated>", "exec")  # never write a module that doesn't parse
    return text


def _header(kind: str, config: Config, sources: Sequence[str]) -> str:
    return "\n".join([
        f'"""TFX {kind} module generated by twotower {__version__}. Do not edit by hand.',
        "",
        "Regenerate with `twotower generate --config CONFIG --out DIR`. Frozen config",
        f"fingerprint: {config.fingerprint()}",
        "Assembled from: " + ", ".join(sources) + ".",
        '"""',
    ])


def _meta(config: Config) -> Dict[str, object]:
    from pipelines.learning_rate import learning_rate_ceiling

    # the ceiling bounds a learning rate given at submission (trainer.runtime.apply_runtime)
    return {"config_fingerprint": config.fingerprint(), "library_version": __version__,
            "learning_rate_ceiling": learning_rate_ceiling(config)}


def transform_module(config: Config) -> str:
    """Source of the Transform module (defines ``preprocessing_fn``)."""
    entry = ('def preprocessing_fn(inputs):\n'
             '    """TFX Transform entry point: raw features -> transformed features."""\n'
             '    return transform_all(inputs, SPEC)\n')
    return assemble(TRANSFORM_SOURCES, _header("Transform", config, TRANSFORM_SOURCES),
                    {"SPEC": config.to_dict()}, entry)


def trainer_module(config: Config) -> str:
    """Source of the Trainer module (defines ``run_fn``)."""
    entry = ('def run_fn(fn_args):\n'
             '    """TFX Trainer entry point: trains, evaluates and exports the model."""\n'
             '    return run_from_fn_args(fn_args, SPEC, META)\n')
    return assemble(TRAINER_SOURCES, _header("Trainer", config, TRAINER_SOURCES),
                    {"SPEC": config.to_dict(), "META": _meta(config)}, entry)


def write_modules(config: Config, out_dir: str) -> Dict[str, str]:
    """Writes both modules into ``out_dir``; returns ``{'transform': path, 'trainer': path}``."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"transform": os.path.join(out_dir, TRANSFORM_FILE),
             "trainer": os.path.join(out_dir, TRAINER_FILE)}
    for key, text in (("transform", transform_module(config)),
                      ("trainer", trainer_module(config))):
        with atomic(paths[key], "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)  # beside the file, renamed over it when whole
    return paths
