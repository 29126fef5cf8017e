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

import contextlib
import logging
import os
import sys
import time
import traceback
from typing import Dict, List, Optional

from pipelines.config.loading import DEMO_CONFIG  # noqa: F401 (api.DEMO_CONFIG)
from pipelines.config.schema import Config, ConfigError, apply_overrides, load_config, read_raw
from pipelines.data import written
from pipelines.data.csvfile import DataError
from pipelines.data.synthetic import generate
from pipelines.inspect import runs
from pipelines.inspect.data import describe as one_line
from pipelines.local_paths import check_root
from pipelines.build.builder import component_ids
from pipelines.recommend import recommend as _recommend
from pipelines.runners.compile import compile_vertex
from pipelines.runners.local import pipeline_dir, run_local
from pipelines.runners.lock import LOCK_FILE, holding
from pipelines.runners.lrcheck import STEPS, lr_check as _lr_check
from pipelines.terminal.console import Console, result_lines, root_cause, served_model_gone



class RunFailed(RuntimeError):
    """The local pipeline did not push a model; the line saying why is already printed.
    ``code``: the command's exit code (1)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def demo_config(overrides: Optional[List[str]] = None, data: Optional[Dict[str, str]] = None,
                root: str = "runs", name: Optional[str] = None) -> Config:
    """The demo's config (examples/b2b_demo.yaml), with ``data`` (:func:`synth`'s paths)
    and ``overrides`` (``KEY=VALUE``, as ``--set``); ``root``/``name``: where it runs."""
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
    return generate(out, **sizes)


def run(cfg: Config, verbose: bool = False, quiet: bool = False,
        terminal: bool = False) -> dict:
    """Runs the local pipeline as ``twotower run`` does (its lines on ``sys.stdout``, the full
    log under ``<pipeline folder>/logs``, the run in ``runs.jsonl``); returns the results
    (``metrics``, ``gate``, ``serving_model``, ``pushed``, ...). ``terminal``: the lines go
    to the process's own terminal (the command line), not to a notebook's ``sys.stdout``.

    Raises:
      RunFailed: the pipeline failed or the push gate refused the model (the line says).
    """
    mode = "verbose" if verbose else ("quiet" if quiet else "normal")
    code, res = _run(cfg, mode, None if terminal else sys.stdout)
    if code != 0:
        raise RunFailed(f"the run did not push a model (exit {code}); see the lines above "
                        f"and {os.path.join(pipeline_dir(cfg), 'logs', 'run.log')}", code)
    return res


def _run(cfg: Config, mode: str, stream=None):
    """``(exit code, results or None)`` of the local pipeline run with a quiet terminal and
    the full log on disk (``stream``: where the terminal's lines go, e.g. a notebook's
    ``sys.stdout``; default the terminal)."""
    folder = pipeline_dir(cfg)
    check_root(cfg)  # one line naming pipeline.root: not a folder, not writable
    new = written.new_folders(folder)
    # Held before the log opens: a refused second run writes nothing in the folder.
    with holding(folder, cfg.pipeline.name):
        try:
            return _run_held(cfg, mode, time.time(), stream)
        except (ConfigError, DataError):
            if new:  # the data or config was refused before anything ran: leave no folder
                _remove_what_a_refused_run_wrote(folder, new)
            raise


def _remove_what_a_refused_run_wrote(folder: str, new) -> None:
    """Removes the run's log, its runs.jsonl, the lock file and the folders this command
    created, when nothing else is in them (so a data error leaves no empty pipeline folder)."""
    logs = os.path.join(folder, "logs")
    for name in os.listdir(logs) if os.path.isdir(logs) else []:
        if name.startswith("run") and (name.endswith(".log") or name == "runs.jsonl"):
            os.remove(os.path.join(logs, name))
    with contextlib.suppress(OSError):
        os.rmdir(logs)  # only if nothing else is in it
        if os.listdir(folder) == [LOCK_FILE]:
            os.remove(os.path.join(folder, LOCK_FILE))
    written.remove_new_folders(new)


def outcome(res: dict):
    """``(exit code, status, why)`` of a finished local run (``why``: the line to print)."""
    gate = res.get("gate") or {}
    if (res.get("metrics") or {}).get("status") != "completed":
        return (1, (res.get("metrics") or {}).get("status") or "failed",
                "pipeline finished without a completed model")
    if not gate.get("blessed", False):
        return 1, "not pushed", f"not pushed: {gate.get('reason', 'the push gate did not run')}"
    if served_model_gone(res):
        return 1, "not served", served_model_gone(res)
    if res.get("reused_push"):  # nothing changed: the cached push is the serving model
        return 0, "cached", ""
    if not res.get("pushed"):
        return 1, "not pushed", "pipeline finished without pushing a model"
    return 0, "pushed", ""


def _run_held(cfg: Config, mode: str, started: float, stream=None):
    log_dir = os.path.join(pipeline_dir(cfg), "logs")
    console = Console(log_dir, mode, stream=stream)
    res, status, error, run_id = None, "failed", "", ""
    try:
        with console.capture(list(component_ids(cfg))):
            run_id = runs.started(log_dir, started, cfg.fingerprint(), console.log_path)
            console.say(f"full log: {console.log_path}")
            res = run_local(cfg, log=console.say)
    except (ConfigError, DataError) as exc:
        error = str(exc)
        raise
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted (Ctrl-C)"
        raise
    except Exception as exc:  # a component failed: one line, the log has the traceback
        error = root_cause(exc)
        with open(console.log_path, "a", encoding="utf-8") as handle:
            handle.write(traceback.format_exc())
        if mode == "verbose":
            traceback.print_exc()
        print(f"pipeline failed: {error} (full log: {console.log_path})", file=sys.stderr)
        return 1, None
    finally:
        if res is None:
            runs.record(log_dir, runs.entry(started, cfg.fingerprint(), None, status,
                                            console.log_path, error, run_id))
    for line in result_lines(res):
        console.result(line)
    code, status, why = outcome(res)
    runs.record(log_dir, runs.entry(started, cfg.fingerprint(), res, status, console.log_path,
                                    why, run_id))
    if why:
        print(why, file=sys.stderr)
    return code, res


def compile(cfg: Config, out: str, image: str,  # noqa: A001 (the command's name)
            stage_dir: Optional[str] = None) -> dict:
    """``twotower compile``: stages the data and modules and writes the PipelineSpec ``out``
    (``stage_dir``: a local folder in place of the gs:// bucket, as ``--stage-dir``); what
    the libraries print (pip building the module wheels) goes to
    ``<pipeline folder>/logs/compile.log``, not to the notebook."""
    if stage_dir:
        from pipelines.vertex import gcs_on_disk  # TFX: off the CLI's fast path

        gcs_on_disk.register(os.path.abspath(stage_dir))
    console = Console(os.path.join(pipeline_dir(cfg), "logs"), "quiet", stream=sys.stdout,
                      name="compile")
    with console.capture([]), _handlers_to_log():
        done = compile_vertex(cfg, out, image, log=console.say)
    return done


def lr_check(cfg: Config, rates: Optional[List[float]] = None, steps: int = STEPS,
             log=lambda *_: None) -> dict:
    """``twotower lr-check``: the learning-rate range test (the Transform once, then a short
    run at each rate, :mod:`pipelines.runners.lrcheck`); returns the report, also written to
    ``<pipeline folder>/lr_check/lr_check.json``. ``rates``: None, the configured rate times
    0.01..10. A risky configured rate is what it tests: the caller validates the rest."""
    return _lr_check(cfg, rates=rates, steps=steps, log=log)


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
    return _recommend(model, users, k, out, log=options.pop("log", lambda *_: None), **options)


def inspect(root: str, query: Optional[str] = None, candidate: Optional[str] = None,
            k: int = 10) -> dict:
    """What ``twotower inspect`` reports, as data: ``summary`` lines, ``figures``
    (matplotlib), ``queries``, ``nearest``, ``towers``, ``run`` (pipelines/inspect/report.py).
    TensorFlow's own start-up lines are kept out of the output."""
    from pipelines.inspect import report  # matplotlib: off the CLI's fast path

    log_dir = os.path.join(os.path.abspath(root), "logs") if os.path.isdir(root) else "."
    console = Console(log_dir, "quiet", stream=sys.stdout, name="inspect")
    with console.capture([]), _handlers_to_log():
        found = report.gather(root, query=query, candidate=candidate, k=k)
    found["summary"] = report.summary(found)
    return found


def describe(candidate: str, table: Dict[str, Dict[str, str]]) -> str:
    """A candidate's name and attributes from :func:`inspect`'s ``candidates`` table."""
    return one_line(candidate, table)
