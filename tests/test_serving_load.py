"""Serving under load: the SavedModel's signatures and `twotower recommend` with concurrent
callers, threads and processes. Every request is answered, and each answer is exactly the
one a lone caller gets (ids as written, scores bit for bit). BENCHMARKS.md has the
throughput (scripts/bench_serving.py)."""
import concurrent.futures
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from e2e_helpers import ODD_CUSTOMERS, catalog_ids, query_inputs, read_recs, write_users

pytestmark = pytest.mark.e2e


def customers(run):
    with open(os.path.join(run["data"], "purchases.csv"), encoding="utf-8") as handle:
        return sorted({r["customer_id"] for r in csv.DictReader(handle)})


def model_and_inputs(run):
    import tensorflow as tf

    from pipelines.runners.local import results

    serving = results(run["root"])["serving_model"]
    with open(os.path.join(serving, "assets.extra", "serving_inputs.json"),
              encoding="utf-8") as handle:
        described = json.load(handle)
    return tf.saved_model.load(serving), described


def requests(run, described, n):
    """``n`` distinct requests, each (signature, inputs): every signature, every batch size
    from 1 to 97, odd and cold ids, exclusions and k varying."""
    import tensorflow as tf

    everyone = customers(run) + ["never-seen-1", "never-seen-2"]
    inputs = query_inputs(run, described, everyone)
    dtypes = {d["input"]: tf.as_dtype(d["dtype"]) for d in described}
    catalog = sorted(catalog_ids(run))
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        rows = rng.choice(len(everyone), size=1 + i % 97)
        batch = {k: tf.constant([v[r] for r in rows], dtypes[k]) for k, v in inputs.items()}
        name = ("serving_default", "recommend", "buy_again", "query_embedding")[i % 4]
        if name in ("recommend", "buy_again"):
            lists = [list(rng.choice(catalog, size=int(rng.integers(0, 6)))) for _ in rows]
            width = max(1, max(len(x) for x in lists))
            padded = tf.constant([x + [""] * (width - len(x)) for x in lists])
            batch["exclude" if name == "recommend" else "had"] = padded
            batch["k"] = tf.constant(int(rng.integers(1, 40)), tf.int32)
        out.append((name, batch))
    return out


def answer(model, request):
    name, batch = request
    got = model.signatures[name](**batch)
    return {k: v.numpy() for k, v in sorted(got.items())}


def same(a, b):
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def test_every_signature_answers_16_threads_exactly_as_one_caller(e2e_run):
    """400 requests (all four signatures, batches of 1 to 97) from 16 threads at once, each
    thread in its own order: 6,400 answers, each equal to the lone caller's."""
    model, described = model_and_inputs(e2e_run)
    work = requests(e2e_run, described, 400)
    alone = [answer(model, r) for r in work]
    catalog = {c.encode() for c in catalog_ids(e2e_run)} | {b""}
    for got in alone:
        if "candidate_ids" in got:
            assert set(got["candidate_ids"].ravel()) <= catalog  # raw ids, as written

    def thread(seed):
        order = np.random.default_rng(seed).permutation(len(work))
        return [(int(i), answer(model, work[i])) for i in order]

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        together = list(pool.map(thread, range(16)))
    assert sum(len(t) for t in together) == 16 * len(work)  # no request lost
    for results in together:
        assert sorted(i for i, _ in results) == list(range(len(work)))
        for i, got in results:
            assert same(got, alone[i]), (i, work[i][0])


def recommend_args(run, users, out, k=12):
    return [run["root"], users, k, out]


def test_recommend_from_threads_and_processes_writes_every_user_exactly(e2e_run, tmp_path):
    """`recommend` from 4 threads of one process, and `twotower recommend` in 3 processes at
    once (two of them writing into one folder), on one model: each output is byte for byte
    the one a lone call writes, with every user (odd, formula-like, cold) and k rows each."""
    from pipelines.data import written
    from pipelines.recommend import recommend

    everyone = customers(e2e_run) + ["never-seen"]  # the odd and formula-like ids among them
    assert set(ODD_CUSTOMERS.values()) <= set(everyone)
    parts = [everyone[i::4] for i in range(4)]
    users = [write_users(tmp_path / f"users{i}.csv", part) for i, part in enumerate(parts)]
    alone = tmp_path / "alone"
    os.makedirs(alone)
    for i, path in enumerate(users):
        recommend(*recommend_args(e2e_run, path, str(alone / f"{i}.csv")), log=lambda _: None)
    expected = [open(alone / f"{i}.csv", "rb").read() for i in range(4)]
    for i, part in enumerate(parts):  # every user, 12 each, in input order, ids exact
        rows = read_recs(alone / f"{i}.csv")
        assert [r["user_id"] for r in rows] == [u for u in part for _ in range(12)]
        assert {r["item_id"] for r in rows} <= catalog_ids(e2e_run)

    threads = tmp_path / "threads"
    os.makedirs(threads)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: recommend(*recommend_args(
            e2e_run, users[i], str(threads / f"{i}.csv")), log=lambda _: None), range(4)))
    assert [open(threads / f"{i}.csv", "rb").read() for i in range(4)] == expected

    shared = tmp_path / "processes"
    os.makedirs(shared / "other")
    outs = [shared / "0.csv", shared / "1.csv", shared / "other" / "2.csv"]
    procs = [subprocess.Popen([sys.executable, "-m", "pipelines", "recommend", "--model",
                               e2e_run["root"], "--users", users[i], "--k", "12", "--out",
                               str(outs[i])], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    assert [open(p, "rb").read() for p in outs] == expected[:3]
    assert written.ours(str(outs[0])) and written.ours(str(outs[1]))  # both in the manifest
    assert sorted(os.listdir(shared)) == [".twotower-written", "0.csv", "1.csv", "other"]
