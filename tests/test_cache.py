"""Caching is on by default (TFX's convention): a rerun with unchanged input is served from it.

The demo config, with nothing about caching in it, run twice up to StatisticsGen
on the same files: ML Metadata records the second run's executions as CACHED
(the first's COMPLETE), and no component's output is written again. The same
default holds on Vertex AI (`vertex.enable_caching`).
"""
import os

import pytest

from pipelines.config.schema import Config
from tests.conftest import demo_raw

pytestmark = pytest.mark.e2e


def test_the_cache_is_on_by_default_locally_and_on_vertex(raw_config):
    cfg = Config.from_dict(raw_config)
    assert "enable_cache" not in raw_config.get("pipeline", {})
    assert cfg.pipeline.enable_cache is True and cfg.vertex.enable_caching is True


def test_a_rerun_of_an_unchanged_pipeline_is_served_from_the_cache(tmp_path, small_data):
    from pipelines.build.builder import paths
    from pipelines.runners.local import cached_components, run_local
    from pipelines.runners.metadata import last_run, output_uri
    from test_resume import states

    raw = demo_raw(small_data)
    raw["pipeline"].update(root=str(tmp_path), name="cache-test")
    cfg = Config.from_dict(raw)
    root = str(tmp_path / "cache-test")
    run_local(cfg, log=lambda *_: None, until="StatisticsGen")
    outputs = sorted(os.listdir(os.path.join(root, "tfx", "StatisticsGen", "statistics")))
    run_local(cfg, log=lambda *_: None, until="StatisticsGen")
    metadata = paths(root)["metadata"]
    found = states(metadata, "cache-test")
    assert found["ParquetExampleGen"] == ["COMPLETE", "CACHED"], found
    assert found["StatisticsGen"] == ["COMPLETE", "CACHED"], found
    assert cached_components(metadata, "cache-test") == ["ParquetExampleGen", "StatisticsGen"]
    # the rerun's own record (what the result screen reads) is its CACHED executions,
    # naming the first run's outputs
    rerun = last_run(metadata)
    assert {c: r["state"] for c, r in rerun.items()} == {"ParquetExampleGen": "CACHED",
                                                        "StatisticsGen": "CACHED"}
    assert [os.path.basename(output_uri(rerun, "StatisticsGen", "statistics"))] == outputs
    # nothing was computed again: the cached execution reuses the first one's output
    assert sorted(os.listdir(os.path.join(root, "tfx", "StatisticsGen", "statistics"))) == outputs


def test_a_feature_added_between_runs_reaches_the_schema_the_rerun_imports(tmp_path, small_data):
    """ImportSchemaGen's cache key is its file's path: the schema is named by its content, so
    a config with one more feature imports the new schema instead of the cached old one (which
    made the rerun's Transform fail on the new history column)."""
    from pipelines.build.builder import paths
    from test_resume import states

    from pipelines.runners.local import run_local

    raw = demo_raw(small_data)
    raw["pipeline"].update(root=str(tmp_path), name="schema-cache")
    run_local(Config.from_dict(raw), log=lambda *_: None, until="ImportSchemaGen")
    raw["query_tower"]["features"].append({"name": "last", "kind": "history", "max_length": 3})
    run_local(Config.from_dict(raw), log=lambda *_: None, until="ImportSchemaGen")
    root = str(tmp_path / "schema-cache")
    assert states(paths(root)["metadata"], "schema-cache")["ImportSchemaGen"] == [
        "COMPLETE", "COMPLETE"]
    imported = sorted(os.listdir(os.path.join(root, "tfx", "ImportSchemaGen", "schema")))
    with open(os.path.join(root, "tfx", "ImportSchemaGen", "schema", max(imported, key=int),
                           "schema.pbtxt"), encoding="utf-8") as handle:
        assert '"__twotower_history_last"' in handle.read()
    schemas = [n for n in os.listdir(paths(root)["modules"]) if n.startswith("schema")]
    assert len(schemas) == 1, schemas  # the older schema file is gone


def test_a_rerun_the_cache_serves_whole_exits_0_with_the_model_it_had():
    from pipelines.api import outcome
    from pipelines.terminal.console import result_lines

    done = {"metrics": {"status": "completed"}, "gate": {"blessed": True, "reason": "r"},
            "serving_model": "/r/serving/17", "metrics_file": "m"}
    assert outcome(dict(done, pushed=True)) == (0, "pushed", "")
    cached = dict(done, pushed=False, reused_push=True)
    assert outcome(cached) == (0, "cached", "")
    assert "serving model: /r/serving/17 (unchanged input and config: the run was served from " \
           "ML Metadata's cache, pipeline.enable_cache)" in result_lines(cached)
    assert outcome(dict(done, pushed=False))[0] == 1  # a push expected and not made


