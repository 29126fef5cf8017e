"""The push gate's decision: push only a model that beats popularity on held-out data.

A completed model is blessed when its full-catalog recall at the first
``model.top_k`` cut-off on the held-out split (test when configured, else
eval) is above ``pipeline.min_lift_over_popularity`` times popularity's
recall on the same queries. The Pusher consumes the blessing (see
:mod:`pipelines.components.popularity_gate`), so an unblessed model is never
pushed. No TensorFlow or TFX here.
"""
from __future__ import annotations

import json
import os
from typing import Optional

GATE_FILE = "gate.json"


def decide(metrics: dict, min_lift: Optional[float]) -> dict:
    """``{'blessed': bool, 'reason': one line, ...figures}`` from ``training_metrics.json``.

    ``min_lift`` None switches the gate off (a completed model is blessed).
    """
    if metrics.get("status") != "completed" or not metrics.get("evaluation"):
        return {"blessed": False, "reason": f"training ended with status "
                f"{metrics.get('status')!r}; nothing to push"}
    if min_lift is None:
        return {"blessed": True, "reason": "push gate off (pipeline.min_lift_over_popularity: "
                "null): every completed model is pushed"}
    evaluation = metrics["evaluation"]
    k = metrics["top_k"][0]
    name = f"recall_at_{k}"
    model, baseline = evaluation["model"][name], evaluation["popularity"][name]
    blessed = model > min_lift * baseline
    verdict = "above" if blessed else "not above"
    reason = (f"recall@{k} on the {evaluation.get('split', 'eval')} split is {model:.4f}, "
              f"{verdict} {min_lift:g} x popularity's {baseline:.4f} "
              "(pipeline.min_lift_over_popularity)")
    return {"blessed": blessed, "reason": reason, "metric": name, "model": model,
            "popularity": baseline, "min_lift": min_lift,
            "split": evaluation.get("split", "eval")}


def read_decision(blessing_dir: str) -> Optional[dict]:
    """The decision a gate execution wrote into its blessing artifact, if any."""
    path = os.path.join(blessing_dir, GATE_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
