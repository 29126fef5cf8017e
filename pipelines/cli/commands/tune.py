"""`twotower tune`: search hyperparameters, print the trial table, write ``<config>.tuned.yaml``."""
from __future__ import annotations

import os
import shlex
import sys

from pipelines.cli.commands.common import output_mode
from pipelines.config.schema import ConfigError, apply_overrides, load_config, read_raw
from pipelines.data.prepare import DataError
from pipelines.validate import validate


def cmd_tune(args) -> int:
    from pipelines.data import written
    from pipelines.terminal.console import Console
    from pipelines.local_paths import check_root
    from pipelines.runners.local import pipeline_dir
    from pipelines.runners.trials import slice_line
    from pipelines.tuning.search import SEARCH_FOLDER, table, tune, tuned_path, with_search
    from pipelines.tuning.tuned_yaml import tuned_text

    cfg = load_config(args.config, args.set)
    for warning in validate(cfg):
        print(f"warning: {warning}", file=sys.stderr)
    cfg = with_search(cfg, args.trials)  # the default section when the config has none
    out = args.out or tuned_path(args.config)
    # before any work: never over the config itself, nor over a file twotower did not write
    written.check({"--out": out}, {"--config": args.config}, args.force)
    check_root(cfg)
    from pipelines.build.builder import SELECTION

    console = Console(os.path.join(pipeline_dir(cfg), "logs"), output_mode(args), name="tune")
    try:
        with console.capture(list(SELECTION[:SELECTION.index("Transform") + 1])):
            console.say(f"full log: {console.log_path}")
            t = cfg.tuning
            console.say(f"searching {len(t.space)} parameters, {t.trials} trials "
                        f"({t.algorithm}, at most {t.max_epochs} epochs each)")
            result = tune(cfg, log=console.say)
    except (ConfigError, DataError):
        raise
    except Exception as exc:
        return console.failed("tune", exc)
    console.result(slice_line(result["slice"]))
    if result["resumed"]:
        console.result(f"resumed: {result['resumed']} finished trial(s) kept from "
                       f"{result['project_dir']}")
    console.result(table(result))
    if result["best"] is None:
        print("error: no trial completed (each was stopped); see the table and lower the "
              "learning-rate range", file=sys.stderr)
        return 1
    raw = apply_overrides(read_raw(args.config), args.set)
    with written.atomic(out, "w", encoding="utf-8") as handle:
        handle.write(tuned_text(raw, result, cfg.tuning.space, args.config, cfg.tuning.algorithm))
    written.record([out], "tune")
    console.result(f"tuned config: {out} (twotower run --config {shlex.quote(out)}); search: "
                   f"{os.path.join(pipeline_dir(cfg), SEARCH_FOLDER)}; the trials in "
                   "TensorBoard's HParams tab: tensorboard --logdir "
                   f"{shlex.quote(os.path.join(result['project_dir'], 'tensorboard'))}")
    return 0
