"""`make bench-scale`: how data preparation and the local pipeline grow with the data.

    scripts/bench_scale.py [--sizes 100k,1m,10m] [--pipeline-sizes 100k,1m]
                           [--beam-workers 1,2] [--baseline-ref GIT_REF]

For each size, synthetic purchase logs from `twotower synth` (customers and
products scaled with the purchases; generated once, kept under
OUT/data/<size>), then, each in its own process, timed, with its peak
resident memory (the process's maximum RSS, from wait4):

- `twotower prepare` (the DuckDB SQL program) on `examples/purchases.yaml`;
- with --baseline-ref, the preparation of that git commit (e.g. the in-memory
  Python one this replaced), extracted with `git archive`, under a 12 GiB
  address-space limit so a blow-up is reported, not fatal to the machine;
- for --pipeline-sizes, the whole local pipeline (`twotower run`, one training
  epoch, push gate off: the cost of each stage, not a model), with each
  component's wall time from ML Metadata, once per --beam-workers value.

Results: OUT/scale.json and a table on stdout (OUT: runs/bench-scale, or
BENCH_SCALE_OUT).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.abspath(os.environ.get("BENCH_SCALE_OUT", os.path.join(ROOT, "runs", "bench-scale")))
CONFIG = os.path.join(ROOT, "examples", "purchases.yaml")
SIZES = {"100k": (100_000, 3_000, 2_000), "1m": (1_000_000, 30_000, 20_000),
         "10m": (10_000_000, 300_000, 50_000)}  # purchases, customers, products
BASELINE_LIMIT = 12 << 30


def measured(args, limit=None, env=None):
    """Runs a command; returns (exit code, seconds, peak RSS MiB, output tail)."""
    def cap():
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    print("$ " + " ".join(args), flush=True)
    started = time.time()
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                 preexec_fn=cap, env=dict(os.environ, **(env or {})))
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.time() - started
        log.seek(0)
        tail = log.read()[-2000:].decode("utf-8", "replace")
    code = os.waitstatus_to_exitcode(status)
    return code, seconds, usage.ru_maxrss / 1024.0, tail


def data(size):
    purchases, customers, products = SIZES[size]
    where = os.path.join(OUT, "data", size)
    stamp = os.path.join(where, "args.json")
    wanted = {"purchases": purchases, "customers": customers, "products": products}
    if os.path.exists(stamp) and json.load(open(stamp, encoding="utf-8")) == wanted:
        return where, None
    code, seconds, peak, tail = measured([sys.executable, "-m", "pipelines", "synth", "--out",
                                          where] + [f"--{k}={v}" for k, v in wanted.items()])
    if code:
        sys.exit(f"bench-scale: synth failed:\n{tail}")
    with open(stamp, "w", encoding="utf-8") as handle:
        json.dump(wanted, handle)
    return where, {"seconds": seconds, "peak_mib": peak}


def sets(where, root):
    return ["--set", f"data.path={os.path.join(where, 'purchases.csv')}",
            "--set", f"data.candidates.path={os.path.join(where, 'products.csv')}",
            "--set", f"pipeline.root={root}"]


def baseline_prepare(ref, where, out):
    """The preparation of git ``ref``, run from an extracted copy of its sources."""
    source = os.path.join(OUT, f"baseline-{ref}")
    if not os.path.isdir(source):
        archive = subprocess.run(["git", "archive", ref, "pipelines", "transform"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        with tempfile.TemporaryFile() as handle:
            handle.write(archive)
            handle.seek(0)
            tarfile.open(fileobj=handle).extractall(source)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from pipelines.config.schema import load_config; from pipelines.data.prepare import prepare;"
            " prepare(load_config(sys.argv[2], sys.argv[4:]), sys.argv[3])")
    overrides = [s for s in sets(where, out)[1::2]]
    return measured([sys.executable, "-c", code, source, CONFIG, out] + overrides,
                    limit=BASELINE_LIMIT)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100k,1m,10m")
    parser.add_argument("--pipeline-sizes", default="100k,1m")
    parser.add_argument("--beam-workers", default="1,2")
    parser.add_argument("--baseline-ref", help="also time this commit's data preparation")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from pipelines.build.builder import paths
    from pipelines.runners.local import component_seconds

    report = {}
    previous = os.path.join(OUT, "scale.json")
    if os.path.exists(previous):  # sizes measured by an earlier invocation stay in the table
        with open(previous, encoding="utf-8") as handle:
            report = json.load(handle)
    for size in args.sizes.split(","):
        where, synth = data(size)
        entry = report.setdefault(size, {})
        entry.update(purchases=SIZES[size][0], synth=synth or entry.get("synth"))
        out = os.path.join(OUT, "prepared", size)
        code, seconds, peak, tail = measured([sys.executable, "-m", "pipelines", "prepare",
                                              "--config", CONFIG, "--out", out]
                                             + sets(where, out)[:4])
        if code:
            sys.exit(f"bench-scale: prepare failed at {size}:\n{tail}")
        entry["prepare"] = {"seconds": seconds, "peak_mib": peak}
        if args.baseline_ref:
            code, seconds, peak, tail = baseline_prepare(args.baseline_ref, where,
                                                         os.path.join(OUT, "baseline", size))
            entry["baseline"] = {"ref": args.baseline_ref, "seconds": seconds, "peak_mib": peak,
                                 "failed": tail.strip().splitlines()[-1] if code else None}
        if size in args.pipeline_sizes.split(","):
            for workers in args.beam_workers.split(","):
                runs_root = os.path.join(OUT, "pipeline", f"{size}-w{workers}")
                root = os.path.join(runs_root, "purchases")  # <pipeline.root>/<pipeline.name>
                code, seconds, peak, tail = measured(
                    [sys.executable, "-m", "pipelines", "run", "--config", CONFIG]
                    + sets(where, runs_root) + ["--set", f"pipeline.beam_workers={workers}",
                                           "--set", "training.epochs=1", "--set",
                                           "pipeline.min_lift_over_popularity=null"],
                    env={"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
                run = {"seconds": seconds, "peak_mib": peak, "exit": code,
                       "components": component_seconds(paths(root)["metadata"], "purchases")}
                if code:
                    run["failed"] = tail.strip().splitlines()[-1]
                entry.setdefault("pipeline", {})[f"workers={workers}"] = run
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, "scale.json"), "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, sort_keys=True)
    print(table(report))


def table(report):
    lines = ["", "| purchases | prepare (DuckDB) | rows/s | peak memory | baseline prepare | "
             "baseline peak |", "|---|---|---|---|---|---|"]
    for size, e in report.items():
        p, b = e["prepare"], e.get("baseline") or {}
        base = ("failed: " + b["failed"][:60]) if b.get("failed") else (
            f"{b['seconds']:.1f} s" if b else "-")
        lines.append(f"| {e['purchases']:,} | {p['seconds']:.1f} s | "
                     f"{e['purchases'] / p['seconds']:,.0f} | {p['peak_mib']:,.0f} MiB | {base} | "
                     f"{b['peak_mib']:,.0f} MiB |" if b else
                     f"| {e['purchases']:,} | {p['seconds']:.1f} s | "
                     f"{e['purchases'] / p['seconds']:,.0f} | {p['peak_mib']:,.0f} MiB | - | - |")
    names = ("ParquetExampleGen", "StatisticsGen", "ImportSchemaGen", "Transform", "Trainer",
             "PopularityGate", "Pusher")
    lines += ["", "| purchases | Beam workers | total | peak memory | " + " | ".join(names)
              + " |", "|---" * (4 + len(names)) + "|"]
    for size, e in report.items():
        for workers, run in (e.get("pipeline") or {}).items():
            cells = [f"{run['components'].get(n, float('nan')):.0f} s" for n in names]
            lines.append(f"| {e['purchases']:,} | {workers.split('=')[1]} | "
                         f"{run['seconds']:.0f} s | {run['peak_mib']:,.0f} MiB | "
                         + " | ".join(cells) + " |" + (f" failed: {run['failed']}"
                                                        if run.get("failed") else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
