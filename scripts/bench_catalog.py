"""Retrieval over large catalogs: exact search and ScaNN side by side, 10k to 1M candidates
(BENCHMARKS.md, "Catalogs up to a million candidates").

    nice -n 10 .venv/bin/python scripts/bench_catalog.py [--sizes 10000,100000,1000000]
        [--sweep 1000000] [--queries 300]

The serving model's two searches, as the SavedModel runs them (TensorFlow ops in a
``tf.function``): exact is ``matmul`` + ``top_k`` over the ``[n, 64]`` table, ScaNN is the
``scann_ops`` searcher TFRS's ScaNN layer builds (a k-means tree, asymmetric hashing with 2
dimensions per block, exact re-ranking), with the leaves, leaves searched and re-ranked
candidates of ``pipeline.scann`` (:func:`trainer.serving.scann_parameters` fills the nulls).

The catalog is a synthetic stand-in for a trained candidate tower's output: l2-normalised
64-d vectors (the default model's), drawn around 1,000 category centres (a centre plus
Gaussian noise of 0.7 times a centre's scale per component, then normalised), as trained
embeddings cluster by category; queries are drawn the same way. ``--uniform`` draws both
uniformly on the sphere instead (no structure: ScaNN's worst case).

Each (size, search) runs in its own process, so its peak memory (``ru_maxrss``) is its own;
"peak" is the process's whole peak (the measurement's own work included: a batch of 256
exact queries over 1M candidates is a 1 GB score matrix); "build peak" is the peak up to
the end of the build minus the resident size before it (the catalog array itself,
n x 64 float32, is counted in neither); "index" is the resident size the
built index (and its traced searches) keeps once built. Recall@100 is the share of exact
search's top 100 (numpy, float32) that ScaNN returns, over ``--recall-queries`` queries.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DIM = 64
CENTRES = 1000
SPREAD = 0.7
K = 100


def vectors(n: int, seed: int, uniform: bool):
    """``[n, 64]`` float32 unit vectors (see the module docstring)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if uniform:
        x = rng.standard_normal((n, DIM), dtype=np.float32)
    else:
        centres = np.random.default_rng(12345).standard_normal((CENTRES, DIM), dtype=np.float32)
        x = centres[rng.integers(0, CENTRES, n)]
        x += SPREAD * rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def exact_top(catalog, queries, k: int = K):
    """``[q, k]`` positions of the best ``k`` by dot product (numpy, in chunks)."""
    import numpy as np

    out = []
    for start in range(0, len(queries), 64):
        scores = queries[start:start + 64] @ catalog.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        out.append(top)
    return np.concatenate(out)


def rss_mib() -> float:
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentiles(seconds):
    import numpy as np

    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def throughput(fn, batch, seconds: float) -> float:
    fn(batch)
    calls, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        fn(batch)
        calls += 1
    return calls * int(batch.shape[0]) / (time.perf_counter() - began)


def one(args) -> dict:
    """One (size, search) measurement; a JSON line on stdout."""
    import numpy as np
    import tensorflow as tf

    catalog = vectors(args.size, 1, args.uniform)
    queries = vectors(max(args.queries, args.recall_queries, args.batch), 2, args.uniform)
    before = rss_mib()
    began = time.perf_counter()
    if args.search == "exact":
        table = tf.Variable(catalog, trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None, DIM], tf.float32)])
        def search(q):
            return tf.math.top_k(tf.linalg.matmul(q, table, transpose_b=True), k=K)[1]
        variants = {"exact": search}
    else:
        from scann.scann_ops.py import scann_ops

        from trainer.serving import scann_parameters

        chosen = scann_parameters(args.size, K, args.num_leaves, args.leaves_to_search,
                                  args.reorder)
        builder = scann_ops.builder(tf.constant(catalog), K, "dot_product").tree(
            num_leaves=chosen["num_leaves"], num_leaves_to_search=chosen["leaves_to_search"],
            training_iterations=12).score_ah(2).reorder(chosen["reorder"])
        searcher = builder.build(shared_name=f"bench-{os.getpid()}")
        leaves = [chosen["leaves_to_search"]] + [int(v) for v in args.leaves_grid.split(",") if v]
        reorders = [chosen["reorder"]] + [int(v) for v in args.reorder_grid.split(",") if v]
        variants = {}
        for leaf in dict.fromkeys(leaves):
            for pre in dict.fromkeys(reorders):
                for parallel in (True, False) if args.serial else (True,):
                    # TFRS's ScaNN layer: search_batched_parallel unless
                    # parallelize_batch_searches=False (then search_batched, one thread)
                    method = "search_batched_parallel" if parallel else "search_batched"

                    def search(q, leaf=leaf, pre=pre, method=method):
                        return getattr(searcher, method)(
                            q, final_num_neighbors=K, pre_reorder_num_neighbors=pre,
                            leaves_to_search=leaf).indices
                    variants[(chosen["num_leaves"], leaf, pre, parallel)] = tf.function(
                        search, input_signature=[tf.TensorSpec([None, DIM], tf.float32)])
    build_s = time.perf_counter() - began
    resident = rss_mib() - before
    build_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    truth = exact_top(catalog, queries[:args.recall_queries])
    rows = []
    for name, search in variants.items():
        search(tf.constant(queries[:1]))  # trace
        times = []
        for i in range(args.queries):
            q = tf.constant(queries[i:i + 1])
            t = time.perf_counter()
            search(q).numpy()
            times.append(time.perf_counter() - t)
        p50, p99 = percentiles(times)
        found = np.concatenate([search(tf.constant(queries[s:s + 256])).numpy()
                                for s in range(0, args.recall_queries, 256)])
        recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth)]))
        row = {"size": args.size, "search": args.search, "p50_ms": p50, "p99_ms": p99,
               "recall_at_100": recall,
               "batch_qps": throughput(lambda b: search(b).numpy(),
                                       tf.constant(queries[:args.batch]), args.seconds)}
        if name != "exact":
            row.update(num_leaves=name[0], leaves_to_search=name[1], reorder=name[2],
                       parallel=name[3])
        rows.append(row)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for row in rows:
        row.update(build_s=build_s, peak_rss_mib=peak, build_peak_mib=build_peak,
                   index_mib=resident)
    return {"rows": rows}


