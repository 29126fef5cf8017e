"""Where a cached rerun's time goes: `twotower run` under cProfile, split into phases.

Usage (BENCHMARKS.md, "Where a cached rerun's time goes"): run the pipeline
once, then

    python scripts/profile_rerun.py --config examples/b2b_demo.yaml --label after --runs 2

from the folder the config's relative paths start at. Each run is a fresh
`python -m pipelines run` process timed from outside (wall); one more, under
cProfile, splits the time (profiled seconds run ~10-30% over wall): Python's
compiling of sources without a ``.pyc`` (``builtins.compile``), all imports
(TFX, TensorFlow, Beam, the Vertex AI SDK...), TFX's module-wheel builds, the
components' launches (cached: ML Metadata lookups), and the rest. Prints a
Markdown table row. ``--no-pyc`` points Python at an empty bytecode cache
(``PYTHONPYCACHEPREFIX``), as a venv without compiled modules under
``PYTHONDONTWRITEBYTECODE`` runs.
"""
import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time

PHASES = (  # (column, pstats key: file suffix and function name, cumulative or own time)
    ("compiling sources", ("", "<built-in method builtins.compile>"), "own"),
    ("imports", ("<frozen importlib._bootstrap>", "_find_and_load"), "cum"),
    ("module wheel builds", ("udf_utils.py", "package_user_module_file"), "cum"),
    ("component launches", ("local_dag_runner.py", "run_with_ir"), "cum"),
)


def phase_seconds(profile: str) -> dict:
    stats = pstats.Stats(profile).stats
    out = {}
    for column, (suffix, name), which in PHASES:
        total = 0.0
        for (filename, _, function), (_, _, own, cum, _) in stats.items():
            if function == name and filename.endswith(suffix):
                total += own if which == "own" else cum
        out[column] = total
    out["profiled total"] = max(cum for (_, _, f), (_, _, _, cum, _) in stats.items()
                                if f == "main" or f == "<module>")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--label", default="")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-pyc", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory(prefix="twotower-profile-") as tmp:
        if args.no_pyc:
            env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "empty-pycache")
        command = ["pipelines", "run", "--config", args.config, "--quiet"]
        walls = []
        for _ in range(args.runs):  # timed without the profiler
            began = time.time()
            done = subprocess.run([sys.executable, "-m"] + command, env=env,
                                  capture_output=True, text=True)
            walls.append(time.time() - began)
            if done.returncode != 0:
                print(f"error: the run failed (exit {done.returncode}): "
                      f"{done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                return 2
        profile = os.path.join(tmp, "run.prof")
        subprocess.run([sys.executable, "-m", "cProfile", "-o", profile, "-m"] + command,
                       env=env, capture_output=True, text=True, check=True)
        found = phase_seconds(profile)
        print("| label | wall s (each run) | " + " | ".join(c for c, _, _ in PHASES)
              + " | profiled total |")
        print("|---" * (len(PHASES) + 3) + "|")
        print(f"| {args.label} | {', '.join(f'{w:.1f}' for w in walls)} | "
              + " | ".join(f"{found[c]:.1f}" for c, _, _ in PHASES)
              + f" | {found['profiled total']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
