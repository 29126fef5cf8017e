"""`twotower tune` end to end on the small synthetic log: a two-trial search over a real
Transform output, the tuned YAML it writes (validate accepts it, `twotower run` trains it),
a `twotower run` of the config with its `tuning:` section (the Tuner step, whose output ML
Metadata records as the Trainer's input and whose values the Trainer trained with), and a
search killed in the middle of a trial and started again, which resumes without repeating a
finished trial. Slow: it runs the
pipeline up to the Transform for the search, and twice in full (``training.refit: false``;
the second run's Transform cached)."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT, demo_raw
from pipelines.config.schema import apply_overrides

pytestmark = pytest.mark.slow


def tune(config, *flags):
    return cli("tune", config, *flags)


def cli(command, config, *flags):
    return subprocess.run([sys.executable, "-m", "pipelines", command, "--config", str(config),
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


@pytest.fixture(scope="module")
def trained(searched):
    """`twotower run` of the config with its tuning: section, then of the tuned YAML the
    first search wrote (in the same pipeline folder: the second run's Transform is cached);
    what the first run recorded is read before the second one runs."""
    from pipelines.runners.local import results
    from pipelines.runners.metadata import last_run

    tmp = searched["tmp"]
    assert searched["first"].returncode == 0, searched["first"].stderr[-2000:]
    tuned = tmp / "first.tuned.yaml"
    shutil.copy(tmp / "my.tuned.yaml", tuned)  # the resume test writes my.tuned.yaml again
    folder = str(tmp / "root" / "tune-test")
    found = {"tuned": tuned}
    for name, config in (("with_tuner", searched["config"]), ("tuned_yaml", tuned)):
        done = cli("run", config, "--set", "training.refit=false")
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        found[name] = {"done": done, "run": last_run(os.path.join(folder, "metadata.sqlite")),
                       "results": results(folder)}
        if name == "with_tuner":  # its report, before the second run is the newest
            shown = subprocess.run([sys.executable, "-m", "pipelines", "inspect", folder,
                                    "--out", str(tmp / "report")], capture_output=True,
                                   text=True, cwd=ROOT)
            assert shown.returncode == 0, shown.stderr[-2000:]
            found["report"] = (tmp / "report" / "report.html").read_text()
    return found


def hyperparameters(artifact):
    with open(os.path.join(artifact.uri, "best_hyperparameters.txt")) as handle:
        return json.load(handle)


def embedding_widths(record):
    """``{variable: width}`` of the id embeddings in the Trainer's towers checkpoint."""
    import tensorflow as tf

    return {name: shape[1] for name, shape in tf.train.list_variables(
        record["towers_checkpoint"]) if name.endswith("embeddings/0/embeddings/.ATTRIBUTES/"
                                                      "VARIABLE_VALUE")}


def test_the_trainer_trains_the_tuner_steps_best_hyperparameters(trained):
    found = trained["with_tuner"]
    run = found["run"]
    assert "] Tuner ... done in" in found["done"].stdout
    # the result screen names the search, the trial trained and the slice (runners.trials)
    assert "tuner: 2 trials (0 stopped); the Trainer trained trial " in found["done"].stdout
    assert "validation slice: the last 0.1 of train by time" in found["done"].stdout
    assert run["Tuner"]["state"] == "COMPLETE"
    best = run["Tuner"]["outputs"]["best_hyperparameters"]
    used = run["Trainer"]["inputs"]["hyperparameters"]
    assert len(best) == 1 and [a.id for a in used] == [best[0].id]  # ML Metadata's lineage
    values = hyperparameters(best[0])["values"]
    record = found["results"]["metrics"]
    assert record["status"] == "completed"
    assert record["tuned"] == {k: v for k, v in values.items() if not k.startswith("tuner/")}
    # run_fn applied them: the optimizer's rate each epoch, the towers' embedding width
    lr = values["training.learning_rate"]
    assert 0.001 <= lr <= 0.01 and lr != 0.01  # the config as written says 0.01
    assert record["learning_rate"] == pytest.approx(lr)
    assert all(e["learning_rate"] == pytest.approx(lr, rel=1e-6) for e in record["epochs"])
    assert set(embedding_widths(record).values()) == {values["model.embedding_dim"]}


def hparams_of(folder):
    """The HParams plugin's session-start values in a TensorBoard run's own event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    events = EventAccumulator(folder)
    events.Reload()
    for content in events.PluginTagToContent(metadata.PLUGIN_NAME).values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            return {k: v.number_value for k, v in data.session_start_info.hparams.items()}
    return None


def test_the_report_and_tensorboard_show_the_tuner_steps_trials(trained):
    from pipelines.runners.trials import kept_search, read_search

    found = trained["with_tuner"]
    kept = read_search(kept_search(found["results"]["tuner_results"]))
    trials, tuned = kept["trials"], found["results"]["metrics"]["tuned"]
    assert [t["trial"] for t in trials] == ["0", "1"] and kept["objective"] == "recall_at_10"
    assert kept["slice"]["slice_rows"] > 0 and "ease" in kept["baselines"]
    html = trained["report"]
    assert "<h2>Hyperparameter search</h2>" in html and "2 trials of the Tuner step" in html
    assert f"{kept['slice']['slice_first']} to {kept['slice']['slice_last']}" in html
    for t in trials:  # a row each: its objective, and the trained one marked
        assert f"<td class='n'>{t['objective']:.4f}</td>" in html
        mark = "- *" if t["values"] == tuned else "-"
        assert f"<td class='n'>{t['seconds']:.0f}</td><td>{mark}</td>" in html
    assert sum(t["values"] == tuned for t in trials) == 1
    for t in trials:  # TensorBoard's HParams view: each trial's run holds its values
        assert hparams_of(os.path.join(kept["tensorboard"], t["trial"])) == pytest.approx(
            t["values"])


def test_twotower_run_trains_the_tuned_yaml(trained):
    found = trained["tuned_yaml"]
    run, record = found["run"], found["results"]["metrics"]
    written = yaml.safe_load(trained["tuned"].read_text())
    assert "Tuner" not in run and "hyperparameters" not in run["Trainer"]["inputs"]
    assert run["Transform"]["state"] == "CACHED"  # the tuned values leave the Transform as it was
    assert record["status"] == "completed" and "tuned" not in record
    assert record["learning_rate"] == written["training"]["learning_rate"]
    assert set(embedding_widths(record).values()) == {written["model"]["embedding_dim"]}


def test_a_search_killed_mid_trial_resumes_without_repeating_a_finished_one(searched):
    tmp, config = searched["tmp"], searched["config"]
    before = records(tmp)
    assert len(before) == 2
    (tmp / "mine.yaml").write_text("# the user's own file\n")
    refused = tune(config, "--trials", "3", "--out", str(tmp / "mine.yaml"))
    assert refused.returncode == 2 and "twotower did not write it" in refused.stderr
    assert (tmp / "mine.yaml").read_text() == "# the user's own file\n"
    killed = interrupted_in_a_new_trial(config, tmp, "--trials", "3")
    assert records(tmp) == before, killed  # the third trial never finished
    again = tune(config, "--trials", "3")  # replaces its own my.tuned.yaml
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert "resumed: 2 finished trial(s) kept" in again.stdout
    after = records(tmp)
    assert len(after) == 3
    for name, (mtime, record) in before.items():  # kept as they were: never trained again
        assert after[name] == (mtime, record)
    assert again.stdout.count("trial 0:") == 0 and again.stdout.count("trial 1:") == 0


def interrupted_in_a_new_trial(config, tmp, *flags, timeout=900):
    """Starts ``twotower tune`` and kills it (SIGKILL: nothing gets to clean up) once
    keras-tuner has begun a trial that has no record yet, a few seconds into its training.
    Returns what the killed process printed."""
    search = tmp / "root" / "tune-test" / "tune" / "search"
    known = {folder for folder, _, _ in os.walk(search)}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "tune", "--config",
                             str(config), *flags], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            new = [f for f, _, _ in os.walk(search)
                   if f not in known and os.path.basename(f).startswith("trial_")
                   and os.path.basename(f) != "trial_records"]
            if new:
                time.sleep(5)  # into the trial's first epoch
                break
            time.sleep(0.5)
        assert proc.poll() is None, "tune ended before a new trial began:\n" + proc.stdout.read()
        proc.kill()
        return proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()


def slice_record(folder):
    from trainer.tuning_space import SLICE_FILE

    found = [os.path.join(f, SLICE_FILE) for f, _, names in os.walk(folder) if SLICE_FILE in names]
    assert len(found) == 1, found
    return json.load(open(found[0]))


def test_a_user_time_split_is_sliced_per_query(searched, small_data, tmp_path):
    """Under ``data.split.method: user_time`` the slice is each query's own latest train rows:
    every query with an earlier row is scored, where the global cut scores those active at
    the end only (the cut itself: tests/test_validation_slice.py)."""
    raw = apply_overrides(searched["raw"], [
        f"pipeline.root={tmp_path / 'root'}", "data.split.method=user_time",
        "tuning.trials=1", "tuning.space={training.learning_rate: {values: [0.004, 0.005]}}"])
    config = tmp_path / "per-query.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = tune(config)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "validation slice: each query's last 0.1 of its train rows by time" in done.stdout
    per_query = slice_record(tmp_path / "root")
    global_cut = slice_record(searched["tmp"] / "root" / "tune-test" / "tune")
    assert per_query["per_query"] is True and global_cut.get("per_query") is False
    # every query active before its own latest rows is in the slice, not only the late ones
    assert per_query["held_out_queries"] > global_cut["held_out_queries"]
    assert (per_query["queries"] + per_query["queries_without_new_items"]
            == per_query["held_out_queries"])
    assert per_query["queries"] > global_cut["queries"], (per_query, global_cut)
    assert "each query's last 0.1" in (tmp_path / "per-query.tuned.yaml").read_text()
