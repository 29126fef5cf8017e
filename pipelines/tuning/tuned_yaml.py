"""The tuned config `twotower tune` writes: the user's config with the winning values, a
comment per value (trial, objective, range searched), and no ``tuning:`` section.

The user's own file is read as data (its comments are not carried over) and
written back with ``yaml.safe_dump``; each tuned ``section.key`` line gets its
comment. The file is an experiment template to commit: ``twotower validate``
accepts it and ``twotower run`` trains it.
"""
from __future__ import annotations

import copy
from typing import Dict, List

from pipelines.config.tuning import RangeConfig
from pipelines.version import __version__
from trainer.tuning_space import TUNABLE, slice_words


def searched(key: str, r: RangeConfig) -> str:
    """A range as text: ``0.001..0.01 (log)`` or ``one of 128, 256, 512``."""
    if r.values:
        return "one of " + ", ".join(f"{v:g}" for v in r.values)
    log = TUNABLE[key]["log"] if r.log is None else r.log
    return f"{r.min:g}..{r.max:g}" + (" (log)" if log else "")


def tuned_raw(raw: dict, values: Dict[str, object]) -> dict:
    """A copy of the raw config with ``values`` in place and ``tuning`` removed."""
    out = copy.deepcopy(raw)
    out.pop("tuning", None)
    for key, value in values.items():
        section, name = key.split(".")
        if not isinstance(out.get(section), dict):
            out[section] = {}
        # four significant digits: a template a person reads (0.004359, not 0.004359400788954501)
        out[section][name] = float(f"{value:.4g}") if isinstance(value, float) else value
    return out


def _comment_lines(lines: List[str], comments: Dict[str, str]) -> List[str]:
    """Appends ``# comment`` to each ``section.key`` line of block YAML (two levels)."""
    section, out = None, []
    for line in lines:
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            section = line.rstrip()[:-1]
        elif section and line.startswith("  ") and not line.startswith("   ") and ":" in line:
            key = f"{section}.{line.strip().split(':', 1)[0]}"
            if key in comments:
                line = f"{line}  # {comments.pop(key)}"
        out.append(line)
    if comments:  # a bug: every tuned key is a two-level key of the written mapping
        raise ValueError(f"tuned keys not found in the written config: {sorted(comments)}")
    return out


def tuned_text(raw: dict, result: dict, space: Dict[str, RangeConfig], source: str,
               algorithm: str) -> str:
    """The tuned YAML's text (see the module docstring).

    Args:
      raw: the user's config as read (``--set`` applied).
      result: :func:`trainer.tuning.run_search`'s result, with a ``best`` trial.
      space: the space searched; ``source``: the config file it came from.
    """
    import yaml

    best, about, objective = result["best"], result["slice"], result["objective"]
    baselines = result["baselines"]
    strongest = max(baselines, key=baselines.get) if baselines else None
    header = [
        f"# Tuned by `twotower tune` (twotower {__version__}) from {source}: "
        f"{len(result['trials'])} trials ({algorithm}).",
        f"# Best: trial {best['trial']}, {objective} {best['objective']:.4f} on the validation "
        f"slice ({slice_words(about)}, {about['slice_first']}.."
        f"{about['slice_last']}, {about['slice_rows']:,} rows; eval and test never read)"
        + (f"; {strongest} {baselines[strongest]:.4f} there." if strongest else "."),
        "# The search's tuning: section is left out: `twotower run --config` this file trains "
        "the tuned values.",
    ]
    comments = {key: f"tuned: trial {best['trial']}, {objective} {best['objective']:.4f}, "
                     f"searched {searched(key, space[key])}"
                for key in best["values"]}
    body = yaml.safe_dump(tuned_raw(raw, best["values"]), sort_keys=False,
                          default_flow_style=False, allow_unicode=True, width=100)
    return "\n".join(header + _comment_lines(body.splitlines(), comments)) + "\n"
