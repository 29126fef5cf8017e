"""`twotower backtest`: one config judged on several eval windows back in time.

One eval window can flatter or punish a choice (on a purchase log, one week
can be dominated by a single product). ``--windows K`` runs the pipeline up to
the Trainer K times, as ``<pipeline.name>-w0`` ... ``-w<K-1>`` under the same
root: window ``w`` holds out the ``eval_fraction`` slice of rows that lies
``w`` slices before the end of the data and leaves the later rows out
(``data.split.window``), and the Trainer scores it against the whole catalog
beside popularity on the same queries, and beside the strongest of the baselines
(popularity, recent popularity, EASE). The table shows each window and the
mean, so a choice can be trusted on more than one window before the test
split (or production) is looked at. Windows are independent pipelines: a
rerun with caching on reuses every component whose inputs did not change.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, List

from pipelines.build.builder import SELECTION
from pipelines.cli.commands.common import config_from, output_mode
from pipelines.config.schema import Config, ConfigError, apply_overrides
from pipelines.inspect.verdict import ORDER, SHORT, baselines
from pipelines.runners.local import pipeline_dir, run_local
from pipelines.runners.lock import holding
from pipelines.terminal.console import Console

MAX_WINDOWS = 10


def window_configs(cfg: Config, windows: int) -> List[Config]:
    """The config of each window: ``data.split.window`` w, its own pipeline name, no refit.

    Raises:
      ConfigError: not a time split, too many windows, or a name too long for a suffix.
    """
    split = cfg.data.split
    if not 1 <= windows <= MAX_WINDOWS:
        raise ConfigError([("--windows", f"must be in 1..{MAX_WINDOWS}")])
    if split.method not in ("time", "auto") or not cfg.data.timestamp or split.test_fraction:
        raise ConfigError([("data.split.method", "a backtest moves a time split's eval window "
                            "back: use method: time (with data.timestamp) and no test_fraction")])
    if windows * split.eval_fraction >= 1.0:
        raise ConfigError([("--windows", f"{windows} windows of data.split.eval_fraction "
                            f"{split.eval_fraction:g} leave no training rows")])
    if len(cfg.pipeline.name) > 60:
        raise ConfigError([("pipeline.name", "at most 60 characters for a backtest (each "
                            "window adds -w<n>)")])
    out = []
    for w in range(windows):
        raw = apply_overrides(cfg.to_dict(), [
            "data.split.method=time", f"data.split.window={w}",
            f"pipeline.name={cfg.pipeline.name}-w{w}", "training.refit=false"])
        out.append(Config.from_dict(raw))
    return out


def window_row(window: int, report: dict, metrics: dict) -> Dict[str, object]:
    """One window's line of the table: its eval period and each recall beside popularity."""
    evaluation = metrics["evaluation"]
    recalls = {k: (evaluation["model"][f"recall_at_{k}"],
                   evaluation["popularity"][f"recall_at_{k}"]) for k in metrics["top_k"]}

    found = baselines(evaluation)
    return {"window": window, "eval_from": report.get("time_cut"),
            "eval_until": report.get("window_end"), "queries": evaluation["queries"],
            "recall": recalls,
            "baselines": {name: {k: values.get(f"recall_at_{k}") for k in metrics["top_k"]}
                          for name, values in found.items()}}


def table(rows: List[dict]) -> List[str]:
    """The windows and their mean, each recall as model / popularity (ratio)."""
    ks = sorted(rows[0]["recall"])

    def day(seconds):
        return time.strftime("%Y-%m-%d", time.gmtime(seconds)) if seconds is not None else "end"

    def cell(model, popular):
        ratio = f"{model / popular:.2f}x" if popular else "-"
        return f"{model:.4f} / {popular:.4f} ({ratio})"

    first = ks[0]

    def best(found):
        """The strongest baseline at the first cut-off: (name, value)."""
        names = [n for n in ORDER if found.get(n, {}).get(first) is not None]
        name = max(names, key=lambda n: (found[n][first], -ORDER.index(n)))
        return name, found[name][first]

    def best_cell(model, found):
        if not found:
            return "-"
        name, value = best(found)
        ratio = f"{model / value:.2f}x" if value else "-"
        return f"{SHORT[name]} {value:.4f} ({ratio})"

    head = f"{'window':<8}{'eval from':<12}{'until':<12}{'queries':>8}  " + "  ".join(
        f"{'recall@' + str(k) + ' model / popularity':<32}" for k in ks) + (
        f"  strongest baseline at recall@{first} (model / it)")
    lines = [head]
    for r in rows:
        lines.append(f"{r['window']:<8}{day(r['eval_from']):<12}{day(r['eval_until']):<12}"
                     f"{r['queries']:>8}  " + "  ".join(f"{cell(*r['recall'][k]):<32}"
                                                         for k in ks)
                     + "  " + best_cell(r["recall"][first][0], r.get("baselines") or {}))
    means = {k: tuple(sum(r["recall"][k][i] for r in rows) / len(rows) for i in (0, 1))
             for k in ks}
    shared = [n for n in ORDER if all(n in (r.get("baselines") or {}) for r in rows)]
    mean_baselines = {n: {first: sum(r["baselines"][n][first] for r in rows) / len(rows)}
                      for n in shared}
    lines.append(f"{'mean':<32}{'':>8}  " + "  ".join(f"{cell(*means[k]):<32}" for k in ks)
                 + "  " + best_cell(means[first][0], mean_baselines))
    return lines


def cmd_backtest(args) -> int:
    cfg = config_from(args)
    configs = window_configs(cfg, args.windows)
    folder = pipeline_dir(cfg)
    console = Console(os.path.join(folder, "logs"), output_mode(args), name="backtest")
    rows = []
    try:
        with console.capture(list(SELECTION[:SELECTION.index("Trainer") + 1])):
            console.say(f"full log: {console.log_path}")
            for w, window_cfg in enumerate(configs):
                console.say(f"== window {w} of {len(configs)}: pipeline "
                            f"{window_cfg.pipeline.name}")
                console.restart_count()
                root = pipeline_dir(window_cfg)
                with holding(root, window_cfg.pipeline.name):
                    res = run_local(window_cfg, log=console.say, root=root, until="Trainer")
                metrics = res.get("metrics") or {}
                if metrics.get("status") != "completed":
                    raise RuntimeError(f"window {w}: training ended with status "
                                       f"{metrics.get('status')!r} ({res['metrics_file']})")
                with open(os.path.join(root, "input", "prepare_report.json"),
                          encoding="utf-8") as handle:
                    report = json.load(handle)
                rows.append(window_row(w, report, metrics))
    except ConfigError:
        raise
    except Exception as exc:
        return console.failed("backtest", exc)
    lines = [f"backtest: {len(rows)} eval windows of {cfg.data.split.eval_fraction:g} of the "
             "rows each, the newest first; full-catalog recall on each window's queries, "
             "without what each already had"] + table(rows)
    out = os.path.join(folder, "backtest.json")
    with open(out + ".partial", "w", encoding="utf-8") as handle:
        json.dump({"config_fingerprint": cfg.fingerprint(), "windows": rows}, handle, indent=2)
    os.replace(out + ".partial", out)
    for line in lines + [f"written: {out}"]:
        console.result(line)
    return 0