def spawn(size: int, search: str, args, extra=()) -> list:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", "--size", str(size), "--search",
           search, "--queries", str(args.queries), "--recall-queries", str(args.recall_queries),
           "--batch", str(args.batch), "--seconds", str(args.seconds), *extra]
    if args.uniform:
        cmd.append("--uniform")
    if args.serial:
        cmd.append("--serial")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["rows"]


def show(row: dict) -> str:
    what = row["search"] if row["search"] == "exact" else (
        f"scann {row['num_leaves']}/{row['leaves_to_search']}/{row['reorder']}"
        + ("" if row.get("parallel", True) else " serial"))
    return (f"{row['size']:>8} {what:22} p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms"
            f"  batch {row['batch_qps']:8.0f} q/s  recall@100 {row['recall_at_100']:.3f}"
            f"  build {row['build_s']:6.1f} s  peak {row['peak_rss_mib']:6.0f} MiB"
            f"  build peak +{row['build_peak_mib']:.0f} MiB  index {row['index_mib']:6.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--sweep", default="", help="sizes to sweep ScaNN's parameters at")
    parser.add_argument("--queries", type=int, default=300, help="single queries timed")
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch throughput")
    parser.add_argument("--uniform", action="store_true")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--search", choices=("exact", "scann"), help=argparse.SUPPRESS)
    parser.add_argument("--num-leaves", type=int)
    parser.add_argument("--leaves-to-search", type=int)
    parser.add_argument("--reorder", type=int)
    parser.add_argument("--leaves-grid", default="")
    parser.add_argument("--reorder-grid", default="")
    parser.add_argument("--serial", action="store_true",
                        help="also time each ScaNN setting with search_batched (one thread)")
    parser.add_argument("--sweep-leaves", default="", help="num_leaves of the sweep (default: "
                        "sqrt(n) and 2 sqrt(n))")
    parser.add_argument("--sweep-leaves-grid", default="10,20,40,80,160")
    parser.add_argument("--sweep-reorder-grid", default="200,400,800,1600")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    rows = []
    for size in [int(s) for s in args.sweep.split(",") if s]:
        grid = ([int(v) for v in args.sweep_leaves.split(",") if v]
                or [int(size ** 0.5), 2 * int(size ** 0.5)])
        for leaves in grid:
            for row in spawn(size, "scann", args, ["--num-leaves", str(leaves),
                                                   "--leaves-grid", args.sweep_leaves_grid,
                                                   "--reorder-grid", args.sweep_reorder_grid]):
                print("sweep", show(row), flush=True)
                rows.append(dict(row, sweep=True))
    for size in [int(s) for s in args.sizes.split(",") if s]:
        for search in ("exact", "scann"):
            for row in spawn(size, search, args):
                print(show(row), flush=True)
                rows.append(row)
    print(json.dumps({"cores": os.cpu_count(), "uniform": args.uniform, "rows": rows}))


if __name__ == "__main__":
    main()
