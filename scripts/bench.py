"""`make bench`: the project against its peers on the shared benchmark protocols.

    scripts/bench.py [--dataset movielens|ta-feng|complete-journey|all] [--no-cache]

For each dataset, in one go, on ../shared (never copied):
  1. split.py -> OUT/<dataset>/split/{train,test,items}.csv (ml-latest-small: each user's
     last 20% is test; Ta-Feng and The Complete Journey: one global time cut, the last 10% is
     test). The Complete Journey is a public log fetched outside the repository
     (scripts/fetch_public_log.py); `--dataset all` skips it, in one line, until it is fetched.
  2. `twotower run` with examples/<dataset>_bench.yaml on train.csv (timed, per component)
  3. `twotower recommend` for every test user, k=100 (timed)
  4. baselines.py popularity, ease, tfrs-tutorial on the same split
  5. score.py on each system's recommendations
  6. single-query serving latency (p50/p99 over the full catalog)
It prints one table per dataset with every system's figures and the project's ratios to
each, and writes OUT/bench.json. OUT defaults to runs/bench (BENCH_OUT).

EASE's item-item inverse on Ta-Feng's 11k items takes about 40 minutes on 2 cores, so a
baseline's recommendations are cached under OUT/cache/, keyed by the sha256 of the split's
files and of baselines.py: the same split and the same baseline code give the same EASE
(it is deterministic), so it is computed once. `--no-cache` recomputes; popularity and
tfrs-tutorial are always measured in the same run.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

from fetch_public_log import LOGS, converted_path, fetch_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.environ.get("SHARED", os.path.join(ROOT, "..", "shared")))
BENCH = os.path.join(SHARED, "bench")
OUT = os.path.abspath(os.environ.get("BENCH_OUT", os.path.join(ROOT, "runs", "bench")))
BASELINES = ("popularity", "ease", "tfrs-tutorial")
CACHED = ("ease",)
METRICS = ("recall@10", "recall@20", "recall@100", "ndcg@10", "ndcg@20", "hitrate@20",
           "coverage@10")
DATASETS = {
    "movielens": {
        "source": "movielens-latest", "data": os.path.join(SHARED, "data", "ml-latest-small"),
        "config": os.path.join(ROOT, "examples", "movielens_bench.yaml"),
        "title": "ml-latest-small, shared protocol (per-user last 20% test)"},
    "ta-feng": {
        "source": "ta-feng", "data": os.path.join(SHARED, "data", "ta-feng", "ta_feng.csv.zip"),
        "config": os.path.join(ROOT, "examples", "ta_feng_bench.yaml"),
        "title": "Ta-Feng grocery purchases, shared protocol (global time cut, last 10% test)",
        # rolling windows (split.py --window): judged on the mean, each with its baselines;
        # EASE over the 4,000 most-bought items (minutes, not an hour; within 0.2% of EASE
        # over every item on window 0, per the protocol's README)
        "windows": [0, 1, 2, 3, 4, 5], "env": {"EASE_MAX_ITEMS": "4000"},
        # the TFRS tutorial (for training speed and quality) on window 0 only
        "tutorial_windows": [0]},
    # a public log, fetched outside the repository (scripts/fetch_public_log.py): when it is
    # not there, `make bench` skips it with one line saying the fetch command
    "complete-journey": {
        "source": LOGS["complete-journey"]["split_source"],
        "data": converted_path("complete-journey"),
        "fetch": fetch_command("complete-journey"),
        "config": os.path.join(ROOT, "examples", "complete_journey_bench.yaml"),
        "title": "The Complete Journey (84.51°) grocery purchases, shared protocol (global time "
                 "cut, last 10% test)",
        # each window about five weeks of late 2017 (0: 26 Nov-1 Jan, 1: 21 Oct-26 Nov,
        # 2: 13 Sep-21 Oct); EASE over the 4,000 most-bought of its 68k products
        "windows": [0, 1, 2], "env": {"EASE_MAX_ITEMS": "4000"},
        # the TFRS tutorial's speed is measured on Ta-Feng; not repeated over 68k products
        "tutorial_windows": []},
}


def run(args, **kwargs):
    """Runs a command, echoing it; returns (stdout, stderr, seconds); exits on failure."""
    print("$ " + " ".join(args), flush=True)
    started = time.time()
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, **kwargs)
    seconds = time.time() - started
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-5000:])
        sys.exit(f"bench: {args[0]} {args[1] if len(args) > 1 else ''} failed "
                 f"(exit {done.returncode})")
    return done.stdout, done.stderr, seconds


def score(split, recs):
    out, _, _ = run([sys.executable, os.path.join(BENCH, "score.py"), split, recs])
    return json.loads(out.strip().splitlines()[-1])


def checksum(paths):
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def baseline(name, split, out_dir, use_cache, env=None):
    """Runs (or reuses) one baseline; returns (recs path, {'seconds', 'cached', ...}).

    ``env``: extra environment (EASE_MAX_ITEMS), part of the cache key."""
    path = os.path.join(out_dir, f"{name}.csv")
    env = dict(env or {})
    key = checksum([os.path.join(split, f) for f in ("train.csv", "test.csv", "items.csv")]
                   + [os.path.join(BENCH, "baselines.py")])[:16]
    if env:
        key += "-" + hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:8]
    cache = os.path.join(OUT, "cache", key)
    cached, meta_path = os.path.join(cache, f"{name}.csv"), os.path.join(cache, f"{name}.json")
    if use_cache and name in CACHED and os.path.exists(cached) and os.path.exists(meta_path):
        shutil.copyfile(cached, path)
        with open(meta_path, encoding="utf-8") as handle:
            return path, dict(json.load(handle), cached=True)
    _, err, seconds = run([sys.executable, os.path.join(BENCH, "baselines.py"), name, split,
                           path], env=dict(os.environ, **env))
    meta = {"seconds": seconds, "measured": time.strftime("%Y-%m-%d"), "cached": False,
            "env": env}
    found = re.search(r"\(([0-9.]+) examples/s\)", err)
    if found:
        meta["examples_per_second"] = float(found.group(1))
    if name in CACHED:
        os.makedirs(cache, exist_ok=True)
        shutil.copyfile(path, cached + ".partial")
        os.replace(cached + ".partial", cached)
        with open(meta_path, "w", encoding="utf-8") as handle:
            json.dump(meta, handle)
    return path, meta


def serving_latency(model_dir, history, users, repeats=300):
    """p50/p99 milliseconds of one `serving_default` call for one query (history included)."""
    import numpy as np

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    from pipelines.recommend import model_config, query_histories, serving_values

    cfg = model_config(model_dir)
    with open(os.path.join(model_dir, "assets.extra", "serving_inputs.json"),
              encoding="utf-8") as handle:
        described = json.load(handle)
    seen = query_histories(cfg, history, set(users))
    model = tf.saved_model.load(model_dir)
    signature = model.signatures["serving_default"]
    requests = []
    for user in users:
        values = serving_values(cfg, described, user, seen.get(user))
        requests.append({d["input"]: tf.constant([values[d["input"]]], tf.as_dtype(d["dtype"]))
                         for d in described})
    for request in requests[:20]:  # warm-up
        signature(**request)
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        signature(**requests[i % len(requests)])["candidate_ids"].numpy()
        times.append((time.perf_counter() - started) * 1000.0)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "catalog": int(model.candidate_ids.shape[0])}


def bench(name, use_cache, only=None, required=True):
    """One dataset: its split (or each rolling window's), every system, the scores.

    ``only``: the rolling windows to run now; every other window's report is read back from
    its ``window-N/bench.json`` of an earlier run (marked ``reused``) when there is one.
    ``required``: False under ``--dataset all``, where a public log that was not fetched is
    skipped (one line, and None) instead of failing the run."""
    spec = DATASETS[name]
    if "fetch" in spec and not os.path.exists(spec["data"]):
        if not required:
            print(f"bench: skipping {name}: {spec['data']} is not fetched (run "
                  f"`{spec['fetch']}`, then `make bench DATASET={name}`)", flush=True)
            return None
        sys.exit(f"bench: {name} needs {spec['data']}: run `{spec['fetch']}` first")
    if not os.path.exists(spec["data"]) or not os.path.isdir(BENCH):
        sys.exit(f"bench: needs {spec['data']} and {BENCH} (the shared data and protocol)")
    if "windows" not in spec:
        return bench_split(name, spec, os.path.join(OUT, name), None, use_cache)
    reports = []
    for w in spec["windows"]:
        out = os.path.join(OUT, name, f"window-{w}")
        if only is None or w in only:
            reports.append(bench_split(name, spec, out, w, use_cache))
        elif os.path.exists(os.path.join(out, "bench.json")):
            with open(os.path.join(out, "bench.json"), encoding="utf-8") as handle:
                reports.append(dict(json.load(handle), reused=True))
    report = {"dataset": name, "title": spec["title"], "windows": reports}
    with open(os.path.join(OUT, name, "bench.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, sort_keys=True)
    return report


def bench_split(name, spec, out, window, use_cache):
    """Split (``window``: split.py --window), pipeline, recommend, baselines, scores."""
    split = os.path.join(out, "split")
    os.makedirs(out, exist_ok=True)
    run([sys.executable, os.path.join(BENCH, "split.py"), spec["source"], spec["data"], split]
        + (["--window", str(window)] if window is not None else []))
    train, items = os.path.join(split, "train.csv"), os.path.join(split, "items.csv")
    test = os.path.join(split, "test.csv")
    results, extra = {}, {}

    sys.path.insert(0, ROOT)
    from pipelines.config.schema import load_config

    pipeline_name = load_config(spec["config"]).pipeline.name
    runs_root = os.path.join(out, "pipeline")
    root = os.path.join(runs_root, pipeline_name)  # <pipeline.root>/<pipeline.name>
    cli = [sys.executable, "-m", "pipelines"]
    _, _, pipeline_seconds = run(cli + ["run", "--config", spec["config"],
                                        "--set", f"data.path={train}",
                                        "--set", f"data.candidates.path={items}",
                                        "--set", f"pipeline.root={runs_root}"])
    recs = os.path.join(out, "twotower.csv")
    # score.py is a program: ids exactly as written (no spreadsheet escaping); the file is
    # this script's own output, replaced on each run
    _, _, recommend_seconds = run(cli + ["recommend", "--model", root, "--users", test,
                                         "--k", "100", "--out", recs, "--force",
                                         "--no-escape-formulas"])
    results["twotower"] = score(split, recs)
    from pipelines.build.builder import paths
    from pipelines.runners.local import component_seconds, results as run_results

    found = run_results(root)
    metrics = found["metrics"]
    speed = {"twotower": metrics["examples_per_second"]}
    systems = [b for b in BASELINES if b != "tfrs-tutorial" or window in
               spec.get("tutorial_windows", [window])]
    for system in systems:
        path, meta = baseline(system, split, out, use_cache,
                              spec.get("env") if system == "ease" else None)
        extra[system] = meta
        if "examples_per_second" in meta:
            speed[system] = meta["examples_per_second"]
        results[system] = score(split, path)

    latency = None
    if window in (None, 0):
        with open(test, encoding="utf-8") as handle:
            users = sorted({line.split(",")[0] for line in handle.read().splitlines()[1:]})
        latency = serving_latency(found["serving_model"], train, users)
    report = {"dataset": name, "title": spec["title"], "window": window, "results": results,
              "measured": time.strftime("%Y-%m-%d %H:%M"),
              "pipeline_seconds": pipeline_seconds, "recommend_seconds": recommend_seconds,
              "components": component_seconds(paths(root)["metadata"], pipeline_name),
              "examples_per_second": speed, "baselines": extra, "serving_latency": latency,
              "training": {k: metrics.get(k) for k in (
                  "softmax", "train_rows", "candidates", "fit_seconds", "learning_rate",
                  "best_epoch", "demand_prior")},
              "refit": (found.get("refit") or {}).get("refit"),
              "evaluation": metrics.get("evaluation")}
    with open(os.path.join(out, "bench.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, sort_keys=True)
    return report


def window_table(report):
    """Rolling windows: recall@20 (and @100) per window beside popularity and EASE, the
    means, and the issue's targets."""
    rows = report["windows"]
    lines = ["", f"{report['title']}: rolling windows (split.py --window)", "",
             "| window | test users | twotower R@20 | popularity R@20 | EASE R@20 | ÷ popularity "
             "| ÷ EASE | twotower R@100 | popularity R@100 | EASE R@100 | pipeline s |",
             "|---" * 11 + "|"]
    for r in rows:
        t, p, e = (r["results"][k] for k in ("twotower", "popularity", "ease"))
        when = f" (run {r.get('measured', 'earlier')})" if r.get("reused") else ""
        lines.append(f"| {r['window']}{when} | {t['test_users']} | {t['recall@20']:.4f} | "
                     f"{p['recall@20']:.4f} | {e['recall@20']:.4f} | "
                     f"{t['recall@20'] / p['recall@20']:.2f}x | "
                     f"{t['recall@20'] / e['recall@20']:.2f}x | {t['recall@100']:.4f} | "
                     f"{p['recall@100']:.4f} | {e['recall@100']:.4f} | "
                     f"{r['pipeline_seconds']:.0f} |")
    mean = {k: sum(r["results"][k]["recall@20"] for r in rows) / len(rows)
            for k in ("twotower", "popularity", "ease")}
    best = max(mean["popularity"], mean["ease"])
    worst = min(r["results"]["twotower"]["recall@20"] / r["results"]["popularity"]["recall@20"]
                for r in rows)
    lines += [f"| mean | | {mean['twotower']:.4f} | {mean['popularity']:.4f} | "
              f"{mean['ease']:.4f} | | | | | | |", "",
              f"mean recall@20 {mean['twotower'] / best:.2f}x the better baseline mean (goal "
              f">= 1.1x); the lowest window {worst:.2f}x popularity (goal >= 0.9x)"
              + ("" if len(rows) == len(DATASETS[report["dataset"]]["windows"]) else
                 f"; over {len(rows)} of {len(DATASETS[report['dataset']]['windows'])} windows "
                 "(the others have no report yet)")]
    for r in rows:
        if "tfrs-tutorial" in r["results"]:
            tutorial = r["results"]["tfrs-tutorial"]
            lines.append(f"window {r['window']}: tfrs-tutorial recall@20 "
                         f"{tutorial['recall@20']:.4f}, recall@100 {tutorial['recall@100']:.4f}")
        lines.append(f"window {r['window']}: training examples/s " + ", ".join(
            f"{k} {v:.0f}" for k, v in r["examples_per_second"].items())
            + f"; pipeline {r['pipeline_seconds']:.0f} s ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in r["components"].items())
            + f"); recommend {r['recommend_seconds']:.0f} s")
        latency = r.get("serving_latency")
        if latency:
            lines.append(f"window {r['window']}: serving latency, one query over "
                         f"{latency['catalog']} candidates: p50 {latency['p50_ms']:.2f} ms, "
                         f"p99 {latency['p99_ms']:.2f} ms")
    return "\n".join(lines)


def table(report):
    results = report["results"]
    ours = results["twotower"]
    lines = ["", f"{report['title']}, {ours['test_users']} test users", "",
             "| system | " + " | ".join(METRICS) + " |",
             "|---" * (len(METRICS) + 1) + "|"]
    for name in ("twotower",) + BASELINES:
        lines.append(f"| {name} | " + " | ".join(f"{results[name][m]:.4f}" for m in METRICS)
                     + " |")
    lines += ["", "| twotower ÷ | " + " | ".join(METRICS[:4]) + " |", "|---" * 5 + "|"]
    for name in BASELINES:
        ratios = [ours[m] / results[name][m] if results[name][m] else float("inf")
                  for m in METRICS[:4]]
        lines.append(f"| {name} | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    ease, pop = results["ease"], results["popularity"]
    cutoffs = ("recall@10", "recall@20", "recall@100", "ndcg@10", "ndcg@20")
    below = [m for m in cutoffs if ours[m] < pop[m]]
    speed, latency = report["examples_per_second"], report["serving_latency"]
    components = ", ".join(f"{k} {v:.0f} s" for k, v in report["components"].items())
    cached = [f"{k} (cached, measured {v['measured']} in {v['seconds']:.0f} s)"
              for k, v in report["baselines"].items() if v.get("cached")]
    lines += ["",
              f"quality: recall@20 {ours['recall@20'] / ease['recall@20']:.2f}x EASE (goal "
              f">= 1.1x), recall@100 {ours['recall@100'] / ease['recall@100']:.2f}x EASE (goal "
              f">= 1x), below popularity at: {', '.join(below) or 'none'}",
              f"full pipeline (data preparation -> Pusher) wall time: "
              f"{report['pipeline_seconds']:.0f} s ({components}); recommend for all test "
              f"users: {report['recommend_seconds']:.0f} s",
              "training examples/s: " + ", ".join(f"{k} {v:.0f}" for k, v in speed.items()),
              f"serving latency, one query over {latency['catalog']} candidates: "
              f"p50 {latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms"]
    if cached:
        lines.append("reused: " + "; ".join(cached))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS) + ["all"], default="all")
    parser.add_argument("--no-cache", action="store_true", help="recompute cached baselines")
    parser.add_argument("--windows", default=None,
                        help="rolling windows to run now, e.g. 2,3 (default: every window); "
                             "the others are read back from an earlier run's window-N/bench.json")
    args = parser.parse_args(argv)
    only = None if args.windows is None else {int(w) for w in args.windows.split(",")}
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    reports = [bench(name, not args.no_cache, only, required=args.dataset != "all")
               for name in names]
    reports = [r for r in reports if r is not None]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "bench.json"), "w", encoding="utf-8") as handle:
        json.dump({r["dataset"]: r for r in reports}, handle, indent=2, sort_keys=True)
    for report in reports:
        print(window_table(report) if "windows" in report else table(report))


if __name__ == "__main__":
    main()
