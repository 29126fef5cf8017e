"""What every command shares: the config from ``--config``/``--set``, the output mode."""
from __future__ import annotations

import sys

from pipelines.config.schema import Config, load_config
from pipelines.validate import validate


def config_from(args) -> Config:
    """The validated config (warnings on stderr); ConfigError lists every problem."""
    cfg = load_config(args.config, args.set)
    for warning in validate(cfg, check_data=not getattr(args, "no_data", False)):
        print(f"warning: {warning}", file=sys.stderr)
    return cfg


def output_mode(args) -> str:
    """``verbose``, ``quiet`` or ``normal`` from the ``--verbose``/``--quiet`` flags."""
    return "verbose" if getattr(args, "verbose", False) else (
        "quiet" if getattr(args, "quiet", False) else "normal")
