"""Serving throughput: the SavedModel's signatures from 1-8 threads, and `twotower recommend`
from 1 and 2 processes at once (BENCHMARKS.md, "Serving under load").

    .venv/bin/python scripts/bench_serving.py [--model runs/b2b-demo] [--seconds 8]

``--model`` is a pipeline folder with a pushed model (`make demo` makes runs/b2b-demo).
Each signature is called with batches of real query inputs (each customer's state now, as
`twotower recommend` builds it) for about ``--seconds`` per setting; queries per second
count rows of the batches answered. The tests check that answers under load equal a lone
caller's (tests/test_serving_load.py); this only measures.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def signature_inputs(model_root: str, batch: int):
    """``{signature: inputs}`` for one batch of ``batch`` real customers."""
    import tensorflow as tf

    from pipelines.recommend import (default_history, find_model, model_config,
                                     query_histories, read_queries, serving_values)

    serving = find_model(model_root)
    cfg = model_config(serving)
    history = default_history(model_root, cfg)
    with open(os.path.join(serving, "assets.extra", "serving_inputs.json"),
              encoding="utf-8") as handle:
        described = json.load(handle)
    users = read_queries(history, cfg.data.query_id)
    users = [users[i % len(users)] for i in range(batch)]
    states = query_histories(cfg, history, set(users))
    rows = [serving_values(cfg, described, u, states.get(u)) for u in users]
    base = {d["input"]: tf.constant([r[d["input"]] for r in rows], tf.as_dtype(d["dtype"]))
            for d in described}
    seen = [sorted(states[u]["seen"]) if u in states else [] for u in users]
    width = max(1, max(len(s) for s in seen))
    exclude = tf.constant([s + [""] * (width - len(s)) for s in seen])
    k = tf.constant(10, tf.int32)
    return serving, {"serving_default": base, "query_embedding": base,
                     "recommend": dict(base, exclude=exclude, k=k),
                     "buy_again": dict(base, had=exclude, k=k)}


def measure(signature, inputs, threads: int, seconds: float) -> dict:
    """Requests and queries per second with ``threads`` callers for about ``seconds``."""
    batch = int(next(iter(inputs.values())).shape[0])
    signature(**inputs)  # warm
    stop = time.time() + seconds

    def caller(_):
        n = 0
        while time.time() < stop:
            signature(**inputs)
            n += 1
        return n

    began = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        calls = sum(pool.map(caller, range(threads)))
    elapsed = time.time() - began
    return {"threads": threads, "batch": batch, "requests_per_s": calls / elapsed,
            "queries_per_s": calls * batch / elapsed}


def recommend_processes(model_root: str, users: int, processes: int, out_dir: str) -> dict:
    """`twotower recommend` for ``users`` distinct users (the known customers, the rest new),
    split between ``processes`` running at once; the time includes each one's start."""
    from pipelines.recommend import default_history, find_model, model_config, read_queries

    cfg = model_config(find_model(model_root))
    known = read_queries(default_history(model_root, cfg), cfg.data.query_id)
    ids = (known + [f"new-{i}" for i in range(max(0, users - len(known)))])[:users]
    procs, began = [], time.time()
    for p in range(processes):
        path = os.path.join(out_dir, f"users-{processes}-{p}.csv")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("user_id\n" + "".join(f"{ids[i]}\n" for i in range(p, users, processes)))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "pipelines", "recommend", "--model", model_root, "--users",
             path, "--k", "10", "--out", os.path.join(out_dir, f"recs-{processes}-{p}.csv"),
             "--force"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(err.decode()[-2000:])
    elapsed = time.time() - began
    return {"processes": processes, "users": users, "seconds": elapsed,
            "users_per_s": users / elapsed}


def main() -> None:
    import tempfile

    import tensorflow as tf

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.path.join(ROOT, "runs", "b2b-demo"))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--parts", default="signatures,recommend")
    args = parser.parse_args()
    report = {"cores": os.cpu_count(), "signatures": [], "recommend": []}
    for batch in (1, 64, 512) if "signatures" in args.parts else ():
        serving, inputs = signature_inputs(args.model, batch)
        model = tf.saved_model.load(serving)
        for name in ("serving_default", "recommend", "query_embedding"):
            for threads in (1, 2, 4, 8):
                got = dict(measure(model.signatures[name], inputs[name], threads, args.seconds),
                           signature=name)
                report["signatures"].append(got)
                print(f"{name:16} batch {batch:4} threads {threads}: "
                      f"{got['requests_per_s']:9.1f} requests/s {got['queries_per_s']:10.0f} "
                      "queries/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        for processes in (1, 2) if "recommend" in args.parts else ():
            got = recommend_processes(args.model, args.users, processes, scratch)
            report["recommend"].append(got)
            print(f"recommend {args.users} users in {processes} process(es): "
                  f"{got['seconds']:.1f} s, {got['users_per_s']:.0f} users/s", flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
