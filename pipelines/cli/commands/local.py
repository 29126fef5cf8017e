"""`twotower run`, `lr-check` and `demo`: the local pipeline with a quiet terminal.

Progress, one line per epoch and the result go to the terminal; everything
else to the run's log under ``<pipeline folder>/logs`` (:mod:`pipelines.cli.console`).
"""
from __future__ import annotations

import contextlib
import os
import sys

from pipelines.cli.commands.common import config_from, output_mode
from pipelines.config.schema import Config, ConfigError, apply_overrides, load_config, read_raw
from pipelines.data.prepare import DataError
from pipelines.validate import validate


DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "examples", "b2b_demo.yaml")


def _run(cfg: Config, args, stream=None) -> int:
    """Runs the local pipeline with a quiet terminal and the full log on disk (``stream``:
    where the terminal's lines go, e.g. a notebook's ``sys.stdout``; default the terminal)."""
    import time

    from pipelines.data import written
    from pipelines.runners.local import pipeline_dir
    from pipelines.runners.lock import holding
    from pipelines.local_paths import check_root

    folder = pipeline_dir(cfg)
    check_root(cfg)  # one line naming pipeline.root: not a folder, not writable
    new = written.new_folders(folder)
    # Held before the log opens: a refused second run writes nothing in the folder.
    with holding(folder, cfg.pipeline.name):
        try:
            return _run_held(cfg, args, time.time(), stream)
        except (ConfigError, DataError):
            if new:  # the data or config was refused before anything ran: leave no folder
                _remove_what_a_refused_run_wrote(folder, new)
            raise


def _remove_what_a_refused_run_wrote(folder: str, new) -> None:
    """Removes the run's log, its runs.jsonl, the lock file and the folders this command
    created, when nothing else is in them (so a data error leaves no empty pipeline folder)."""
    from pipelines.data import written
    from pipelines.runners.lock import LOCK_FILE

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
    from pipelines.cli.console import served_model_gone

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


def _run_held(cfg: Config, args, started: float, stream=None) -> int:
    import traceback

    from pipelines.build.builder import component_ids
    from pipelines.cli.console import Console, result_lines, root_cause
    from pipelines.inspect import runs
    from pipelines.runners.local import pipeline_dir, run_local

    mode = output_mode(args)
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
        return 1
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
    return code


def cmd_run(args) -> int:
    return _run(config_from(args), args)


def cmd_lr_check(args) -> int:
    from pipelines.runners.lrcheck import check_options, format_report, lr_check

    cfg = load_config(args.config, args.set)
    rates = check_options(cfg, args.rates, args.steps)  # before any file is written
    # Every other config error stops here; a risky configured rate is what this tests.
    checked = Config.from_dict(apply_overrides(cfg.to_dict(),
                                               ["training.allow_risky_learning_rate=true"]))
    for warning in validate(checked):
        print(f"warning: {warning}", file=sys.stderr)
    import traceback

    from pipelines.build.builder import SELECTION
    from pipelines.cli.console import Console, root_cause
    from pipelines.runners.local import pipeline_dir

    from pipelines.local_paths import check_root

    check_root(cfg)  # one line naming pipeline.root: not a folder, not writable
    console = Console(os.path.join(pipeline_dir(cfg), "logs"), output_mode(args),
                      name="lr-check")
    try:
        with console.capture(list(SELECTION[:SELECTION.index("Transform") + 1])):
            console.say(f"full log: {console.log_path}")
            report = lr_check(cfg, rates=rates, steps=args.steps, log=console.say)
    except (ConfigError, DataError):
        raise
    except Exception as exc:
        with open(console.log_path, "a", encoding="utf-8") as handle:
            handle.write(traceback.format_exc())
        if console.mode == "verbose":
            traceback.print_exc()
        print(f"lr-check failed: {root_cause(exc)} (full log: {console.log_path})",
              file=sys.stderr)
        return 1
    console.result(format_report(report))
    return 0 if report["recommended"] is not None else 1


def cmd_demo(args) -> int:
    from pipelines.data.synthetic import generate

    if not os.path.exists(DEMO_CONFIG):
        raise ConfigError([("", f"demo config not found at {DEMO_CONFIG}; install the library "
                            "from its repository (pip install -e .)")])
    from pipelines.runners.local import pipeline_dir

    from pipelines.local_paths import check_root

    root = os.path.abspath(args.root)
    raw = apply_overrides(read_raw(DEMO_CONFIG), [f"pipeline.root={root}"] + list(args.set))
    check_root(Config.from_dict(raw))  # before the data is written there
    folder = pipeline_dir(Config.from_dict(raw))
    data = generate(os.path.join(folder, "data"))
    if output_mode(args) != "quiet":
        print(f"generated synthetic B2B purchases: {data['purchases']}")
    raw = apply_overrides(raw, [f"data.path={data['purchases']}",
                                f"data.candidates.path={data['products']}"])
    cfg = Config.from_dict(raw)
    for warning in validate(cfg):
        print(f"warning: {warning}", file=sys.stderr)
    return _run(cfg, args)
