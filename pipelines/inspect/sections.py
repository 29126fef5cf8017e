"""The HTML report's sections, one per question a person asks of a run."""
from __future__ import annotations

from typing import Callable, Dict, List

from pipelines.inspect import verdict
from pipelines.inspect.data import describe
from pipelines.runners.trials import rows as trial_rows
from trainer.tuning_space import slice_words
from transform.kinds import FLOAT, kind_of


def sections(found: Dict[str, object], images: Dict[str, str], e: Callable,
             table: Callable) -> str:
    run = found["run"]
    spec, metrics = run["spec"], run["metrics"] or {}
    evaluation = metrics.get("evaluation") or {}
    parts: List[str] = [
        f"<h1>{e(spec['pipeline']['name'])}</h1><div class='sub'>{e(run['root'])} &middot; "
        f"config {e(str(metrics.get('config_fingerprint', ''))[:12])} &middot; library "
        f"{e(metrics.get('library_version', ''))}</div>"]

    # --- did it learn?
    cards = [("training", metrics.get("status", "not run"),
              "ok" if metrics.get("status") == "completed" else "bad")]
    recall = sorted((int(k.rsplit("_", 1)[1]), k) for k in evaluation.get("model", {})
                    if k.startswith("recall_at_"))
    if recall:
        k, key = recall[0]
        model, popular = evaluation["model"][key], evaluation["popularity"][key]
        cards += [(f"recall@{k} (held-out)", f"{model:.4f}", "ok" if model > popular else "bad"),
                  (f"popularity recall@{k}", f"{popular:.4f}", "")]
    gate = run.get("gate") or {}
    if gate:
        cards.append(("push gate", "blessed" if gate.get("blessed") else "not blessed",
                      "ok" if gate.get("blessed") else "bad"))
    cards.append(("collapse", "detected" if metrics.get("collapse_detected") else "none",
                  "bad" if metrics.get("collapse_detected") else "ok"))
    parts.append("<div class='cards'>" + "".join(
        f"<div class='card'><span class='sub'>{e(label)}</span><b class='{cls}'>{e(value)}</b>"
        "</div>" for label, value, cls in cards) + "</div>")
    parts.append("<h2>Did it learn?</h2>")
    if evaluation:
        names = metric_names(evaluation["model"])
        shown = verdict.baselines(evaluation)
        when = verdict.period(evaluation)
        parts.append(
            f"<p>{e(evaluation['queries'])} held-out {e(evaluation.get('split', 'eval'))} "
            + (f"queries ({e(when)}), " if when else "queries, ")
            + "each embedded as it stood before its first held-out interaction and "
            "ranked against the whole catalog without the items it already had; every "
            "baseline is ranked on the same queries with the same exclusions, fitted on the "
            "interactions before the split only.</p>"
            + table(["metric", "model"] + [verdict.LABELS[n] for n in shown],
                    [[n, f"{evaluation['model'][n]:.4f}"]
                     + [f"{shown[b].get(n, float('nan')):.4f}" for b in shown]
                     for n in names], numeric=tuple(range(1, 2 + len(shown)))))
        parts.append(f"<p><b>Model vs baselines:</b> {e(verdict.headline(evaluation))}</p>")
        for line in verdict.buy_again(evaluation) + [verdict.coverage(evaluation)]:
            if line:
                parts.append(f"<p>{e(line)}</p>")
    if gate:
        parts.append(f"<p>Push gate: {e(gate.get('reason', ''))}</p>")
    parts.append("<div class='figs'>" + "".join(
        f"<figure><img alt='{e(name)}' src='data:image/png;base64,{images[name]}'></figure>"
        for name in ("recall", "loss") if name in images) + "</div>")

    # --- did a tower collapse?
    parts.append("<h2>Did a tower collapse?</h2>")
    stopped = metrics.get("stopped")
    parts.append(f"<p>{e(stopped['message']) if stopped else 'No: training was not stopped.'}"
                 f" Collapse threshold {e(spec['training']['collapse_threshold'])} for "
                 f"{e(spec['training']['collapse_patience'])} steps in a row; clipping "
                 f"{e(spec['training']['clipping'])} at {e(spec['training']['clip_value'])}."
                 "</p>")
    parts.append("<div class='figs'>" + "".join(
        f"<figure><img alt='{e(name)}' src='data:image/png;base64,{images[name]}'></figure>"
        for name in ("gradient_norms", "embedding_norms", "clip_rate", "learning_rate")
        if name in images) + "</div>")

    # --- are the recommendations sensible?
    parts.append("<h2>Are the recommendations sensible?</h2>")
    names = found.get("candidates") or {}

    def named(ids, most=15):
        shown = [f"{c} ({describe(c, names, 50)})" if describe(c, names) else c
                 for c in ids[:most]]
        return ", ".join(shown) + (f", ... ({len(ids) - most} more)" if len(ids) > most else "")

    for label, top in found.get("queries") or []:
        parts.append(f"<h3>Query <code>{e(top['query'])}</code>: {e(label)}</h3>"
                     f"<p>Its history before the {e(top['split'])} split ({e(top['already_had'])}"
                     f" items, excluded from the ranking): {e(named(top['had']) or 'none')}.</p>"
                     f"<p>What it actually had in {e(top['split'])}: "
                     f"{e(named(top['held_out']) or 'nothing')}. Hits are shaded.</p>")
        parts.append("<table><tr><th>rank</th><th>candidate</th><th>name and attributes</th>"
                     "<th>score</th></tr>" + "".join(
                         f"<tr class='{'hit' if r['hit'] else ''}'><td class='n'>{r['rank']}"
                         f"</td><td>{e(r['candidate'])}</td><td>"
                         f"{e(describe(r['candidate'], names))}</td><td class='n'>"
                         f"{r['score']:.3f}</td></tr>" for r in top["top"]) + "</table>")
    near = found.get("nearest")
    if near:
        parts.append(f"<p>Nearest candidates of <code>{e(near['candidate'])}</code> "
                     f"({e(describe(near['candidate'], names) or 'not in the candidate table')};"
                     " the most frequent in training unless --candidate chose it), by cosine "
                     "of the candidate embeddings:</p>"
                     + table(["rank", "candidate", "name and attributes", "cosine"],
                             [[r["rank"], r["candidate"], describe(r["candidate"], names),
                               f"{r['cosine']:.3f}"] for r in near["rows"]], numeric=(0, 3)))
    if not found.get("towers"):
        parts.append("<p>No towers were saved by this run, so no embeddings to look at.</p>")

    if run.get("search"):
        parts.append(search_section(run["search"], metrics, e, table))

    # --- what code ran?
    parts.append("<h2>What code ran</h2>")
    parts.append(f"<p>Modules: <code>{e(run['module'])}</code> and its Transform sibling; "
                 "they are the frozen config plus this library's tested sources.</p>")
    t, m = spec["training"], spec["model"]
    parts.append(table(["optimizer", "learning rate", "epochs", "batch", "clipping", "softmax",
                        "temperature", "output dim"],
                       [[t["optimizer"], t["learning_rate"], t["epochs"], t["batch_size"],
                         f"{t['clipping']} {t['clip_value']}", metrics.get("softmax", m["softmax"]),
                         m["temperature"], m["output_dim"]]]))
    rows = []
    for tower in ("query_tower", "candidate_tower"):
        for f in spec[tower]["features"]:
            size = (found.get("parameters") or {}).get(tower, {}).get("features", {}).get(
                f["name"], "")
            rows.append([tower, f["name"], f["kind"], f.get("column") or ", ".join(
                f.get("columns") or []), f"{size:,}" if size != "" else ""])
    parts.append(table(["tower", "feature", "kind", "column", "embedding parameters"], rows,
                       numeric=(4,)))
    if found.get("parameters"):
        parts.append(table(["tower", "parameters", "dense layers", "layers"], [
            [t, f"{p['total']:,}", f"{p['dense']:,}", str(spec[t]["layers"])]
            for t, p in found["parameters"].items()], numeric=(1, 2)))
    vocabs = found.get("vocabularies") or {}
    if vocabs:
        parts.append("<p>Vocabularies (most frequent first):</p>" + table(
            ["vocabulary", "size", "most frequent"],
            [[name, v["size"], ", ".join(v["top"])] for name, v in vocabs.items()],
            numeric=(1,)))
    if found.get("sample"):
        keys = list(found["sample"][0])
        raw = _raw_columns(spec, found["sample"], names)
        parts.append("<p>Transformed training examples: ids and tokens decoded from their "
                     "vocabularies; a candidate numeric feature as <i>raw &rarr; transformed"
                     "</i> (raw from the candidate table); other numbers as transformed:</p>"
                     + table(keys, [[raw.get((n, k)) or _short(row[k]) for k in keys]
                                    for n, row in enumerate(found["sample"])]))
    return "".join(parts)


