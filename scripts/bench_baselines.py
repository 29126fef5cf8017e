"""The pipeline's baselines (trainer/baselines.py) at Ta-Feng scale: cost, and agreement with
the shared benchmark's own popularity and EASE on the same split.

    scripts/bench_baselines.py [--window N] [--memory-mb 512]

Splits Ta-Feng with ../shared/bench/split.py (window N), fits the pipeline's baselines on
train.csv exactly as the Trainer does (``trainer.baselines.Baselines``: every seen row, EASE
over the most-bought items the memory budget fits) and ranks every test user against the
whole train catalog without what they had; then runs the shared ``baselines.py popularity``
and ``baselines.py ease`` (EASE_MAX_ITEMS set to the same item count) and ``score.py`` on the
same split. Prints recall@20 of each beside the other and the seconds the pipeline's
baselines took. Nothing is written into the repository (OUT: runs/bench-baselines).
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from trainer.baselines import Baselines, ease_items  # noqa: E402

SHARED = os.path.abspath(os.environ.get("SHARED", os.path.join(ROOT, "..", "shared")))
BENCH = os.path.join(SHARED, "bench")
OUT = os.path.abspath(os.environ.get("BENCH_OUT", os.path.join(ROOT, "runs",
                                                               "bench-baselines")))


def read(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return [(r["user_id"], r["item_id"], int(r["timestamp"]))
                for r in csv.DictReader(handle)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=1)
    parser.add_argument("--memory-mb", type=int, default=512)
    parser.add_argument("--dataset", default="ta-feng")
    args = parser.parse_args(argv)
    source = {"ta-feng": os.path.join(SHARED, "data", "ta-feng", "ta_feng.csv.zip"),
              "movielens-latest": os.path.join(SHARED, "data", "ml-latest-small")}[args.dataset]
    split = os.path.join(OUT, f"{args.dataset}-w{args.window}")
    os.makedirs(split, exist_ok=True)
    extra = ["--window", str(args.window)] if args.dataset == "ta-feng" else []
    subprocess.run([sys.executable, os.path.join(BENCH, "split.py"), args.dataset, source,
                    split] + extra, check=True, stdout=subprocess.DEVNULL)
    train, test = read(os.path.join(split, "train.csv")), read(os.path.join(split, "test.csv"))
    items = sorted({i for _, i, _ in train})
    position = {item: n for n, item in enumerate(items)}
    started = time.time()
    queries = np.asarray([u for u, _, _ in train], dtype=object)
    positions = np.asarray([position[i] for _, i, _ in train], dtype=np.int64)
    times = np.asarray([t for _, _, t in train], dtype=np.int64)
    had, truth = {}, {}
    for u, i, _ in train:
        had.setdefault(u, set()).add(position[i])
    for u, i, _ in test:
        truth.setdefault(u, set()).add(position[i])
    users = sorted(truth)
    base = Baselines(queries, positions, times, len(items),
                     {"item_item_memory_mb": args.memory_mb})
    found = base.evaluate([np.asarray(sorted(truth[u])) for u in users],
                          [np.asarray(sorted(had.get(u, ()))) for u in users], [10, 20, 100])
    seconds = time.time() - started
    covered = found["about"]["ease_items"]
    env = dict(os.environ, EASE_MAX_ITEMS=str(covered))
    shared = {}
    for name in ("popularity", "ease"):
        recs = os.path.join(split, f"{name}.csv")
        began = time.time()
        subprocess.run([sys.executable, os.path.join(BENCH, "baselines.py"), name, split, recs],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        took = time.time() - began
        scored = os.path.join(split, f"{name}.json")
        subprocess.run([sys.executable, os.path.join(BENCH, "score.py"), split, recs,
                        "--json", scored], check=True, stdout=subprocess.DEVNULL)
        with open(scored, encoding="utf-8") as handle:
            shared[name] = (json.load(handle), took)
    report = {"dataset": args.dataset, "window": args.window, "train_rows": len(train),
              "catalog": len(items), "test_users": len(users), "ease_items": covered,
              "ease_budget_items": ease_items(args.memory_mb, len(items)),
              "pipeline_baselines_seconds": round(seconds, 1),
              "pipeline": {n: found[n]["recall_at_20"] for n in
                           ("popularity", "recent_popularity", "ease") if n in found},
              "shared": {n: v[0].get("recall@20") for n, v in shared.items()},
              "shared_seconds": {n: round(v[1], 1) for n, v in shared.items()}}
    print(json.dumps(report, indent=2))
    with open(os.path.join(split, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
