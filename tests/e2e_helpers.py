"""Runs `twotower run` on a fresh synthetic dataset, as a user would, for e2e tests."""
import json
import os
import subprocess
import sys

from conftest import ROOT, demo_raw
from pipelines.config import Config, apply_overrides


def run_pipeline(tmp, name, overrides, customers=300, products=150, purchases=8000, seed=11):
    """Generates data, runs the CLI; returns {'root', 'data', 'stdout', 'config'}."""
    from pipelines.synthetic import generate

    data = str(tmp / "data")
    generate(data, customers=customers, products=products, purchases=purchases, seed=seed)
    root = str(tmp / "root")
    raw = apply_overrides(demo_raw(data), [f"pipeline.root={root}", f"pipeline.name={name}"]
                          + list(overrides))
    config_path = tmp / "config.json"
    config_path.write_text(json.dumps(raw))
    done = subprocess.run([sys.executable, "-m", "pipelines", "run", "--config",
                           str(config_path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return {"root": root, "data": data, "stdout": done.stdout, "config": Config.from_dict(raw),
            "name": name}


def query_inputs(run, described, customers):
    """Serving inputs for ``customers``, from each one's first purchase row."""
    import csv

    path = os.path.join(run["root"], "input", "train", "data.csv")
    first = {}
    with open(path, encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            first.setdefault(row[run["config"].data.query_id], row)
    rows = [first[c] for c in customers]
    return {d["input"]: [r[d["column"]] for r in rows] for d in described}


def recommend_cli(run, tmp, users, k):
    """Runs `twotower recommend` for ``users`` (customer ids); returns the CSV's rows."""
    import csv

    path = tmp / "users.csv"
    path.write_text("customer_id\n" + "\n".join(users) + "\n")
    out = tmp / "recs.csv"
    done = subprocess.run([sys.executable, "-m", "pipelines", "recommend", "--model", run["root"],
                           "--users", str(path), "--k", str(k), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    with open(out, encoding="utf-8") as handle:
        assert handle.readline().strip() == "user_id,item_id,rank"
        handle.seek(0)
        return list(csv.DictReader(handle))
