"""`twotower backtest`: the windows' configs, the table, and a real run of two windows."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, demo_raw
from pipelines.cli.commands.backtest import table, window_configs, window_row
from pipelines.config.schema import Config, ConfigError, apply_overrides


def test_each_window_is_its_own_pipeline_moved_back_without_a_refit(raw_config):
    cfg = Config.from_dict(apply_overrides(raw_config, ["pipeline.name=shop"]))
    configs = window_configs(cfg, 3)
    assert [c.pipeline.name for c in configs] == ["shop-w0", "shop-w1", "shop-w2"]
    assert [c.data.split.window for c in configs] == [0, 1, 2]
    assert all(c.training.refit is False and c.data.split.method == "time" for c in configs)
    assert configs[1].model == cfg.model and configs[1].data.path == cfg.data.path


@pytest.mark.parametrize("overrides, windows, key", [
    (["data.split.method=hash"], 2, "data.split.method"),
    (["data.split.test_fraction=0.1"], 2, "data.split.method"),
    ([], 0, "--windows"),
    (["data.split.eval_fraction=0.25"], 4, "--windows"),
    (["pipeline.name=" + "a" * 61], 2, "pipeline.name"),
])
def test_a_backtest_that_cannot_work_is_refused_by_key(raw_config, overrides, windows, key):
    cfg = Config.from_dict(apply_overrides(raw_config, overrides))
    with pytest.raises(ConfigError) as refused:
        window_configs(cfg, windows)
    assert refused.value.problems[0][0] == key


def test_the_table_shows_each_window_and_the_mean_beside_popularity():
    def metrics(model, popular, queries):
        return {"top_k": [10], "evaluation": {"queries": queries,
                                              "model": {"recall_at_10": model},
                                              "popularity": {"recall_at_10": popular}}}

    rows = [window_row(0, {"time_cut": 86400 * 10, "window_end": None}, metrics(0.3, 0.2, 50)),
            window_row(1, {"time_cut": 86400 * 5, "window_end": 86400 * 10},
                       metrics(0.1, 0.2, 40))]
    lines = table(rows)
    assert lines[1].split()[:4] == ["0", "1970-01-11", "end", "50"]
    assert "0.3000 / 0.2000 (1.50x)" in lines[1]
    assert lines[2].split()[:4] == ["1", "1970-01-06", "1970-01-11", "40"]
    assert "0.1000 / 0.2000 (0.50x)" in lines[2]
    assert lines[3].startswith("mean") and "0.2000 / 0.2000 (1.00x)" in lines[3]


@pytest.mark.e2e
def test_two_windows_run_and_each_is_scored_on_its_own_slice(small_data, tmp_path):
    raw = apply_overrides(demo_raw(small_data), [f"pipeline.root={tmp_path / 'root'}",
                                                 "pipeline.name=bt", "training.epochs=2",
                                                 "data.split.eval_fraction=0.2",
                                                 "model.top_k=[10, 50]"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    done = subprocess.run([sys.executable, "-m", "pipelines", "backtest", "--config", str(path),
                           "--windows", "2"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    with open(tmp_path / "root" / "bt" / "backtest.json", encoding="utf-8") as handle:
        found = json.load(handle)["windows"]
    assert [w["window"] for w in found] == [0, 1]
    assert found[1]["eval_until"] == found[0]["eval_from"]  # window 1 ends where 0 begins
    assert found[1]["eval_from"] < found[1]["eval_until"]
    reports = [json.load(open(tmp_path / "root" / f"bt-w{w}" / "input" / "prepare_report.json"))
               for w in (0, 1)]
    assert reports[1]["rows_after_window"] == reports[0]["eval_rows"]
    assert "mean" in done.stdout and "recall@10 model / popularity" in done.stdout
    assert done.stdout.count("[1/5] ImportSchemaGen") == 2  # each window numbered from 1
    assert not os.path.exists(tmp_path / "root" / "bt-w0" / "serving")  # up to the Trainer


def test_the_table_names_the_strongest_baseline_of_each_window_and_of_the_mean():
    def metrics(model, popular, ease):
        return {"top_k": [10], "evaluation": {
            "queries": 10, "model": {"recall_at_10": model},
            "popularity": {"recall_at_10": popular},
            "baselines": {"popularity": {"recall_at_10": popular},
                          "recent_popularity": {"recall_at_10": popular / 2},
                          "ease": {"recall_at_10": ease}}}}

    rows = [window_row(0, {"time_cut": 0, "window_end": None}, metrics(0.3, 0.2, 0.25)),
            window_row(1, {"time_cut": 0, "window_end": None}, metrics(0.1, 0.2, 0.05))]
    lines = table(rows)
    assert lines[1].endswith("EASE 0.2500 (1.20x)")
    assert lines[2].endswith("popularity 0.2000 (0.50x)")
    # the mean: model 0.2 against popularity's mean 0.2 (EASE's mean is 0.15)
    assert lines[3].endswith("popularity 0.2000 (1.00x)")
