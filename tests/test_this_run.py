"""The result screen, `runs` and `recommend` read what THIS run did, never an earlier run's record.

The runs are written into a real ML Metadata store the way LocalDagRunner records them: one
``pipeline_run`` context per run, one ``node`` context per component, an execution per
component with OUTPUT events naming its artifacts, and for a rerun the cache served, CACHED
executions whose OUTPUT events name the earlier run's artifacts. The artifacts' folders hold
the files the components write (``training_metrics.json``, ``gate.json``, the pushed model).
"""
import json
import os
import shutil

import pytest

from pipelines.api import outcome
from pipelines.config.schema import ConfigError
from pipelines.terminal.console import result_lines
from pipelines.recommend import find_model
from pipelines.inspect import runs
from pipelines.runners.local import results

PIPELINE = "p"


class Store:
    """A pipeline folder with ML Metadata and the files of the runs put into it."""

    def __init__(self, root):
        from ml_metadata import metadata_store
        from ml_metadata.proto import metadata_store_pb2 as mlmd

        self.mlmd, self.root = mlmd, str(root)
        os.makedirs(os.path.join(self.root, "tfx"), exist_ok=True)
        config = mlmd.ConnectionConfig()
        config.sqlite.filename_uri = os.path.join(self.root, "metadata.sqlite")
        config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.db = metadata_store.MetadataStore(config)
        self.run_type = self.db.put_context_type(mlmd.ContextType(name="pipeline_run"))
        self.node_type = self.db.put_context_type(mlmd.ContextType(name="node"))
        self.nodes, self.types, self.runs, self.next_id = {}, {}, 0, 1

    def _type(self, put, kind, name):
        if (kind, name) not in self.types:
            self.types[kind, name] = put(kind(name=name))
        return self.types[kind, name]

    def _node(self, component):
        if component not in self.nodes:
            [self.nodes[component]] = self.db.put_contexts([self.mlmd.Context(
                type_id=self.node_type, name=f"{PIPELINE}.{component}")])
        return self.nodes[component]

    def folder(self, component, key, record=None, name=None):
        """A new output folder of ``component`` (numbered like TFX's), with ``record``
        written as JSON into ``name``."""
        path = os.path.join(self.root, "tfx", component, key, str(self.next_id))
        self.next_id += 1
        os.makedirs(path)
        if record is not None:
            with open(os.path.join(path, name), "w", encoding="utf-8") as handle:
                json.dump(record, handle)
        return path

    def artifact(self, kind, uri, pushed_to=None):
        artifact = self.mlmd.Artifact(type_id=self._type(self.db.put_artifact_type,
                                                         self.mlmd.ArtifactType, kind), uri=uri)
        if pushed_to is not None:
            artifact.custom_properties["pushed"].int_value = 1
            artifact.custom_properties["pushed_destination"].string_value = pushed_to
        [artifact_id] = self.db.put_artifacts([artifact])
        return self.db.get_artifacts_by_id([artifact_id])[0]

    def run(self, executions):
        """One pipeline run: ``{component: (state, {output key: artifact})}``."""
        self.runs += 1
        [run] = self.db.put_contexts([self.mlmd.Context(type_id=self.run_type,
                                                        name=f"2024-01-0{self.runs}T00:00")])
        for component, (state, outputs) in executions.items():
            execution = self.mlmd.Execution(
                type_id=self._type(self.db.put_execution_type, self.mlmd.ExecutionType,
                                   component),
                last_known_state=getattr(self.mlmd.Execution, state))
            events = []
            for key, artifact in outputs.items():
                event = self.mlmd.Event(type=self.mlmd.Event.OUTPUT)
                event.path.steps.add().key = key
                event.path.steps.add().index = 0
                events.append((artifact, event))
            self.db.put_execution(execution, events, [self.db.get_contexts_by_id(
                [run])[0], self.db.get_contexts_by_id([self._node(component)])[0]])

    def trained(self, recall, refit=None, version=None):
        """A whole run's artifacts: Trainer (recall@10), gate, [RefitTrainer], Pusher."""
        metrics = {"status": "completed", "evaluation": {
            "split": "eval", "queries": 50, "model": {"recall_at_10": recall},
            "popularity": {"recall_at_10": 0.1}}}
        out = {"Trainer": {"model_run": self.artifact("ModelRun", self.folder(
            "Trainer", "model_run", metrics, "training_metrics.json"))},
            "PopularityGate": {"blessing": self.artifact("ModelBlessing", self.folder(
                "PopularityGate", "blessing", {"blessed": True, "reason": "above"},
                "gate.json"))}}
        if refit:
            out["RefitTrainer"] = {"model_run": self.artifact("ModelRun", self.folder(
                "RefitTrainer", "model_run", {"status": "completed", "role": "refit",
                                              "refit": refit}, "training_metrics.json"))}
        serving = os.path.join(self.root, "serving", str(version))
        os.makedirs(serving)
        open(os.path.join(serving, "saved_model.pb"), "wb").close()
        out["Pusher"] = {"pushed_model": self.artifact("PushedModel", self.folder(
            "Pusher", "pushed_model"), pushed_to=serving)}
        return out


