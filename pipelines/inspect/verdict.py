"""What a run's held-out evaluation says, in words: one reading for every place it is shown.

The result screen, the HTML report, ``twotower runs`` and ``twotower backtest``
read a ``training_metrics.json`` evaluation through these functions, so the
model is always shown beside the same baselines, the same strongest one is
named and the same ratio is printed. No TensorFlow here.

An evaluation (``trainer.held_out.HeldOutSet.evaluate``) holds ``model`` and
``popularity`` metrics and, from this version on, ``baselines``
(``popularity``, ``recent_popularity`` with a timestamp, ``ease``),
``best_baseline``, ``baselines_about``, ``coverage``, ``period`` and
``buy_again``; an older record without them reads as popularity only.
"""
from __future__ import annotations

import datetime as dt
from typing import Dict, List, Optional, Tuple

# Discovery baselines in the order they are shown, and their names in words.
ORDER = ("popularity", "recent_popularity", "ease")
LABELS = {"popularity": "popularity", "recent_popularity": "recent popularity",
          "ease": "EASE", "frequency": "own counts", "recency": "own counts by recency"}
SHORT = {"popularity": "popularity", "recent_popularity": "recent pop.", "ease": "EASE"}


def baselines(evaluation: dict) -> Dict[str, Dict[str, float]]:
    """``{name: metrics}`` of the discovery baselines, in :data:`ORDER` (popularity alone for
    a record written before the other baselines existed)."""
    found = evaluation.get("baselines") or {"popularity": evaluation.get("popularity") or {}}
    return {name: found[name] for name in ORDER if name in found}


def first_recall(evaluation: dict) -> Optional[str]:
    """The first cut-off's recall key (``recall_at_10``), or None."""
    keys = sorted((int(k.rsplit("_", 1)[1]), k) for k in evaluation.get("model", {})
                  if k.startswith("recall_at_"))
    return keys[0][1] if keys else None


def strongest(evaluation: dict, metric: Optional[str] = None) -> Tuple[str, float]:
    """``(name, value)`` of the strongest baseline at ``metric`` (default the first recall)."""
    metric = metric or first_recall(evaluation)
    found = baselines(evaluation)
    name = max(found, key=lambda n: (found[n].get(metric, 0.0), -ORDER.index(n)))
    return name, found[name].get(metric, 0.0)


def ratio_words(model: float, name: str, value: float, only: bool) -> str:
    """``1.04x EASE, the strongest baseline`` (``only``: popularity is the one baseline)."""
    times = f"{model / value:.2f}x" if value > 0 else ("above 0" if model > 0 else "level at 0")
    return f"{times} {LABELS[name]}" + ("" if only else ", the strongest baseline")


def headline(evaluation: dict, metric: Optional[str] = None) -> str:
    """The model against the strongest baseline at ``metric``, in words."""
    metric = metric or first_recall(evaluation)
    name, value = strongest(evaluation, metric)
    k = metric.rsplit("_", 1)[1]
    return (f"recall@{k}: " + ratio_words(evaluation["model"][metric], name, value,
                                          len(baselines(evaluation)) == 1))


def day(seconds: int) -> str:
    return dt.datetime.fromtimestamp(int(seconds), dt.timezone.utc).strftime("%Y-%m-%d")


def period(evaluation: dict) -> str:
    """``2026-01-02 to 2026-01-31`` (UTC days of the split's first and last interaction)."""
    found = evaluation.get("period") or {}
    if "first" not in found:
        return ""
    return f"{day(found['first'])} to {day(found['last'])}"


def table(evaluation: dict, names: List[str]) -> List[str]:
    """Rows ``metric  model  <each baseline>`` for ``names`` (screen width)."""
    found = baselines(evaluation)
    head = f"  {'metric':<14}{'model':>8}" + "".join(f"{SHORT[n]:>12}" for n in found)
    rows = [head]
    for metric in names:
        rows.append(f"  {metric:<14}{evaluation['model'][metric]:>8.4f}" + "".join(
            f"{found[n].get(metric, float('nan')):>12.4f}" for n in found))
    return rows


def buy_again(evaluation: dict) -> List[str]:
    """The buy-again line beside own counts, with a warning when the model loses."""
    again = evaluation.get("buy_again") or {}
    model = again.get("model") or {}
    keys = sorted((int(k.rsplit("_", 1)[1]), k) for k in model if k.startswith("recall_at_"))
    if not keys:
        return []
    key = keys[0][1]
    k = key.rsplit("_", 1)[1]
    others = [n for n in ("frequency", "recency", "popularity") if n in again]
    line = (f"buy again ({again.get('queries', 0)} queries, their re-bought items among what "
            f"each had): recall@{k} model {model[key]:.4f}, " + ", ".join(
                f"{LABELS.get(n, n)} {again[n][key]:.4f}" for n in others))
    best = max((n for n in others if n != "popularity"), key=lambda n: again[n][key],
               default=None)
    if best is not None and model[key] < again[best][key]:
        line += (f"; warning: the model loses to {LABELS[best]} here: rank a customer's own "
                 "products by their counts (recommend --buy-again-out ranks by the model)")
    return [line]


def coverage(evaluation: dict) -> str:
    found = evaluation.get("coverage")
    if not found:
        return ""
    return (f"coverage: the top-{found['k']} lists use {found['candidates']} of "
            f"{found['catalog']} candidates ({found['share']:.0%}); the {found['head']} most "
            f"popular hold {found['head_slots']:.0%} of the slots")


def early_stop(metrics: dict, refit: Optional[dict]) -> str:
    """``stopped after epoch 3; best epoch 1 restored; the refit trains 1 epoch`` (or the
    plain outcome when early stopping is off)."""
    stop = metrics.get("early_stopping")
    run = len(metrics.get("epochs") or [])
    if stop:
        text = (f"training: stopped after epoch {stop['epochs_run']} (no better "
                f"{stop['metric'].rsplit('/', 1)[-1]} for {stop['patience']} epochs)"
                if stop.get("stopped_early") else
                f"training: all {stop['epochs_run']} epochs run")
        text += f"; best epoch {stop['best_epoch']} restored"
    else:
        text = f"training: {run} epochs run (training.early_stopping_patience off)"
    if refit and refit.get("refit"):
        n = refit["refit"]["epochs"]
        text += (f"; the refit on train + eval trains {n} epoch{'s' if n != 1 else ''} over "
                 f"{refit['refit']['rows']} rows")
    return text


def summary_cells(evaluation: dict) -> Dict[str, object]:
    """For a one-line listing (``runs``): the first recall, the strongest baseline, ratio."""
    metric = first_recall(evaluation)
    if not metric:
        return {}
    name, value = strongest(evaluation, metric)
    model = evaluation["model"][metric]
    return {"metric": metric.replace("recall_at_", "recall@"), "model": model,
            "popularity": (evaluation.get("popularity") or {}).get(metric),
            "best_baseline": name, "best_baseline_value": value,
            "ratio": model / value if value > 0 else None}
