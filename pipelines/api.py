"""The library from Python (a notebook, a script): what the ``twotower`` commands do, as
functions that print the same few lines to ``sys.stdout`` and return what they made.

    from pipelines import api
    cfg = api.demo_config(["training.epochs=4"], data=api.synth("runs/quickstart/data"))
    result = api.run(cfg)            # the local pipeline; recorded in runs.jsonl like `run`
    api.compile(cfg, "pipeline.json", IMAGE)   # quiet: pip's wheel building goes to a log
    found = api.inspect("runs/quickstart")     # what `twotower inspect` shows, as data

Every path is taken as given (relative to the working directory), never relative to this
library, except the demo's config, found inside the installed library.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import Dict, List, Optional

from pipelines.config.schema import Config, apply_overrides, load_config, read_raw


def demo_config(overrides: Optional[List[str]] = None, data: Optional[Dict[str, str]] = None,
                root: str = "runs", name: Optional[str] = None) -> Config:
    """The demo's config (examples/b2b_demo.yaml), with ``data`` (:func:`synth`'s paths)
    and ``overrides`` (``KEY=VALUE``, as ``--set``); ``root``/``name``: where it runs."""
    from pipelines.cli.commands.local import DEMO_CONFIG

    sets = [f"pipeline.root={os.path.abspath(root)}"] + ([f"pipeline.name={name}"] if name else [])
    if data:
        sets += [f"data.path={os.path.abspath(data['purchases'])}",
                 f"data.candidates.path={os.path.abspath(data['products'])}"]
    return Config.from_dict(apply_overrides(read_raw(DEMO_CONFIG), sets + list(overrides or [])))


def config(path: str, overrides: Optional[List[str]] = None) -> Config:
    """A config file with ``--set``-style overrides, validated (ConfigError lists problems)."""
    return load_config(path, list(overrides or []))


def synth(out: str, **sizes) -> Dict[str, str]:
    """Writes the synthetic B2B dataset (``customers``, ``products``, ``purchases``, ``seed``)
    into ``out``; returns ``{'purchases': path, 'products': path}``."""
    from pipelines.data.synthetic import generate

    return generate(out, **sizes)


def run(cfg: Config, verbose: bool = False) -> dict:
    """Runs the local pipeline as ``twotower run`` does (its lines on ``sys.stdout``, the full
    log under ``<pipeline folder>/logs``, the run in ``runs.jsonl``); returns the results
    (``metrics``, ``gate``, ``serving_model``, ``pushed``, ...).

    Raises:
      RuntimeError: the pipeline failed or the push gate refused the model (the line says).
    """
    from pipelines.cli.commands.local import _run
    from pipelines.runners.local import pipeline_dir, results

    code = _run(cfg, argparse.Namespace(verbose=verbose, quiet=False), stream=sys.stdout)
    if code != 0:
        raise RuntimeError(f"the run did not push a model (exit {code}); see the lines above "
                           f"and {os.path.join(pipeline_dir(cfg), 'logs', 'run.log')}")
    return results(pipeline_dir(cfg))


def compile(cfg: Config, out: str, image: str,  # noqa: A001 (the command's name)
            stage_dir: Optional[str] = None) -> dict:
    """``twotower compile``: stages the data and modules and writes the PipelineSpec ``out``
    (``stage_dir``: a local folder in place of the gs:// bucket, as ``--stage-dir``); what
    the libraries print (pip building the module wheels) goes to
    ``<pipeline folder>/logs/compile.log``, not to the notebook."""
    from pipelines.cli.console import Console
    from pipelines.runners.compile import compile_vertex
    from pipelines.runners.local import pipeline_dir

    if stage_dir:
        from pipelines.vertex import gcs_on_disk

        gcs_on_disk.register(os.path.abspath(stage_dir))
    console = Console(os.path.join(pipeline_dir(cfg), "logs"), "quiet", stream=sys.stdout,
                      name="compile")
    with console.capture([]), _handlers_to_log():
        done = compile_vertex(cfg, out, image, log=console.say)
    return done


@contextlib.contextmanager
def _handlers_to_log():
    """Points the root and absl loggers' stream handlers at ``sys.stderr`` (inside a
    capture: the log) while it lasts: a notebook's kernel gave them its own output stream,
    so TFX's INFO records would land in the notebook's cells."""
    moved = []
    for logger in (logging.getLogger(), logging.getLogger("absl")):
        for handler in logger.handlers:
            target = getattr(handler, "_python_handler", handler)  # absl wraps its handler
            if isinstance(target, logging.StreamHandler) and not isinstance(
                    target, logging.FileHandler) and target.stream is not sys.stderr:
                moved.append((target, target.stream))
                target.stream = sys.stderr
    try:
        yield
    finally:
        for target, stream in moved:
            target.stream = stream


def recommend(model: str, users: str, out: str, k: int = 100, **options) -> dict:
    """``twotower recommend``: writes ``out`` (user_id,item_id,rank,score,cold,...); see
    :func:`pipelines.recommend.recommend` for ``options``."""
    from pipelines.recommend import recommend as _recommend

    return _recommend(model, users, k, out, log=options.pop("log", lambda *_: None), **options)


def inspect(root: str, query: Optional[str] = None, candidate: Optional[str] = None,
            k: int = 10) -> dict:
    """What ``twotower inspect`` reports, as data: ``summary`` lines, ``figures``
    (matplotlib), ``queries``, ``nearest``, ``towers``, ``run`` (pipelines/inspect/report.py).
    TensorFlow's own start-up lines are kept out of the output."""
    from pipelines.cli.console import Console
    from pipelines.inspect import report

    log_dir = os.path.join(os.path.abspath(root), "logs") if os.path.isdir(root) else "."
    console = Console(log_dir, "quiet", stream=sys.stdout, name="inspect")
    with console.capture([]), _handlers_to_log():
        found = report.gather(root, query=query, candidate=candidate, k=k)
    found["summary"] = report.summary(found)
    return found


def describe(candidate: str, table: Dict[str, Dict[str, str]]) -> str:
    """A candidate's name and attributes from :func:`inspect`'s ``candidates`` table."""
    from pipelines.inspect.data import describe as one_line

    return one_line(candidate, table)
