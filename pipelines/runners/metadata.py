"""What ML Metadata (the SQLite store under a pipeline's folder) records, read-only.

A pipeline run is one ``pipeline_run`` context (LocalDagRunner names it by the time it
started); every execution of that run is in it, the ones the cache served too (state
CACHED, with OUTPUT events naming the earlier run's artifacts). So what a run did is read
from its own executions, never from the newest folder of each component: a rerun that the
cache serves reuses an OLDER run's outputs, and a run that skips a component (``training.refit:
false``) has none of its outputs, whatever an earlier run left in ``tfx/``.
"""
from __future__ import annotations

import os
from typing import Dict, List

PIPELINE_RUN = "pipeline_run"  # TFX's context type of one run (tfx.dsl.compiler.constants)
NODE = "node"  # TFX's context type of one component, named "<pipeline>.<component id>"


def store(metadata_path: str):
    """ML Metadata's SQLite store at ``metadata_path``, read-only."""
    from ml_metadata import metadata_store  # ML Metadata: off the CLI's fast path
    from ml_metadata.proto import metadata_store_pb2  # ML Metadata: off the CLI's fast path

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def state_name(state: int) -> str:
    """'COMPLETE', 'CACHED', 'FAILED'... of an execution's ``last_known_state``."""
    from ml_metadata.proto import metadata_store_pb2  # ML Metadata: off the CLI's fast path

    return metadata_store_pb2.Execution.State.Name(state)


def last_run(metadata_path: str) -> Dict[str, dict]:
    """``{component id: {'state': 'COMPLETE'|'CACHED'|..., 'inputs': {key: [Artifact]},
    'outputs': {key: [Artifact]}}}`` of the newest pipeline run recorded at ``metadata_path``
    ({} before any run).

    ``outputs`` are the artifacts the execution recorded as its OUTPUT (for a CACHED one:
    the earlier run's artifacts it reuses), by output key (``model_run``, ``blessing``,
    ``pushed_model``...); ``inputs`` those it read (the Trainer's ``hyperparameters``: the
    Tuner's ``best_hyperparameters``). A component the run did not execute is absent.
    """
    if not os.path.exists(metadata_path):
        return {}
    from ml_metadata.proto import metadata_store_pb2  # ML Metadata: off the CLI's fast path

    db = store(metadata_path)
    runs = db.get_contexts_by_type(PIPELINE_RUN)
    if not runs:
        return {}
    newest = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = sorted(db.get_executions_by_context(newest.id), key=lambda e: e.id)
    node_type = db.get_context_type(NODE).id
    out: Dict[str, dict] = {}
    for execution in executions:  # oldest first: a component's last execution wins
        nodes = [c for c in db.get_contexts_by_execution(execution.id) if c.type_id == node_type]
        if not nodes:
            continue
        component = nodes[0].name.split(".", 1)[-1]
        events = db.get_events_by_execution_ids([execution.id])
        artifacts = {a.id: a for a in db.get_artifacts_by_id([e.artifact_id for e in events])}
        found = {metadata_store_pb2.Event.INPUT: {}, metadata_store_pb2.Event.OUTPUT: {}}
        for event in events:
            key = event.path.steps[0].key if event.path.steps else ""
            if event.type in found and event.artifact_id in artifacts:
                found[event.type].setdefault(key, []).append(artifacts[event.artifact_id])
        out[component] = {"state": state_name(execution.last_known_state),
                          "inputs": found[metadata_store_pb2.Event.INPUT],
                          "outputs": found[metadata_store_pb2.Event.OUTPUT]}
    return out


def output_uri(run: Dict[str, dict], component: str, key: str) -> str:
    """The folder of ``component``'s output ``key`` in ``run`` (:func:`last_run`), or ''."""
    found = (run.get(component) or {}).get("outputs", {}).get(key) or []
    return found[-1].uri if found else ""


def push_destination(artifact) -> str:
    """The serving folder a PushedModel artifact records as pushed, or '' (not pushed)."""
    props = artifact.custom_properties
    if props["pushed"].int_value != 1:
        return ""
    return props["pushed_destination"].string_value


def pushed_models(metadata_path: str) -> List[str]:
    """The serving folders that a Pusher execution which COMPLETED recorded as pushed,
    oldest first by the newest run that served each (pushed it, or reused it from the cache):
    the last one is what the pipeline serves now.

    The Pusher copies the model into ``serving/<version>`` in place: a push
    that failed midway (a full disk, a killed run) leaves a partial folder
    that looks like a version. Only what ML Metadata records as pushed by a
    finished execution is served. A rerun the cache served (CACHED) reuses the
    push it found, which may be older than another run's: it is then served again.
    """
    if not os.path.exists(metadata_path):
        return []
    from ml_metadata.proto import metadata_store_pb2  # ML Metadata: off the CLI's fast path

    db = store(metadata_path)
    complete = metadata_store_pb2.Execution.COMPLETE
    cached = metadata_store_pb2.Execution.CACHED  # a rerun reusing the push (the cache)
    found = []
    for artifact in db.get_artifacts_by_type("PushedModel"):  # [] before any push
        destination = push_destination(artifact)
        if not destination:
            continue
        events = db.get_events_by_artifact_ids([artifact.id])
        producers = db.get_executions_by_id([e.execution_id for e in events
                                             if e.type == metadata_store_pb2.Event.OUTPUT])
        states = [x.last_known_state for x in producers]
        if complete in states and all(state in (complete, cached) for state in states):
            found.append((max(x.id for x in producers), destination))
    return [destination for _, destination in sorted(found)]
