"""The VectorSearchDeploy component: the pushed model served from Vertex AI Vector Search.

It runs after the Pusher when ``vertex.vector_search`` is set. If the Pusher pushed the
model, the model's ``vector_search/`` export becomes (or overwrites) the Vector Search
index, deployed on its index endpoint, and its ``query_tower/`` SavedModel is uploaded and
deployed to an endpoint (:func:`pipelines.vertex.vector_search.deploy`); both are billed
per node hour while deployed. Otherwise nothing is deployed, and the reason is logged.
``vector_search.json`` (a File artifact, as ModelUpload's) records what was done.
"""
import json
import logging
import os

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts
from tfx.types.experimental import simple_artifacts

from pipelines.vertex.vector_search import deploy

RESULT_FILE = "vector_search.json"
MANIFEST = os.path.join("assets.extra", "vector_search.json")  # trainer.vector_export's


@component
def VectorSearchDeploy(pushed_model: InputArtifact[standard_artifacts.PushedModel],  # noqa: N802
                       result: OutputArtifact[simple_artifacts.File],
                       project: Parameter[str], region: Parameter[str],
                       display_name: Parameter[str], settings: Parameter[str],
                       labels: Parameter[str] = "{}", api_endpoint: Parameter[str] = ""):
    """Deploys the pushed model's index and query tower, if one was pushed; writes
    ``vector_search.json``."""
    if pushed_model.get_int_custom_property("pushed") != 1:
        outcome = {"deployed": False, "reason": "the Pusher pushed no model (the push gate "
                                                "did not bless it)"}
    else:
        destination = pushed_model.get_string_custom_property("pushed_destination")
        with fileio.open(os.path.join(destination, MANIFEST)) as handle:
            manifest = json.loads(handle.read())
        dimensions, count = int(manifest["dimensions"]), int(manifest["count"])
        # the artifact's copy of the model is whole; the Pusher's serving folder lacks
        # query_tower/saved_model.pb (it copies only the top saved_model.pb)
        tower = pushed_model.uri.rstrip("/") + "/query_tower"
        outcome = dict(deploy(project, region, destination, dimensions, display_name,
                              json.loads(settings), json.loads(labels), api_endpoint,
                              query_tower_uri=tower, count=count),
                       deployed=True, artifact_uri=destination)
    logging.info("vector search: %s", outcome)
    fileio.makedirs(result.uri)
    with fileio.open(os.path.join(result.uri, RESULT_FILE), "w") as handle:
        handle.write(json.dumps(outcome, indent=2, sort_keys=True))
    result.set_int_custom_property("deployed", int(outcome["deployed"]))
