"""The push gate's decision: push only a model that beats its baseline on held-out data.

A completed model is blessed when its full-catalog recall on the held-out
split (test when configured, else eval) is above
``pipeline.min_lift_over_popularity`` times popularity's recall on the same
queries at every cut-off of ``model.top_k`` up to ``pipeline.serving_k``
(or at ``pipeline.gate_k`` alone, when the config names the one that
matters): a model below popularity at a cut-off it serves is not pushed. The Pusher consumes the blessing (see
:mod:`pipelines.build.components.popularity_gate`), so an unblessed model is never
pushed. No TensorFlow or TFX here.
"""
from __future__ import annotations

import json
import os
from typing import List, Optional

GATE_FILE = "gate.json"


def cutoffs(spec: dict) -> List[int]:
    """The cut-offs the gate compares at: ``pipeline.gate_k`` if set, else every
    ``model.top_k`` up to ``pipeline.serving_k`` (the first one if none is)."""
    gate_k = spec["pipeline"].get("gate_k")
    if gate_k is not None:
        return [gate_k]
    ks = spec["model"]["top_k"]
    return [k for k in ks if k <= spec["pipeline"]["serving_k"]] or ks[:1]


def objective_of(spec: dict) -> str:
    """The tuner's objective: the gate's metric at its first cut-off, e.g. ``recall_at_10``."""
    return f"recall_at_{cutoffs(spec)[0]}"


LABELS = {"popularity": "popularity", "recent_popularity": "recent popularity",
          "ease": "EASE"}  # the names trainer.baselines gives its discovery baselines


def decide(metrics: dict, min_lift: Optional[float], ks: Optional[List[int]] = None,
           against: str = "popularity") -> dict:
    """``{'blessed': bool, 'reason': one line, ...figures}`` from ``training_metrics.json``.

    Blessed when recall at every cut-off of ``ks`` (default: the first of
    ``model.top_k``) is above ``min_lift`` x the baseline's: popularity's, or
    with ``against='best'`` (``pipeline.gate_against``) the strongest
    baseline's at that cut-off (popularity, recent popularity, EASE). The
    reason names the first cut-off that is not, and the baseline that decided.
    ``min_lift`` None switches the gate off (a completed model is blessed).
    """
    if metrics.get("status") != "completed" or not metrics.get("evaluation"):
        return {"blessed": False, "reason": f"training ended with status "
                f"{metrics.get('status')!r}; nothing to push"}
    if min_lift is None:
        return {"blessed": True, "reason": "push gate off (pipeline.min_lift_over_popularity: "
                "null): every completed model is pushed"}
    evaluation = metrics["evaluation"]
    split = evaluation.get("split", "eval")
    ks = list(ks or metrics["top_k"][:1])
    pool = {"popularity": evaluation["popularity"]}
    if against == "best":
        if not evaluation.get("baselines"):
            return {"blessed": False, "reason": "pipeline.gate_against: best, but the Trainer "
                    "recorded no baselines beside popularity; rerun with this version"}
        pool = {n: v for n, v in evaluation["baselines"].items() if n in LABELS}

    def strongest(k):
        return max(pool, key=lambda n: (pool[n][f"recall_at_{k}"], n == "popularity"))

    figures = {k: (evaluation["model"][f"recall_at_{k}"], strongest(k)) for k in ks}
    failing = [k for k in ks if not figures[k][0] > min_lift * pool[figures[k][1]][
        f"recall_at_{k}"]]
    k = failing[0] if failing else ks[0]
    model, name = figures[k]
    baseline = pool[name][f"recall_at_{k}"]
    verdict = "not above" if failing else "above"
    reason = (f"recall@{k} on the {split} split is {model:.4f}, {verdict} {min_lift:g} x "
              f"{LABELS[name]}'s {baseline:.4f}" + (
                  ", the strongest baseline (pipeline.min_lift_over_popularity, "
                  "pipeline.gate_against: best)" if against == "best"
                  else " (pipeline.min_lift_over_popularity)"))
    if not failing and len(ks) > 1:
        reason += ", and above it at " + ", ".join(
            f"@{j} ({figures[j][0]:.4f} vs "
            + (f"{LABELS[figures[j][1]]} " if against == "best" else "")
            + f"{pool[figures[j][1]][f'recall_at_{j}']:.4f})" for j in ks[1:])
    return {"blessed": not failing, "reason": reason, "metric": f"recall_at_{k}",
            "model": model, "popularity": evaluation["popularity"][f"recall_at_{k}"],
            "baseline": name, "baseline_value": baseline, "against": against,
            "min_lift": min_lift, "split": split, "cutoffs": ks}


def read_decision(blessing_dir: str) -> Optional[dict]:
    """The decision a gate execution wrote into its blessing artifact, if any."""
    path = os.path.join(blessing_dir, GATE_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