def search_section(search: dict, metrics: dict, e: Callable, table: Callable) -> str:
    """The Tuner step's trials: the table `twotower tune` prints, the trained one marked."""
    tuned = metrics.get("tuned") or {}
    trials = search["trials"]
    best = next((t["trial"] for t in trials if tuned and t["values"] == tuned), None)
    objective = search.get("objective") or "objective"
    header, cells = trial_rows(trials, objective, best)
    about = search.get("slice") or {}
    where = (f"{slice_words(about)} ({about['slice_first']} to "
             f"{about['slice_last']}, {about['slice_rows']:,} rows, {about['queries']:,} "
             f"queries); trials fit on the {about['fit_rows']:,} rows before it, eval and "
             "test never read" if about else "the validation slice")
    numeric = tuple(range(1, len(header) - 1))
    baselines = "".join(f", {name} {value:.4f}" for name, value in sorted(
        search["baselines"].items(), key=lambda x: -x[1]))
    return ("<h2>Hyperparameter search</h2>"
            f"<p>{e(len(trials))} trials of the Tuner step, each scored at {e(objective)} on "
            f"{e(where)}. The Trainer trained the values marked *"
            + (f"; the baselines on the same slice: {e(baselines[2:])}" if baselines else "")
            + ".</p>" + table(header, cells, numeric=numeric))


def _raw_columns(spec, sample, names) -> Dict[tuple, str]:
    """``{(row, feature): 'raw → transformed'}`` for the candidate tower's numeric features,
    the raw value read from the candidate table by the row's candidate id."""
    out = {}
    numeric = [f for f in spec["candidate_tower"]["features"] if kind_of(f).value_type == FLOAT]
    for n, row in enumerate(sample):
        record = names.get(str(row.get("candidate_id"))) or {}
        for f in numeric:
            value = record.get(f.get("column") or "")
            if value not in (None, "") and f["name"] in row:
                out[(n, f["name"])] = f"{value} \u2192 {_short(row[f['name']])}"
    return out


def metric_names(values) -> List[str]:
    """recall_at_k then ndcg_at_k, each by k (not in text order: 10, 100, 50)."""
    found = [n for n in values if n.startswith(("recall_at_", "ndcg_at_"))]
    return sorted(found, key=lambda n: (not n.startswith("recall"), int(n.rsplit("_", 1)[1])))


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "|".join(str(v) for v in value[:8]) + ("|..." if len(value) > 8 else "")
    return str(value)