def test_a_push_reused_by_a_cached_pusher_is_still_served(tmp_path):
    """ML Metadata after a rerun the cache served: the PushedModel has two producers, the
    Pusher that COMPLETED and the CACHED one that reused it; the version stays served. A
    producer that never completed (a push cut short) still keeps it out."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    from pipelines.runners.local import pushed_models

    path = str(tmp_path / "metadata.sqlite")
    config = mlmd.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    kind = store.put_artifact_type(mlmd.ArtifactType(name="PushedModel"))
    run = store.put_execution_type(mlmd.ExecutionType(name="Pusher"))

    def pushed(where, *states):
        artifact = mlmd.Artifact(type_id=kind, uri=where)
        artifact.custom_properties["pushed"].int_value = 1
        artifact.custom_properties["pushed_destination"].string_value = where
        [artifact_id] = store.put_artifacts([artifact])
        for state in states:
            [execution_id] = store.put_executions([mlmd.Execution(type_id=run,
                                                                  last_known_state=state)])
            store.put_events([mlmd.Event(artifact_id=artifact_id, execution_id=execution_id,
                                         type=mlmd.Event.OUTPUT)])

    pushed("/r/serving/1", mlmd.Execution.COMPLETE, mlmd.Execution.CACHED)
    pushed("/r/serving/2", mlmd.Execution.RUNNING, mlmd.Execution.CACHED)
    assert pushed_models(path) == ["/r/serving/1"]


@pytest.mark.slow
def test_a_training_change_reuses_both_transforms_and_a_feature_change_reruns_them(
        tmp_path, small_data):
    """`twotower run --set training.learning_rate=...` after a run: ExampleGen, StatisticsGen,
    ImportSchemaGen, Transform and RefitTransform are CACHED in ML Metadata (each module is its
    own cache key: its own folder, so its own wheel hash, and the Transform module holds
    nothing of ``training``); only the Trainer runs again. Changing a feature's transform
    re-runs both Transforms (the data, so ExampleGen and StatisticsGen, stay cached)."""
    import json
    import subprocess
    import sys

    from conftest import ROOT
    from pipelines.build.builder import paths
    from pipelines.build.codegen import MODULE_FILES
    from test_resume import states

    raw = demo_raw(small_data)
    raw["pipeline"].update(root=str(tmp_path / "root"), name="lr-cache")
    raw["training"]["epochs"] = 1
    raw["model"]["top_k"] = [10, 50]  # the small catalog has 60 candidates
    config = tmp_path / "config.json"
    config.write_text(json.dumps(raw), encoding="utf-8")
    root = tmp_path / "root" / "lr-cache"
    modules = {k: root / "modules" / relative for k, relative in MODULE_FILES.items()}

    def run(*overrides):
        done = subprocess.run([sys.executable, "-m", "pipelines", "run", "--config", str(config),
                               "--quiet"] + [f"--set={o}" for o in overrides],
                              capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return {k: path.read_bytes() for k, path in modules.items()}

    first = run()
    after_lr = run("training.learning_rate=0.005")
    assert after_lr["transform"] == first["transform"] and after_lr["trainer"] != first["trainer"]
    found = states(paths(str(root))["metadata"], "lr-cache")
    for component in ("ParquetExampleGen", "StatisticsGen", "ImportSchemaGen", "Transform",
                      "RefitTransform"):
        assert found[component] == ["COMPLETE", "CACHED"], (component, found)
    for component in ("Trainer", "RefitTrainer", "Pusher"):
        assert found[component] == ["COMPLETE", "COMPLETE"], (component, found)

    run("training.learning_rate=0.005", "candidate_tower.features.2.transform=zscore")  # price
    found = states(paths(str(root))["metadata"], "lr-cache")
    for component in ("ParquetExampleGen", "StatisticsGen"):
        assert found[component] == ["COMPLETE", "CACHED", "CACHED"], (component, found)
    for component in ("Transform", "RefitTransform", "Trainer"):
        assert found[component] == ["COMPLETE", "CACHED" if "Transform" in component
                                    else "COMPLETE", "COMPLETE"], (component, found)
