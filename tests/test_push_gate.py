"""The push gate: a model is pushed only if it beats popularity on held-out data (issue 9, 7)."""
import glob
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, demo_raw
from pipelines.config.schema import apply_overrides
from pipelines.build.gate import decide
from pipelines.build.builder import COMPONENTS, paths
from pipelines.runners.local import completed_components, results


def metrics(model, popularity, status="completed", split="test"):
    return {"status": status, "top_k": [10, 50],
            "evaluation": {"split": split, "model": {"recall_at_10": model, "recall_at_50": 1.0},
                           "popularity": {"recall_at_10": popularity, "recall_at_50": 0.0}}}


def test_the_decision_compares_recall_at_the_first_cut_off():
    assert decide(metrics(0.30, 0.20), 1.0)["blessed"] is True
    assert decide(metrics(0.30, 0.20), 1.5)["blessed"] is False  # 0.30 = 1.5 x 0.20: not above
    assert decide(metrics(0.20, 0.20), 1.0)["blessed"] is False  # a tie does not beat it
    assert decide(metrics(0.01, 0.0), 1.0)["blessed"] is True
    refused = decide(metrics(0.0, 0.0), 1.0)
    assert refused["blessed"] is False
    assert refused["reason"] == ("recall@10 on the test split is 0.0000, not above 1 x "
                                 "popularity's 0.0000 (pipeline.min_lift_over_popularity)")
    assert (refused["model"], refused["popularity"], refused["split"]) == (0.0, 0.0, "test")


def test_a_model_below_popularity_at_any_served_cut_off_is_not_blessed():
    """Issue 20: blessed on recall@10 while below popularity at recall@20 is not blessed."""
    found = {"status": "completed", "top_k": [10, 20, 100], "evaluation": {
        "split": "eval", "model": {"recall_at_10": 0.0370, "recall_at_20": 0.0654,
                                   "recall_at_100": 0.20},
        "popularity": {"recall_at_10": 0.0105, "recall_at_20": 0.0782, "recall_at_100": 0.19}}}
    refused = decide(found, 1.0, [10, 20, 100])
    assert refused["blessed"] is False and refused["metric"] == "recall_at_20"
    assert refused["reason"].startswith("recall@20 on the eval split is 0.0654, not above 1 x "
                                        "popularity's 0.0782")
    assert decide(found, 1.0, [10])["blessed"] is True  # the config names the one that matters
    found["evaluation"]["model"]["recall_at_20"] = 0.08
    blessed = decide(found, 1.0, [10, 20, 100])
    assert blessed["blessed"] is True
    assert blessed["reason"].endswith("and above it at @20 (0.0800 vs 0.0782), @100 (0.2000 vs "
                                      "0.1900)")


def test_the_gate_cut_offs_come_from_the_config():
    from pipelines.build.gate import cutoffs

    spec = {"model": {"top_k": [10, 20, 100]}, "pipeline": {"serving_k": 20, "gate_k": None}}
    assert cutoffs(spec) == [10, 20]
    spec["pipeline"]["serving_k"] = 5
    assert cutoffs(spec) == [10]
    spec["pipeline"]["gate_k"] = 100
    assert cutoffs(spec) == [100]


def test_the_gate_off_blesses_any_completed_model_and_nothing_else():
    assert decide(metrics(0.0, 0.5), None)["blessed"] is True
    stopped = decide(metrics(0.9, 0.1, status="stopped"), None)
    assert stopped["blessed"] is False and "'stopped'" in stopped["reason"]


@pytest.mark.e2e
@pytest.mark.slow  # a whole pipeline run (~100 s): `make test-slow`, run by CI
def test_a_model_that_does_not_beat_popularity_enough_is_not_pushed(small_data, tmp_path):
    """Through the CLI: exit 1, a one-line reason, the metrics file, no new serving version,
    and the serving model already there left in place."""
    root = tmp_path / "root" / "gate-test"
    old = root / "serving" / "1000"
    old.mkdir(parents=True)
    (old / "saved_model.pb").write_text("an earlier model")
    raw = apply_overrides(demo_raw(small_data), [
        f"pipeline.root={root.parent}", "pipeline.name=gate-test", "training.epochs=1",
        "model.top_k=[10, 50]", "pipeline.min_lift_over_popularity=100"])
    config = tmp_path / "config.json"
    config.write_text(json.dumps(raw))
    done = subprocess.run([sys.executable, "-m", "pipelines", "run", "--config", str(config)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1, (done.stdout + done.stderr)[-4000:]
    reason = [line for line in done.stderr.splitlines() if line.startswith("not pushed: ")]
    assert len(reason) == 1 and "not above 100 x popularity's" in reason[0]
    assert "(pipeline.min_lift_over_popularity)" in reason[0]
    assert os.listdir(root / "serving") == ["1000"]  # nothing new; the old one untouched
    assert (old / "saved_model.pb").read_text() == "an earlier model"
    found = results(str(root))
    assert found["metrics"]["status"] == "completed" and os.path.exists(found["metrics_file"])
    assert found["gate"]["blessed"] is False and found["gate"]["min_lift"] == 100
    assert completed_components(paths(str(root))["metadata"], "gate-test") == sorted(COMPONENTS)
    assert glob.glob(str(root / "tfx" / "PopularityGate" / "blessing" / "*" / "NOT_BLESSED"))
    assert "serving model: none pushed by this run" in done.stdout
