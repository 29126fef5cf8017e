"""Two pipelines under one root run side by side; a second run of one of them is refused
(FAULTS.md). Each pipeline has its own folder, ``<pipeline.root>/<pipeline.name>``."""
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, demo_raw

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def executions(metadata):
    """``[(pipeline, component, state, created ms, updated ms)]`` from one ML Metadata store."""
    from ml_metadata.proto import metadata_store_pb2

    from pipelines.runners.local import _store

    store = _store(metadata)
    names = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
    kinds = {t.id: t.name for t in store.get_context_types()}
    out = []
    for execution in store.get_executions():
        for context in store.get_contexts_by_execution(execution.id):
            if kinds[context.type_id] == "node":  # named <pipeline>.<component>
                pipeline, component = context.name.split(".", 1)
                out.append((pipeline, component, names[execution.last_known_state],
                            execution.create_time_since_epoch,
                            execution.last_update_time_since_epoch))
    return out


def pipelines_in_store(metadata):
    from pipelines.runners.local import _store

    store = _store(metadata)
    return sorted(c.name for c in store.get_contexts_by_type("pipeline"))


def test_two_pipelines_under_one_root_run_side_by_side_and_a_third_is_refused(
        tmp_path, small_data):
    from pipelines.build.builder import COMPONENTS
    from pipelines.data.synthetic import generate
    from pipelines.runners.local import results

    other_data = str(tmp_path / "other")
    generate(other_data, customers=100, products=45, purchases=2500, seed=5)
    shared = tmp_path / "shared"  # one pipeline.root for both
    data = {"alpha": small_data, "beta": other_data}
    configs = {}
    for name, where in data.items():
        raw = demo_raw(where)
        raw["pipeline"].update(root=str(shared), name=name, min_lift_over_popularity=None)
        raw["training"].update(epochs=2)
        raw["model"].update(top_k=[10, 20])
        configs[name] = tmp_path / f"{name}.json"
        configs[name].write_text(json.dumps(raw), encoding="utf-8")
    runs = {name: subprocess.Popen([sys.executable, "-m", "pipelines", "run", "--config",
                                    str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            for name, path in configs.items()}
    try:
        lock = shared / "alpha" / ".twotower.lock"
        deadline = time.time() + 120
        while time.time() < deadline:  # alpha holds its folder
            text = lock.read_text(encoding="utf-8") if lock.exists() else ""
            if text and json.loads(text).get("pid") == runs["alpha"].pid:
                break
            time.sleep(0.2)
        third = subprocess.run([sys.executable, "-m", "pipelines", "run", "--config",
                                str(configs["alpha"])], cwd=ROOT, capture_output=True, text=True)
        assert third.returncode == 2, third.stdout + third.stderr
        assert (f"pipeline.name: {shared / 'alpha'} is in use by another run (pipeline 'alpha', "
                f"pid {runs['alpha'].pid}") in third.stderr
        done = {name: run.communicate(timeout=1500) for name, run in runs.items()}
    finally:
        for run in runs.values():
            run.kill()
    for name, run in runs.items():
        assert run.returncode == 0, (done[name][0] + done[name][1])[-4000:]
    assert sorted(os.listdir(shared)) == ["alpha", "beta"]

    spans = {}
    for name, where in data.items():
        folder = shared / name
        found = executions(str(folder / "metadata.sqlite"))
        assert {p for p, *_ in found} == {name}  # its store holds only its own pipeline
        assert pipelines_in_store(str(folder / "metadata.sqlite")) == [name]
        assert sorted({c for _, c, s, *_ in found if s == "COMPLETE"}) == sorted(COMPONENTS)
        spans[name] = (min(f[3] for f in found), max(f[4] for f in found))
        res = results(str(folder))
        with open(os.path.join(where, "products.csv"), encoding="utf-8") as handle:
            products = len(handle.read().splitlines()) - 1
        assert res["metrics"]["candidates"] == products  # trained on its own catalog
        with open(os.path.join(res["serving_model"], "assets.extra", "config.json"),
                  encoding="utf-8") as handle:
            assert json.load(handle)["pipeline"]["name"] == name
        assert os.listdir(folder / "serving") == [os.path.basename(res["serving_model"])]
        log = json.loads((folder / "logs" / "runs.jsonl").read_text(
            encoding="utf-8").splitlines()[-1])
        assert log["status"] == "pushed"
    (a0, a1), (b0, b1) = spans["alpha"], spans["beta"]
    assert a0 < b1 and b0 < a1, spans  # they ran at the same time
