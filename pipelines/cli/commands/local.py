"""`twotower run`, `lr-check` and `demo`: the local pipeline with a quiet terminal.

Progress, one line per epoch and the result go to the terminal; everything
else to the run's log under ``<pipeline folder>/logs`` (:mod:`pipelines.terminal.console`).
"""
from __future__ import annotations

import os
import sys

from pipelines import api
from pipelines.build.builder import SELECTION
from pipelines.cli.commands.common import config_from, output_mode
from pipelines.config.schema import Config, ConfigError, apply_overrides, load_config, read_raw
from pipelines.data.prepare import DataError
from pipelines.data.synthetic import generate
from pipelines.local_paths import check_root
from pipelines.runners.local import pipeline_dir
from pipelines.runners.lrcheck import check_options, format_report
from pipelines.terminal.console import Console
from pipelines.validate import validate


def _run(cfg: Config, args) -> int:
    """The local pipeline (:func:`pipelines.api.run`) on the terminal: 0 when it pushed a
    model, else its exit code (the line saying why is printed)."""
    mode = output_mode(args)
    try:
        api.run(cfg, verbose=mode == "verbose", quiet=mode == "quiet", terminal=True)
    except api.RunFailed as failed:
        return failed.code
    return 0


def cmd_run(args) -> int:
    return _run(config_from(args), args)


def cmd_lr_check(args) -> int:
    cfg = load_config(args.config, args.set)
    rates = check_options(cfg, args.rates, args.steps)  # before any file is written
    # Every other config error stops here; a risky configured rate is what this tests.
    checked = Config.from_dict(apply_overrides(cfg.to_dict(),
                                               ["training.allow_risky_learning_rate=true"]))
    for warning in validate(checked):
        print(f"warning: {warning}", file=sys.stderr)
    check_root(cfg)  # one line naming pipeline.root: not a folder, not writable
    console = Console(os.path.join(pipeline_dir(cfg), "logs"), output_mode(args),
                      name="lr-check")
    try:
        with console.capture(list(SELECTION[:SELECTION.index("Transform") + 1])):
            console.say(f"full log: {console.log_path}")
            report = api.lr_check(cfg, rates=rates, steps=args.steps, log=console.say)
    except (ConfigError, DataError):
        raise
    except Exception as exc:
        return console.failed("lr-check", exc)
    console.result(format_report(report))
    return 0 if report["recommended"] is not None else 1


def cmd_demo(args) -> int:
    if not os.path.exists(api.DEMO_CONFIG):
        raise ConfigError([("", f"demo config not found at {api.DEMO_CONFIG}; install the "
                            "library from its repository (pip install -e .)")])
    root = os.path.abspath(args.root)
    raw = apply_overrides(read_raw(api.DEMO_CONFIG), [f"pipeline.root={root}"] + list(args.set))
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
