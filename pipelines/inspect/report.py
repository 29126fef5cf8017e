"""`twotower inspect ROOT`: the figures as PNG files, one self-contained HTML report, a summary.

The report answers four questions: what code ran, did it learn, did a tower
collapse, are the recommendations sensible. Its images are inlined (base64),
so it opens anywhere without a network; every value from the run is
HTML-escaped.
"""
from __future__ import annotations

import base64
import html
import io
import os
from typing import Dict, List, Optional

from pipelines.data import written as manifest
from pipelines.inspect import data, plots, verdict
from pipelines.inspect.model import Towers
from pipelines.inspect.run import load
from pipelines.inspect.sections import sections
from transform.naming import CANDIDATE_VOCAB, QUERY_ID

CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;
background:#f6f7f9;color:#1d2330}main{max-width:1040px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid
#d8dce3;padding-bottom:4px}.sub{color:#5a6375;font-size:13px}.cards{display:flex;gap:12px;
flex-wrap:wrap;margin:16px 0}.card{background:#fff;border:1px solid #d8dce3;border-radius:8px;
padding:10px 14px;min-width:150px}.card b{display:block;font-size:20px}.ok{color:#1a7f37}
.bad{color:#c62828}table{border-collapse:collapse;background:#fff;font-size:13px;margin:6px 0}
td,th{border:1px solid #d8dce3;padding:4px 8px;text-align:left;vertical-align:top}th{background:
#eef0f4}td.n{text-align:right;font-variant-numeric:tabular-nums}.figs{display:grid;
grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:12px}.figs img{width:100%;
background:#fff;border:1px solid #d8dce3;border-radius:6px}code{background:#eef0f4;padding:1px
4px;border-radius:3px}.hit{background:#e6f4ea}"""

FIGURES = ("loss", "recall", "gradient_norms", "clip_rate", "learning_rate",
           "embedding_norms")  # the figures --out writes, each <name>.png


def _e(value) -> str:
    return html.escape(str(value))


def _table(header: List[str], rows: List[List[object]], numeric=()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td class='n'>{_e(c)}</td>" if i in numeric else f"<td>{_e(c)}</td>"
        for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def png(fig) -> bytes:
    """A figure as PNG bytes (for a notebook: ``IPython.display.Image(png(fig))``)."""
    return _png(fig, close=False)


def _png(fig, close: bool = True) -> bytes:
    import matplotlib.pyplot as plt  # after pipelines.inspect.plots picked the Agg backend

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    if close:
        plt.close(fig)
    return buffer.getvalue()


def gather(root: str, query: Optional[str] = None, candidate: Optional[str] = None,
           k: int = 10) -> Dict[str, object]:
    """Everything the report shows, as plain data (the notebook shows the same)."""
    run = load(root)
    out: Dict[str, object] = {"run": run, "vocabularies": data.vocabularies(run)}
    out["sample"] = data.sample(run, "train", 5) if "train" in run["examples"] else []
    out["towers"] = None
    if run["towers"]:
        towers = Towers(run)
        out["towers"] = towers
        out["parameters"] = towers.parameters()
        out["norms"] = towers.norms()
        candidate = candidate or most_frequent(out["vocabularies"], towers.candidate_ids)
        out["nearest"] = {"candidate": candidate, "rows": towers.nearest(candidate, k)}
        out["queries"] = chosen_queries(towers, query, k)
        if out["queries"]:
            out["query_top_k"] = out["queries"][0][1]
    out["candidates"] = data.candidate_table(run)
    out["figures"] = plots.all_figures(run, out.get("norms"))
    return out


def most_frequent(vocabularies: Dict[str, dict], candidate_ids: List[str]) -> str:
    """The candidate seen most in training (the id vocabulary is most frequent first)."""
    known = set(candidate_ids)
    top = (vocabularies.get(CANDIDATE_VOCAB) or {}).get("top") or []
    return next((c for c in top if c in known), candidate_ids[0])


def chosen_queries(towers, query: Optional[str], k: int, pool: int = 40):
    """``[(label, top-k)]``: the asked query, or among the first ``pool`` held-out queries
    with held-out items a good one (most hits in its top k), a typical one (the median
    number of hits) and a bad one (fewest hits)."""
    if query:
        return [("asked for", towers.query_top_k(query, k))]
    ids = [v.decode("utf-8") for v in towers.held_out_queries()[QUERY_ID]]
    scored = []
    for q in ids:
        found = towers.query_top_k(q, k)
        if found["held_out"]:
            scored.append((sum(r["hit"] for r in found["top"]), len(scored), found))
        if len(scored) >= pool:
            break
    if not scored:
        return []
    scored.sort(key=lambda t: (-t[0], t[1]))
    picks = [("good: most hits", scored[0]), ("typical: median hits", scored[len(scored) // 2]),
             ("bad: fewest hits", scored[-1])]
    out, seen = [], set()
    for label, (hits, _, found) in picks:
        if found["query"] not in seen:
            seen.add(found["query"])
            out.append((f"{label} ({hits} of {k})", found))
    return out


def summary(found: Dict[str, object]) -> List[str]:
    """The terminal's few lines."""
    run, metrics = found["run"], found["run"]["metrics"] or {}
    lines = [f"run: {run['root']} (training {metrics.get('status', 'not run')})"]
    evaluation = metrics.get("evaluation") or {}
    recall = sorted(k for k in evaluation.get("model", {}) if k.startswith("recall_at_"))
    if recall:
        key = min(recall, key=lambda k: int(k.rsplit("_", 1)[1]))
        lines.append(f"learned: {key} {evaluation['model'][key]:.4f} vs popularity "
                     f"{evaluation['popularity'][key]:.4f} on {evaluation['queries']} held-out "
                     f"{evaluation.get('split', 'eval')} queries; "
                     + verdict.headline(evaluation))
    lines.append("collapse: " + ("detected, " + str((metrics.get("stopped") or {}).get(
        "message", "")) if metrics.get("collapse_detected") else "none detected"))
    if found.get("parameters"):
        lines.append("parameters: " + ", ".join(f"{t} {p['total']:,}"
                                                for t, p in found["parameters"].items()))
    return lines


def outputs(out_dir: str) -> Dict[str, str]:
    """``{option: path}`` of every file :func:`write` may write into ``out_dir`` (for
    :func:`pipelines.data.written.check`, before anything is computed)."""
    found = {f"--out ({name}.png)": os.path.join(out_dir, f"{name}.png") for name in FIGURES}
    found["--out (report.html)"] = os.path.join(out_dir, "report.html")
    return found


def write(found: Dict[str, object], out_dir: str) -> Dict[str, str]:
    """Writes ``<name>.png`` for each figure and ``report.html``; returns their paths.

    Each file is written whole (beside its target, then renamed) and recorded in the
    folder's manifest (:mod:`pipelines.data.written`): a later inspect may replace it, never a
    file the user put there (:func:`outputs` is checked first).
    """
    os.makedirs(out_dir, exist_ok=True)
    written, images = {}, {}
    for name, fig in found["figures"].items():
        png = _png(fig)
        path = os.path.join(out_dir, f"{name}.png")
        with manifest.atomic(path, "wb") as handle:
            handle.write(png)
        written[name] = path
        images[name] = base64.b64encode(png).decode("ascii")
    path = os.path.join(out_dir, "report.html")
    with manifest.atomic(path, "w", encoding="utf-8") as handle:
        handle.write(page(found, images))
    written["report"] = path
    manifest.record(written.values(), "inspect")
    return written


def page(found: Dict[str, object], images: Dict[str, str]) -> str:
    run = found["run"]
    body = sections(found, images, _e, _table)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>"
            f"{_e(run['spec']['pipeline']['name'])}: twotower run report</title>"
            f"<style>{CSS}</style></head><body><main>{body}</main></body></html>")
