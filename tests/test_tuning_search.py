"""`twotower tune` end to end on the small synthetic log: a two-trial search over a real
Transform output, the tuned YAML it writes (validate accepts it), and a search started
again that resumes without repeating a finished trial. Slow: it runs the pipeline up to
the Transform once (cached for the second command)."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, demo_raw
from pipelines.config.schema import apply_overrides

pytestmark = pytest.mark.slow


def tune(config, *flags):
    return subprocess.run([sys.executable, "-m", "pipelines", "tune", "--config", str(config),
                           *flags], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def searched(small_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tune")
    raw = apply_overrides(demo_raw(small_data), [
        f"pipeline.root={tmp / 'root'}", "pipeline.name=tune-test", "model.top_k=[10, 50]",
        "tuning.max_epochs=1", "tuning.trials=2", "tuning.seed=3",
        "tuning.space={training.learning_rate: {min: 0.001, max: 0.01}, "
        "model.embedding_dim: {values: [16, 32]}}"])
    config = tmp / "my.yaml"
    config.write_text(yaml.safe_dump(raw))
    first = tune(config)
    return {"tmp": tmp, "config": config, "first": first, "raw": raw}


def records(tmp):
    found = {}
    for folder, _, names in os.walk(tmp / "root" / "tune-test" / "tune" / "search"):
        if os.path.basename(folder) == "trial_records":
            for name in names:
                path = os.path.join(folder, name)
                found[name] = (os.stat(path).st_mtime_ns, json.load(open(path)))
    return found


def test_two_trials_print_a_table_and_write_the_tuned_yaml(searched):
    done, tmp = searched["first"], searched["tmp"]
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    out = done.stdout
    assert "validation slice: the last 0.1 of train by time" in out
    assert "(eval and test never read)" in out
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.endswith("stopped because"))
    assert lines[head].lstrip().startswith("trial ") and "recall_at_10" in lines[head]
    assert len([line for line in lines[head + 1:head + 3] if line.split()[0].isdigit()]) == 2
    assert "baseline ease" in out and "baseline popularity" in out
    found = records(tmp)
    assert len(found) == 2
    for _, record in found.values():
        assert record["epochs"] == 1 and record["stopped"] is None
        assert 0.001 <= record["values"]["training.learning_rate"] <= 0.01
        assert record["values"]["model.embedding_dim"] in (16, 32)
    tuned = tmp / "my.tuned.yaml"
    text = tuned.read_text()
    # the best objective; a tie goes to the earlier trial (trainer.tuning.run_search)
    best = max((r for _, r in found.values()), key=lambda r: (r["objective"], -int(r["trial"])))
    assert f"# Best: trial {best['trial']}, recall_at_10 {best['objective']:.4f}" in text
    assert "# tuned: trial" in text and "searched 0.001..0.01 (log)" in text
    written = yaml.safe_load(text)
    assert "tuning" not in written
    assert written["model"]["embedding_dim"] == best["values"]["model.embedding_dim"]
    assert written["training"]["learning_rate"] == pytest.approx(
        best["values"]["training.learning_rate"], rel=1e-3)
    ok = subprocess.run([sys.executable, "-m", "pipelines", "validate", "--config", str(tuned)],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr


def test_a_search_started_again_resumes_without_repeating_a_trial(searched):
    tmp, config = searched["tmp"], searched["config"]
    before = records(tmp)
    assert len(before) == 2
    (tmp / "mine.yaml").write_text("# the user's own file\n")
    refused = tune(config, "--trials", "3", "--out", str(tmp / "mine.yaml"))
    assert refused.returncode == 2 and "twotower did not write it" in refused.stderr
    assert (tmp / "mine.yaml").read_text() == "# the user's own file\n"
    again = tune(config, "--trials", "3")  # replaces its own my.tuned.yaml
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert "resumed: 2 finished trial(s) kept" in again.stdout
    after = records(tmp)
    assert len(after) == 3
    for name, (mtime, record) in before.items():  # kept as they were: never trained again
        assert after[name] == (mtime, record)
