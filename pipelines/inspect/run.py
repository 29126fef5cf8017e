"""A finished run, found from its pipeline root or from a generated ``trainer_module.py``.

:func:`load` gathers what inspection reads: the frozen config the Trainer ran
with (parsed from the module, never imported or executed; with a Tuner step, the values
``training_metrics.json`` records under ``tuned`` in place), ``training_metrics.json``,
the newest Transform outputs, the towers' checkpoint, the pushed model and
the push gate's decision. Nothing here imports TensorFlow.
"""
from __future__ import annotations

import ast
import glob
import os
from typing import Dict

from pipelines.build.builder import paths
from pipelines.build.codegen import MODULE_FILES, module_paths
from pipelines.runners.local import newest, pipelines_in, resolve_pipeline_dir, results
from pipelines.runners.trials import kept_search, read_search
from trainer.tuning_space import apply_values


def frozen_config(module_path: str) -> dict:
    """The ``SPEC`` literal of a generated module (read with ``ast.literal_eval``).

    Raises:
      ValueError: the file is not a generated twotower module.
    """
    with open(module_path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), module_path)
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "SPEC"):
            return ast.literal_eval(node.value)
    raise ValueError(f"{module_path}: no SPEC = {{...}}; is it a module `twotower generate` "
                     "wrote?")


def _root_of(path: str) -> str:
    """A pipeline root from itself, its modules folder or a module file in it."""
    path = os.path.abspath(path)
    if os.path.isfile(path):
        path = os.path.dirname(path)
    folders = {relative.split("/")[0] for relative in MODULE_FILES.values()}
    if os.path.basename(path) in folders and os.path.basename(os.path.dirname(path)) == "modules":
        path = os.path.dirname(path)  # a module's own folder (modules/trainer)
    if os.path.basename(path) == "modules":
        path = os.path.dirname(path)
    return path


def load(path: str) -> Dict[str, object]:
    """The run under a pipeline root (or the root of a ``modules/trainer/trainer_module.py``).

    Returns ``{root, spec, module, metrics, metrics_file, gate, serving_model,
    selection_model, transform_graph, examples: {split: folder}, model_run, towers,
    search, unreadable}`` (``search``: the Tuner step's trials,
    :func:`pipelines.runners.trials.read_search`, for a run with ``tuning:``); a part the
    run does not have (it stopped, or never got there) is None or empty; ``unreadable`` lists the records that are there but damaged (their one-line
    problems).

    Raises:
      FileNotFoundError: no generated trainer module where one was expected.
    """
    root = _root_of(path)
    module = path if path.endswith(".py") else module_paths(paths(root)["modules"])["trainer"]
    if not os.path.exists(module):
        if pipelines_in(root):
            resolve_pipeline_dir(root)  # a root holding pipelines: the error lists them
        raise FileNotFoundError(f"{module}: no generated trainer module; give a pipeline folder "
                                "(e.g. runs/b2b-demo) or a trainer_module.py")
    found = results(root) if os.path.isdir(os.path.join(root, "tfx")) else {}
    tfx_dir = paths(root)["tfx"]
    # the newest run's own Transform (a rerun the cache served reuses an older one's)
    examples_dir = found.get("transformed_examples") or newest(
        os.path.join(tfx_dir, "Transform", "transformed_examples", "*"))
    examples = {os.path.basename(p)[len("Split-"):]: p
                for p in sorted(glob.glob(os.path.join(examples_dir, "Split-*")))}
    run_dir = os.path.dirname(found["metrics_file"]) if found.get("metrics_file") else ""
    metrics = found.get("metrics")
    towers = (metrics or {}).get("towers_checkpoint")
    if towers and not os.path.exists(towers + ".index"):
        towers = None
    unreadable, search = list(found.get("unreadable", [])), None
    if found.get("tuner_results"):  # a run with a Tuner step: its trials
        try:
            search = read_search(kept_search(found["tuner_results"]))
        except ValueError as exc:
            unreadable.append(str(exc))
    spec = frozen_config(module)
    if (metrics or {}).get("tuned"):  # the Tuner step's values are what trained
        spec = apply_values(spec, metrics["tuned"])
    return {"root": root, "spec": spec, "module": module,
            "metrics": metrics, "metrics_file": found.get("metrics_file") or None,
            "gate": found.get("gate"), "serving_model": found.get("serving_model") or None,
            # the Trainer's own export: the towers inspected here (the pushed model may be
            # the refit on train + eval, training.refit)
            "selection_model": (metrics or {}).get("serving_model_dir") or None,
            "transform_graph": found.get("transform_graph") or newest(
                os.path.join(tfx_dir, "Transform", "transform_graph", "*")) or None,
            "examples": examples, "model_run": run_dir or None, "towers": towers,
            "search": search, "unreadable": unreadable}
