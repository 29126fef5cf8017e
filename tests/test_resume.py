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


def kill_when_running(config, root, component):
    """Starts a run and SIGKILLs its whole process group once ``component`` is running."""
    earlier = set(os.listdir(root / "logs"))
    run = start(config, root)
    deadline = time.time() + 300
    while time.time() < deadline:
        logs = [root / "logs" / n for n in set(os.listdir(root / "logs")) - earlier
                if n.startswith("run-")]
        if logs and f"Component {component} is running." in logs[0].read_text(errors="replace"):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the run never reached {component}")
    time.sleep(3)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()


def test_a_run_killed_in_transform_or_the_trainer_resumes_from_the_cache(tmp_path, small_data):
    root = tmp_path / "root" / "resume"
    raw = demo_raw(small_data)
    raw["pipeline"].update(root=str(root.parent), name="resume", enable_cache=True,
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

    raw["training"]["epochs"] = 3  # a new Trainer module; same data
    # and a new Transform module: a feature's transform (a training-only change would reuse
    # the Transform from the cache: each module its own cache key, issue 33)
    price = next(f for f in raw["candidate_tower"]["features"] if f["name"] == "price")
    price["transform"] = "zscore"
    second = tmp_path / "second.json"
    second.write_text(json.dumps(raw), encoding="utf-8")
    for component in ("Transform", "Trainer"):  # killed in Transform, then in the Trainer
        kill_when_running(second, root, component)
        assert sorted(os.listdir(root / "serving")) == versions  # nothing pushed, v1 untouched

    again = start(second, root)  # the same config: finishes what the killed run started
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, out + err
    assert "input unchanged, kept:" in out
    found = states(str(root / "metadata.sqlite"), "resume")
    # run 1 executed everything; run 2 reused the data steps and was killed in Transform
    # (left RUNNING: no result); run 3 ran Transform again, finished it and was killed in the
    # Trainer; run 4 reused all of that and ran only the Trainer and what follows
    assert found["ParquetExampleGen"] == ["COMPLETE", "CACHED", "CACHED", "CACHED"]
    assert found["StatisticsGen"] == ["COMPLETE", "CACHED", "CACHED", "CACHED"]
    assert found["Transform"] == ["COMPLETE", "RUNNING", "COMPLETE", "CACHED"]
    assert found["Trainer"] == ["COMPLETE", "RUNNING", "COMPLETE"]
    now = sorted(os.listdir(root / "serving"))
    assert len(now) == 2 and now[0] == versions[0]  # versioned: the first is still there
    from pipelines.runners.local import results

    res = results(str(root))
    assert res["metrics"]["status"] == "completed" and len(res["metrics"]["epochs"]) == 3
    assert res["serving_model"].endswith(now[1])
    from pipelines.inspect import runs  # the killed runs are listed, as killed

    assert [r["status"] for r in runs.read(str(root / "logs"))] == [
        "pushed", "killed", "killed", "pushed"]
