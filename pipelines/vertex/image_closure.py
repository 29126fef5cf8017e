"""What the training image must hold of this library: the executors' modules and all they import.

A compiled spec runs TFX's executors (in the base image) and this library's
custom executors, all defined in ``pipelines/build/components/`` (one module per
component). The image holds every one of those modules and the closure of
the project's modules they import (:func:`closure`), found by reading the
sources with :mod:`ast`: every ``import`` counts, at a module's top or inside a
function, with each package's ``__init__.py`` on the way. Nothing is
listed by hand, so a component that starts importing another module takes it
into the image with it.

:func:`executors` names each executor class the components define, as the
compiled spec names them (``module.Class``): a ``@component`` function ``F``
compiles to ``module.F_Executor``, a hand-written executor is a class whose
name ends in ``Executor``. The image's build-time check imports every one.

No TensorFlow, no TFX here: ``twotower image`` only reads files.
"""
from __future__ import annotations

import ast
import os
from typing import Dict, List, Set

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECT = ("pipelines", "trainer", "transform")   # this library's top-level packages
COMPONENTS = "pipelines.build.components"                # where every custom executor lives


def module_file(module: str, root: str = ROOT) -> str:
    """The source file of a project module (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``),
    relative to ``root``; '' when there is none."""
    base = module.replace(".", "/")
    for candidate in (base + ".py", base + "/__init__.py"):
        if os.path.isfile(os.path.join(root, candidate)):
            return candidate
    return ""


def component_modules(root: str = ROOT) -> List[str]:
    """Every module of ``pipelines/build/components/`` (each one component), sorted."""
    folder = os.path.join(root, *COMPONENTS.split("."))
    return sorted(f"{COMPONENTS}.{name[:-3]}" for name in os.listdir(folder)
                  if name.endswith(".py") and name != "__init__.py")


def _tree(relative: str, root: str) -> ast.Module:
    with open(os.path.join(root, relative), encoding="utf-8") as handle:
        return ast.parse(handle.read(), filename=relative)


def imported(module: str, root: str = ROOT) -> Set[str]:
    """The project modules ``module`` imports anywhere in its source (nested imports too;
    ``from a import b`` counts ``a.b`` when that is a module)."""
    relative = module_file(module, root)
    package = module if relative.endswith("__init__.py") else module.rpartition(".")[0]
    out: Set[str] = set()
    for node in ast.walk(_tree(relative, root)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # a relative import: from its package, up level - 1
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        out |= {n for n in names if n.split(".")[0] in PROJECT and module_file(n, root)}
    return out


def closure(modules: List[str], root: str = ROOT) -> List[str]:
    """The files (relative to ``root``) of ``modules``, of every project module they import,
    transitively, and of each one's packages (``__init__.py``); sorted.

    Raises:
      ValueError: a module named has no source file under ``root``.
    """
    seen: Set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        if not module_file(module, root):
            raise ValueError(f"{module}: no source file under {root} (the image can't hold it)")
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # its packages
        todo += sorted(imported(module, root) - seen)
    return sorted(module_file(m, root) for m in seen)


def executors(root: str = ROOT) -> Dict[str, List[str]]:
    """``{component module: [executor class name]}`` as a compiled spec names them."""
    out = {}
    for module in component_modules(root):
        names = []
        for node in _tree(module_file(module, root), root).body:
            if isinstance(node, ast.FunctionDef) and any(
                    (d.id if isinstance(d, ast.Name) else getattr(d, "attr", "")) == "component"
                    for d in node.decorator_list):
                names.append(f"{node.name}_Executor")  # TFX's @component executor class
            elif isinstance(node, ast.ClassDef) and node.name.endswith("Executor"):
                names.append(node.name)
        out[module] = names
    return out
