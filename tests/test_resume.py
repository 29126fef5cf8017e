"""A run killed mid-pipeline, then rerun: it resumes from ML Metadata's cache and keeps
every earlier serving version (FAULTS.md)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, demo_raw

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def states(metadata, pipeline):
    """``{component: [execution states, oldest first]}`` from ML Metadata."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    names = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
    out = {}
    for execution in sorted(store.get_executions(), key=lambda e: e.id):
        for context in store.get_contexts_by_execution(execution.id):
            if context.name.startswith(pipeline + "."):
                out.setdefault(context.name[len(pipeline) + 1:], []).append(
                    names[execution.last_known_state])
    return out


def start(config, root):
    return subprocess.Popen([sys.executable, "-m", "pipelines", "run", "--config", str(config)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_a_run_killed_in_the_trainer_resumes_from_the_cache(tmp_path, small_data):
    root = tmp_path / "root"
    raw = demo_raw(small_data)
    raw["pipeline"].update(root=str(root), name="resume", enable_cache=True,
                           min_lift_over_popularity=None)
    raw["training"]["epochs"] = 2
    raw["model"]["top_k"] = [10, 50]
    first = tmp_path / "first.json"
    first.write_text(json.dumps(raw), encoding="utf-8")
    done = start(first, root)
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, out + err
    versions = sorted(os.listdir(root / "serving"))
    assert len(versions) == 1

    raw["training"]["epochs"] = 3  # a new Trainer (and Transform module); same data
    second = tmp_path / "second.json"
    second.write_text(json.dumps(raw), encoding="utf-8")
    earlier = set(os.listdir(root / "logs"))
    killed = start(second, root)
    deadline = time.time() + 300
    while time.time() < deadline:  # until its Trainer is running, then SIGKILL everything
        logs = [root / "logs" / n for n in set(os.listdir(root / "logs")) - earlier
                if n.startswith("run-")]
        if logs and "Component Trainer is running." in logs[0].read_text(errors="replace"):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the second run never reached the Trainer")
    time.sleep(3)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert sorted(os.listdir(root / "serving")) == versions  # nothing pushed, v1 untouched

    again = start(second, root)  # the same config: finishes what the killed run started
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, out + err
    assert "input unchanged, kept:" in out
    found = states(str(root / "metadata.sqlite"), "resume")
    # run 1 executed everything; run 2 reused the data steps and finished Transform before
    # it was killed (its Trainer stays RUNNING: no result); run 3 reused all of that
    assert found["ParquetExampleGen"] == ["COMPLETE", "CACHED", "CACHED"]
    assert found["StatisticsGen"] == ["COMPLETE", "CACHED", "CACHED"]
    assert found["Transform"] == ["COMPLETE", "COMPLETE", "CACHED"]
    assert found["Trainer"] == ["COMPLETE", "RUNNING", "COMPLETE"]
    now = sorted(os.listdir(root / "serving"))
    assert len(now) == 2 and now[0] == versions[0]  # versioned: the first is still there
    from pipelines.runners.local import results

    res = results(str(root))
    assert res["metrics"]["status"] == "completed" and len(res["metrics"]["epochs"]) == 3
    assert res["serving_model"].endswith(now[1])