def executed(artifacts, state="COMPLETE"):
    return {component: (state, outputs) for component, outputs in artifacts.items()}


def recall_of(res):
    return res["metrics"]["evaluation"]["model"]["recall_at_10"]


def test_refit_false_after_a_refit_run_is_not_reported_as_a_refit(tmp_path):
    store = Store(tmp_path / PIPELINE)
    store.run(executed(store.trained(0.3, refit={"epochs": 2, "rows": 3430}, version=100)))
    assert "the refit on train + eval trains 2 epochs over 3430 rows" in "\n".join(
        result_lines(results(store.root)))  # the refit run itself says so
    second = store.trained(0.4, version=200)  # training.refit: false: no RefitTrainer
    store.run(executed(second))
    res = results(store.root)
    assert res["refit"] is None, res["refit"]
    assert res["pushed"] and res["serving_model"].endswith(os.path.join("serving", "200"))
    screen = "\n".join(result_lines(res))
    assert "refit on train + eval" not in screen, screen
    assert f"serving model: {res['serving_model']}" in screen


def test_a_cached_rerun_whose_pushed_folder_was_moved_is_not_reported_as_an_older_one(tmp_path):
    store = Store(tmp_path / PIPELINE)
    store.run(executed(store.trained(0.3, version=100)))  # A, on the old rows
    edited = store.trained(0.4, version=200)  # B, on the edited data
    store.run(executed(edited))
    moved = tmp_path / "elsewhere"
    shutil.move(os.path.join(store.root, "serving", "200"), moved)
    store.run(executed(edited, "CACHED"))  # the unchanged rerun: the cache serves B's outputs
    res = results(store.root)
    assert recall_of(res) == 0.4  # B's own record
    assert res["reused_push"] and not res["pushed"]
    assert res["serving_model"] == ""
    assert res["serving_missing"] == res["run_push"] == os.path.join(store.root, "serving", "200")
    screen = "\n".join(result_lines(res))
    assert "serving/100" not in screen, screen
    assert (f"serving model: NONE: this run's model was reused from ML Metadata's cache as "
            f"{res['run_push']}, which is gone (moved or deleted)") in screen
    code, status, why = outcome(res)
    assert (code, status) == (1, "not served") and "serving/200" in why
    line = runs.entry(0.0, "f", res, status, "log", why)
    assert line["serving_version"] is None and line["status"] == "not served"
    with pytest.raises(ConfigError) as exc:  # recommend does not serve A in B's place
        find_model(store.root)
    assert "serving/200, is gone (moved or deleted)" in str(exc.value)
    shutil.move(str(moved), os.path.join(store.root, "serving", "200"))  # restored: served
    assert find_model(store.root) == os.path.join(store.root, "serving", "200")


def test_a_rerun_the_cache_serves_from_an_older_run_reports_and_serves_that_run(tmp_path):
    """A config changed back: the cache serves the FIRST run's outputs, though a second run
    pushed a newer version since; the screen, `runs` and `recommend` all name the first's."""
    store = Store(tmp_path / PIPELINE)
    first = store.trained(0.3, version=100)
    store.run(executed(first))
    store.run(executed(store.trained(0.4, version=200)))
    store.run(executed(first, "CACHED"))
    res = results(store.root)
    a = os.path.join(store.root, "serving", "100")
    assert recall_of(res) == 0.3
    assert res["serving_model"] == res["run_push"] == a and res["reused_push"]
    assert f"serving model: {a} (unchanged input and config" in "\n".join(result_lines(res))
    assert outcome(res) == (0, "cached", "")
    assert runs.entry(0.0, "f", res, "cached", "log")["serving_version"] == "100"
    assert find_model(store.root) == a


def test_a_run_that_did_not_push_names_the_model_still_served(tmp_path):
    store = Store(tmp_path / PIPELINE)
    store.run(executed(store.trained(0.3, version=100)))
    second = store.trained(0.05, version=200)
    store.run({"Trainer": ("COMPLETE", second["Trainer"]),
               "PopularityGate": ("COMPLETE", second["PopularityGate"])})
    shutil.rmtree(os.path.join(store.root, "serving", "200"))  # never pushed
    res = results(store.root)
    assert recall_of(res) == 0.05 and not res["pushed"] and not res["reused_push"]
    assert ("serving model: none pushed by this run (newest earlier one: "
            f"{os.path.join(store.root, 'serving', '100')})") in result_lines(res)
