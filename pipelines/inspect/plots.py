"""The figures of a run, from ``training_metrics.json`` and the towers (matplotlib, no display).

Each function takes what it plots and returns a ``matplotlib.figure.Figure``;
:func:`all_figures` makes every figure a run has data for, by name.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")  # files, not windows
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator, PercentFormatter
import numpy as np  # noqa: E402

COLORS = {"query": "#1f77b4", "candidate": "#d62728", "model": "#2ca02c",
          "popularity": "#7f7f7f", "global": "#9467bd"}
K_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]  # recall@k, one per k


def _figure(title: str, xlabel: str = "epoch", ylabel: str = ""):
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if xlabel == "epoch":  # whole epochs: 1, 2, 3, never 1.2

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, ax


def _epochs(metrics: dict) -> List[int]:
    return [e["epoch"] for e in metrics.get("epochs", [])]


def _mark_stop(ax, metrics: dict) -> None:
    stopped = metrics.get("stopped")
    if stopped and metrics.get("epochs"):
        ax.axvline(metrics["epochs"][-1]["epoch"], color="black", linestyle=":",
                   label=f"stopped: {stopped.get('reason', 'stopped')}")


def loss(metrics: dict):
    fig, ax = _figure("Training loss per epoch", ylabel="mean loss")
    epochs = _epochs(metrics)
    ax.plot(epochs, [e["loss"] for e in metrics["epochs"]], marker="o", label="train")
    evals = [e["eval"].get("loss") for e in metrics["epochs"]]
    if any(v is not None for v in evals):
        ax.plot(epochs, evals, marker="s", label="eval (FactorizedTopK batches)")
    _mark_stop(ax, metrics)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def gradient_norms(metrics: dict, threshold: Optional[float] = None):
    """Per tower: the epoch's mean gradient norm, with its min-max band, on a log scale;
    the collapse threshold and a stop are marked."""
    fig, ax = _figure("Gradient norm per tower (before clipping)", ylabel="global norm (log)")
    epochs = _epochs(metrics)
    for tower in ("query", "candidate"):
        stats = [e["grad_norm"][tower] for e in metrics["epochs"]]
        if any(s["mean"] is None for s in stats):
            continue
        ax.plot(epochs, [s["mean"] for s in stats], marker="o", color=COLORS[tower],
                label=f"{tower} tower (mean)")
        ax.fill_between(epochs, [max(s["min"], 1e-12) for s in stats],
                        [s["max"] for s in stats], color=COLORS[tower], alpha=0.15)
    ax.set_yscale("log")
    low, high = _data_range(metrics)
    if low is not None:  # fitted to the data: the bands fill the panel
        ax.set_ylim(low / 2, high * 2)
    if threshold and (low is None or threshold >= low / 100):
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1,
                   label=f"collapse threshold {threshold:g}")
    elif threshold:
        ax.plot([], [], " ", label=f"collapse threshold {threshold:g} (far below: not drawn)")
    _mark_stop(ax, metrics)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def _data_range(metrics: dict):
    """The lowest positive and the highest per-step gradient norm of either tower."""
    values = [v for e in metrics["epochs"] for t in ("query", "candidate")
              for v in ((e["grad_norm"].get(t) or {}).get("min"),
                        (e["grad_norm"].get(t) or {}).get("max")) if v and v > 0]
    return (min(values), max(values)) if values else (None, None)


def clip_rate(metrics: dict):
    """Per epoch, the share of steps clipped, on an axis fitted to the highest share."""
    fig, ax = _figure("Share of steps whose gradients clipping changed", ylabel="steps clipped")
    rates = [e.get("clip_rate") or 0.0 for e in metrics["epochs"]]
    bars = ax.bar(_epochs(metrics), rates, color=COLORS["global"])
    ax.bar_label(bars, labels=[f"{r:.0%}" for r in rates], fontsize=9)
    ax.set_ylim(0, min(1.0, max(max(rates, default=0) * 1.3, 0.05)))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    fig.tight_layout()
    return fig


def learning_rate(metrics: dict):
    """The rate per epoch; a constant rate is drawn from 0 and said so (not a flat line
    on a hair-thin axis)."""
    fig, ax = _figure("Learning rate", ylabel="rate")
    rates = [e["learning_rate"] for e in metrics["epochs"]]
    ax.plot(_epochs(metrics), rates, marker="o")
    if rates and max(rates) - min(rates) <= 1e-9 * max(abs(max(rates)), 1e-12):
        ax.set_ylim(0, max(rates) * 1.5 or 1)
        ax.set_title(f"Learning rate: constant {rates[0]:g}", fontsize=11)
    fig.tight_layout()
    return fig


def recall(metrics: dict):
    """Full-catalog recall@k of each epoch on the eval split, beside popularity's."""
    fig, ax = _figure("Held-out recall@k per epoch (full catalog)", ylabel="recall")
    epochs = _epochs(metrics)
    keys = sorted({int(k.rsplit("_", 1)[1]) for e in metrics["epochs"] for k in e["eval"]
                   if k.startswith("full_catalog/recall_at_")})
    for n, k in enumerate(keys):  # one colour per k; popularity dashed in the same colour
        color = K_COLORS[n % len(K_COLORS)]
        ax.plot(epochs, [e["eval"].get(f"full_catalog/recall_at_{k}") for e in metrics["epochs"]],
                "-", marker="o", color=color, label=f"model @{k}")
        popular = [e["eval"].get(f"full_catalog/popularity_recall_at_{k}")
                   for e in metrics["epochs"]]
        if any(p is not None for p in popular):
            ax.plot(epochs, popular, "--", color=color, alpha=0.8, label=f"popularity @{k}")
    _mark_stop(ax, metrics)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside, not over
    fig.tight_layout()
    return fig


def embedding_norms(norms: Dict[str, np.ndarray]):
    """Histograms of the embeddings' norms before L2 normalisation (near 0: a dead tower)."""
    fig, ax = _figure("Embedding norms before normalisation", xlabel="norm", ylabel="count")
    for name, values in norms.items():
        ax.hist(values, bins=40, alpha=0.55, color=COLORS.get(name), label=f"{name} ({len(values)})")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def all_figures(run: dict, norms: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, object]:
    """``{name: Figure}`` for every figure the run has data for."""
    metrics = run.get("metrics") or {}
    out = {}
    if metrics.get("epochs"):
        threshold = run["spec"]["training"]["collapse_threshold"]
        out.update(loss=loss(metrics), gradient_norms=gradient_norms(metrics, threshold),
                   clip_rate=clip_rate(metrics), learning_rate=learning_rate(metrics),
                   recall=recall(metrics))
    if norms:
        out["embedding_norms"] = embedding_norms(norms)
    return out
