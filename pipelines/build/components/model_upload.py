"""The ModelUpload component: the pushed model registered in Vertex AI Model Registry.

It runs after the Pusher. If the push gate blessed the model and the Pusher
pushed it, the pushed SavedModel (``<pipeline_root>/<name>/serving/<version>``) is
uploaded as a Vertex AI Model with the configured serving container; nothing
is deployed to an endpoint (that is billed by the hour: do it on purpose).
Otherwise nothing is uploaded, and the reason is logged. The upload itself is
:func:`upload`, a plain function the tests run against a stand-in of the REST
API.
"""
import json
import logging
import os
from typing import Optional

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts
from tfx.types.experimental import simple_artifacts

RESULT_FILE = "model_upload.json"


# What the upload did (``model_upload.json``): TFX's own File type. A custom artifact type
# can't run on Vertex AI: KubeflowV2DagRunner wants its name as ``namespace.Name``, and
# TFX's container entrypoint imports that name as a class path (found by running the
# compiled spec: tests/test_vertex_executed.py).
ModelUploadResult = simple_artifacts.File


def upload(project: str, region: str, artifact_uri: str, display_name: str,
           serving_image: str, labels: Optional[dict] = None, api_endpoint: str = "",
           container: Optional[dict] = None) -> str:
    """Uploads a SavedModel folder as a Vertex AI Model; returns the Model's resource name.

    ``container``: more container arguments of ``Model.upload`` (the command, routes and port
    of :mod:`pipelines.vertex.serve` for the image ``twotower image`` builds; none for a prebuilt one)."""
    os.environ.setdefault("GOOGLE_CLOUD_DISABLE_TELEMETRY", "true")
    from google.cloud import aiplatform  # the Google Cloud client: only when this runs

    options = {"project": project, "location": region}
    if api_endpoint:
        options["api_endpoint"] = api_endpoint
    if api_endpoint.startswith("http://"):  # a local stand-in of the REST API (tests)
        # the Google Cloud client: only when this runs
        from google.auth.credentials import AnonymousCredentials

        options.update(credentials=AnonymousCredentials(), api_transport="rest")
    aiplatform.init(**options)
    model = aiplatform.Model.upload(display_name=display_name, artifact_uri=artifact_uri,
                                    serving_container_image_uri=serving_image,
                                    labels=labels or None, sync=True, **(container or {}))
    return model.resource_name


@component
def ModelUpload(pushed_model: InputArtifact[standard_artifacts.PushedModel],  # noqa: N802
                result: OutputArtifact[ModelUploadResult],
                project: Parameter[str], region: Parameter[str], display_name: Parameter[str],
                serving_image: Parameter[str], labels: Parameter[str] = "{}",
                api_endpoint: Parameter[str] = "", serving_container: Parameter[str] = "{}"):
    """Uploads the pushed model, if one was pushed; writes ``model_upload.json``."""
    if pushed_model.get_int_custom_property("pushed") != 1:
        outcome = {"uploaded": False, "reason": "the Pusher pushed no model (the push gate "
                                                "did not bless it)"}
    else:
        destination = pushed_model.get_string_custom_property("pushed_destination")
        name = upload(project, region, destination, display_name, serving_image,
                      json.loads(labels), api_endpoint, json.loads(serving_container))
        outcome = {"uploaded": True, "model": name, "artifact_uri": destination}
    logging.info("model upload: %s", outcome)
    fileio.makedirs(result.uri)
    with fileio.open(os.path.join(result.uri, RESULT_FILE), "w") as handle:
        handle.write(json.dumps(outcome, indent=2, sort_keys=True))
    result.set_int_custom_property("uploaded", int(outcome["uploaded"]))
