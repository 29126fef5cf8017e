"""`make bench`: the project against its peers on the shared MovieLens protocol.

One go, on ../shared/data/ml-latest-small with ../shared/bench (never copied):
  1. split.py movielens-latest -> OUT/split/{train,test,items}.csv
  2. `twotower run` with examples/movielens_bench.yaml on train.csv (timed)
  3. `twotower recommend` for every test user, k=100 (timed)
  4. baselines.py popularity, ease, tfrs-tutorial on the same split
  5. score.py on each system's recommendations
  6. single-query serving latency (p50/p99 over the full catalog)
Prints one table with every system's figures and the project's ratios to
each, and writes OUT/bench.json. OUT defaults to runs/bench (BENCH_OUT).
"""
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.environ.get("SHARED", os.path.join(ROOT, "..", "shared")))
BENCH = os.path.join(SHARED, "bench")
DATA = os.path.join(SHARED, "data", "ml-latest-small")
OUT = os.path.abspath(os.environ.get("BENCH_OUT", os.path.join(ROOT, "runs", "bench")))
CONFIG = os.path.join(ROOT, "examples", "movielens_bench.yaml")
BASELINES = ("popularity", "ease", "tfrs-tutorial")
METRICS = ("recall@10", "recall@20", "recall@100", "ndcg@10", "ndcg@20", "hitrate@20",
           "coverage@10")


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
    signature = tf.saved_model.load(model_dir).signatures["serving_default"]
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
            "catalog": int(tf.saved_model.load(model_dir).candidate_ids.shape[0])}


def main():
    if not os.path.isdir(DATA) or not os.path.isdir(BENCH):
        sys.exit(f"bench: needs {DATA} and {BENCH} (the shared data and benchmark protocol)")
    split = os.path.join(OUT, "split")
    os.makedirs(OUT, exist_ok=True)
    run([sys.executable, os.path.join(BENCH, "split.py"), "movielens-latest", DATA, split])
    train, items = os.path.join(split, "train.csv"), os.path.join(split, "items.csv")
    test = os.path.join(split, "test.csv")
    results = {}

    root = os.path.join(OUT, "pipeline")
    cli = [sys.executable, "-m", "pipelines"]
    _, _, pipeline_seconds = run(cli + ["run", "--config", CONFIG, "--set", f"data.path={train}",
                                        "--set", f"data.candidates.path={items}",
                                        "--set", f"pipeline.root={root}"])
    recs = os.path.join(OUT, "twotower.csv")
    _, _, recommend_seconds = run(cli + ["recommend", "--model", root, "--users", test,
                                         "--k", "100", "--out", recs])
    results["twotower"] = score(split, recs)
    sys.path.insert(0, ROOT)
    from pipelines.local import results as run_results

    metrics = run_results(root)["metrics"]
    speed = {"twotower": metrics["examples_per_second"]}

    for name in BASELINES:
        path = os.path.join(OUT, f"{name}.csv")
        _, err, _ = run([sys.executable, os.path.join(BENCH, "baselines.py"), name, split, path])
        found = re.search(r"\(([0-9.]+) examples/s\)", err)
        if found:
            speed[name] = float(found.group(1))
        results[name] = score(split, path)

    with open(test, encoding="utf-8") as handle:
        users = sorted({line.split(",")[0] for line in handle.read().splitlines()[1:]})
    latency = serving_latency(run_results(root)["serving_model"], train, users)
    report = {"results": results, "pipeline_seconds": pipeline_seconds,
              "recommend_seconds": recommend_seconds, "examples_per_second": speed,
              "serving_latency": latency, "training": {
                  k: metrics.get(k) for k in ("softmax", "train_rows", "candidates",
                                              "fit_seconds", "learning_rate")}}
    with open(os.path.join(OUT, "bench.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, sort_keys=True)
    print(table(report))


def table(report):
    results = report["results"]
    ours = results["twotower"]
    lines = ["", "ml-latest-small, shared protocol (per-user last 20% test), "
             f"{ours['test_users']} test users", "",
             "| system | " + " | ".join(METRICS) + " |",
             "|---" * (len(METRICS) + 1) + "|"]
    for name in ("twotower",) + BASELINES:
        lines.append(f"| {name} | " + " | ".join(f"{results[name][m]:.4f}" for m in METRICS)
                     + " |")
    lines += ["", "| twotower ÷ | " + " | ".join(METRICS[:4]) + " |",
              "|---" * 5 + "|"]
    for name in BASELINES:
        ratios = [ours[m] / results[name][m] if results[name][m] else float("inf")
                  for m in METRICS[:4]]
        lines.append(f"| {name} | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    bar = (ours["recall@20"] >= 1.5 * results["tfrs-tutorial"]["recall@20"]
           and ours["recall@20"] >= 1.2 * results["popularity"]["recall@20"])
    goal = ours["recall@20"] >= results["ease"]["recall@20"]
    speed = report["examples_per_second"]
    latency = report["serving_latency"]
    lines += ["",
              f"bar (recall@20 >= 1.5x tfrs-tutorial and >= 1.2x popularity): "
              f"{'MET' if bar else 'NOT MET'}; goal (>= EASE): {'MET' if goal else 'NOT MET'}",
              f"full pipeline (ExampleGen -> Pusher) wall time: {report['pipeline_seconds']:.0f} s"
              f"; recommend for all test users: {report['recommend_seconds']:.0f} s",
              "training examples/s: twotower " + f"{speed['twotower']:.0f}" +
              (f", tfrs-tutorial {speed['tfrs-tutorial']:.0f}" if "tfrs-tutorial" in speed
               else ""),
              f"serving latency, one query over {latency['catalog']} candidates: "
              f"p50 {latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
