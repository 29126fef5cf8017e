"""A hyperparameter search's trials, read back and laid out as one table (no TensorFlow).

The records are :mod:`trainer.tuning`'s: one JSON per finished trial under
``trial_records/`` and ``slice.json`` (the validation slice, the objective, the baselines'
values there), in `twotower tune`'s project folder or, for a run with a Tuner step, in the
step's ``tuner_results`` output (:mod:`pipelines.build.components.tuner_records`).
:func:`rows` is the one layout of the table: `twotower tune` prints it
(:func:`pipelines.tuning.search.table`), the run's HTML report shows it
(:mod:`pipelines.inspect.sections`).
"""
from __future__ import annotations

import glob
import json
import os
from typing import Dict, List, Optional, Tuple

from trainer.tuning_space import (KEPT_SEARCH, SLICE_FILE, TENSORBOARD_FOLDER, TRIALS_FOLDER,
                                  slice_words)


def kept_search(tuner_results: str) -> str:
    """The folder of the search records in a Tuner step's ``tuner_results`` output."""
    return os.path.join(tuner_results, KEPT_SEARCH)


def read_search(folder: str) -> Optional[Dict[str, object]]:
    """``{'trials': [record], 'slice': {...} or None, 'baselines': {name: value},
    'objective', 'tensorboard'}`` of the search kept in ``folder`` (``tensorboard``: the
    folder of the trials' TensorBoard runs, '' if none), or None when it holds no trial record.

    Raises:
      ValueError: a record that is not JSON (naming its file).
    """
    paths = sorted(glob.glob(os.path.join(folder, TRIALS_FOLDER, "*.json")))
    if not paths:
        return None
    trials = [_read(path) for path in paths]
    board = os.path.join(folder, TENSORBOARD_FOLDER)
    about = _read(os.path.join(folder, SLICE_FILE)) if os.path.exists(
        os.path.join(folder, SLICE_FILE)) else None
    return {"trials": sorted(trials, key=lambda t: int(t["trial"])), "slice": about,
            "baselines": dict((about or {}).get("baselines") or {}),
            "objective": (about or {}).get("objective"),
            "tensorboard": board if os.path.isdir(board) else ""}


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable trial record ({exc}); remove it to run that "
                         "trial again") from None


def short_names(keys: List[str]) -> List[str]:
    """Each key's last part (``learning_rate``) unless two keys share it."""
    last = [k.split(".")[-1] for k in keys]
    return [n if last.count(n) == 1 else k for n, k in zip(last, keys)]


def rows(trials: List[dict], objective: str, best: Optional[str] = None
         ) -> Tuple[List[str], List[List[str]]]:
    """The trial table: a header and a row of text cells per trial, by trial number.

    Columns: trial, each searched value, ``objective``, epochs, seconds, stopped because
    (``-`` for none); ``best`` (a trial id) gets `` *`` after its reason.
    """
    keys = list(dict.fromkeys(k for t in trials for k in t["values"]))
    header = ["trial"] + short_names(keys) + [objective, "epochs", "seconds", "stopped because"]
    out = []
    for t in sorted(trials, key=lambda t: int(t["trial"])):
        why = t["stopped"]["reason"] if t["stopped"] else "-"
        out.append([str(t["trial"])]
                   + [f"{t['values'][k]:.4g}" if k in t["values"] else "" for k in keys]
                   + [f"{t['objective']:.4f}", str(t["epochs"]), f"{t['seconds']:.0f}",
                      why + (" *" if best is not None and str(t["trial"]) == str(best) else "")])
    return header, out


# below it, one query moves a recall by 1% or more: the slice's (and the eval split's) figures
# are flagged as noise (pipelines.terminal.console.result_lines reads it too)
SLICE_MIN_QUERIES = 100


def slice_line(about: dict) -> str:
    """The validation slice on one line: its dates and sizes, the rows trials fit on; and,
    when it scores fewer than SLICE_MIN_QUERIES queries, a warning that says so."""
    line = (f"validation slice: {slice_words(about)}, "
            f"{about['slice_first']}..{about['slice_last']}: {about['slice_rows']:,} rows, "
            f"{about['queries']:,} queries scored; trials fit on {about['fit_first']}.."
            f"{about['fit_last']}: {about['fit_rows']:,} rows (eval and test never read)")
    if about["queries"] < SLICE_MIN_QUERIES:
        line += (f"\nwarning: the validation slice scores only {about['queries']:,} queries "
                 f"(fewer than {SLICE_MIN_QUERIES}): the trials' objectives are mostly noise; "
                 "raise tuning.validation_fraction so that more queries have rows in it" + (
                     "" if about.get("per_query") else
                     " (a ratings log whose users rated at different times: data.split.method: "
                     "user_time cuts the slice per query)"))
    return line


def search_lines(tuner_results: str, tuned: Optional[dict]) -> List[str]:
    """A run's Tuner step on the screen: how many trials, which one's values the Trainer
    trained (``tuned``: training_metrics.json's), and the validation slice; [] without one."""
    kept = read_search(kept_search(tuner_results)) if tuner_results else None
    if not kept:
        return []
    trials = kept["trials"]
    chosen = [t for t in trials if tuned is not None and t["values"] == tuned]
    stopped = sum(1 for t in trials if t["stopped"])
    line = f"tuner: {len(trials)} trials ({stopped} stopped)"
    if chosen:
        line += (f"; the Trainer trained trial {chosen[0]['trial']}'s values ("
                 f"{kept['objective']} {chosen[0]['objective']:.4f} on the slice, "
                 + ", ".join(f"{k} {v:g}" for k, v in chosen[0]["values"].items()) + ")")
    return [line] + ([slice_line(kept["slice"])] if kept["slice"] else [])
