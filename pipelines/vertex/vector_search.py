"""Serving on Vertex AI: the pushed model's catalog in Vector Search, its query tower on an
endpoint (``vertex.vector_search``; off by default: both are billed per node hour).

:func:`deploy` runs in the compiled pipeline's VectorSearchDeploy step, after the Pusher,
with the real ``google-cloud-aiplatform`` client: the index named ``display_name`` is
created from the pushed model's ``vector_search/`` folder (a tree-AH index, dot product,
the export's dimensions), or, if it exists, its embeddings are overwritten by it; the index
endpoint of that name is created (public) if missing and the index deployed to it (once:
a deployed index is updated in place by the index update); the query tower
(``query_tower/``, from the PushedModel artifact) is uploaded as a Model and deployed to the endpoint of that name.
:func:`neighbours` queries such a pair (`twotower neighbours`). Checked without Google
Cloud against the loopback stand-in of the REST API (tests/test_vector_search.py).

This module imports neither TensorFlow nor TFX.
"""
from __future__ import annotations

import os
import re
from typing import List, Optional, Tuple

from pipelines.vertex import cloud, index_shards
from pipelines.vertex.index_shards import choose

VECTOR_DIR = "vector_search"      # trainer.vector_export's folders in the serving model
QUERY_TOWER_DIR = "query_tower"
MACHINE = re.compile(r"[a-z][a-z0-9-]{1,62}\Z")


def problems(cfg) -> List[Tuple[str, str]]:
    """``(key, message)`` for each bad ``vertex.vector_search`` setting."""
    s = cfg.vertex.vector_search
    if s is None:
        return []

    out = []
    wrong = cloud.serving_image_problem(s.serving_image, cloud.training_tensorflow())
    if wrong:
        out.append(("vertex.vector_search.serving_image", wrong))
    if not MACHINE.match(s.endpoint_machine_type or ""):
        out.append(("vertex.vector_search.endpoint_machine_type", f"{s.endpoint_machine_type!r} "
                    "is not a machine type, e.g. n1-standard-2"))
    wrong = index_shards.problem(s.index_machine_type, s.shard_size)
    if wrong:
        key = "shard_size" if wrong.startswith("shard_size") else "index_machine_type"
        out.append((f"vertex.vector_search.{key}", wrong))
    if not 1 <= s.min_replica_count <= s.max_replica_count <= 100:
        out.append(("vertex.vector_search.max_replica_count", f"need 1 <= min_replica_count "
                    f"({s.min_replica_count}) <= max_replica_count ({s.max_replica_count}) "
                    "<= 100"))
    if not cfg.pipeline.serving_k <= s.approximate_neighbors_count <= 10_000:
        out.append(("vertex.vector_search.approximate_neighbors_count", f"must be in "
                    f"pipeline.serving_k ({cfg.pipeline.serving_k})..10000, got "
                    f"{s.approximate_neighbors_count}"))
    if not 1 <= s.leaf_nodes_to_search_percent <= 100:
        out.append(("vertex.vector_search.leaf_nodes_to_search_percent", "must be in 1..100, "
                    f"got {s.leaf_nodes_to_search_percent}"))
    if s.display_name is not None and not re.match(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z",
                                                   s.display_name):
        out.append(("vertex.vector_search.display_name", f"{s.display_name!r}: use letters, "
                    "digits, '_' or '-' (at most 63)"))
    return out


def init(project: str, region: str, api_endpoint: str = ""):
    """The aiplatform module, initialised (an http:// endpoint: the local stand-in)."""
    os.environ.setdefault("GOOGLE_CLOUD_DISABLE_TELEMETRY", "true")
    from google.cloud import aiplatform  # the Google Cloud client: off the CLI's fast path

    options = {"project": project, "location": region}
    if api_endpoint:
        options["api_endpoint"] = api_endpoint
    if api_endpoint.startswith("http://"):
        # the Google Cloud client: off the CLI's fast path
        from google.auth.credentials import AnonymousCredentials

        options.update(credentials=AnonymousCredentials(), api_transport="rest")
    aiplatform.init(**options)
    return aiplatform


def _named(cls, display_name: str):
    """The newest resource of ``cls`` with that display name, or None.

    ``_list``, not ``list``: ``Endpoint.list`` keeps only endpoints whose
    ``private_service_connect_config`` reads empty, and over REST the parsed message reads
    set on every endpoint, so it found none (seen against the stand-in)."""
    found = cls._list(filter=f'display_name="{display_name}"')
    return max(found, key=lambda r: str(r.create_time)) if found else None


def deployed_index_id(display_name: str) -> str:
    """A deployed index id from a display name (letters, digits and '_', a letter first)."""
    return "idx_" + re.sub(r"[^A-Za-z0-9_]", "_", display_name)


def deploy(project: str, region: str, model_uri: str, dimensions: int, display_name: str,
           settings: dict, labels: Optional[dict] = None, api_endpoint: str = "",
           query_tower_uri: str = "", count: int = 0) -> dict:
    """Creates or updates the index, deploys it and the query tower (see above); returns
    ``{'index', 'index_endpoint', 'deployed_index_id', 'model', 'endpoint'}`` resource names.

    ``model_uri``: the pushed serving model folder (``gs://...``); ``query_tower_uri``: the
    query tower SavedModel (default ``model_uri/query_tower``; the pipeline passes the
    PushedModel artifact's copy: TFX's Pusher leaves every nested ``saved_model.pb`` out of
    the serving folder, so ``query_tower/`` there has its variables but not its graph);
    ``settings``: ``vertex.vector_search`` as a dict (``serving_image`` the image itself,
    ``serving_container`` the upload's container arguments, :data:`pipelines.vertex.serve.UPLOAD`
    for the image ``twotower image`` builds); ``count``: how many vectors (the
    export's manifest), which with ``dimensions`` picks the shard size when
    ``settings['shard_size']`` is unset (:func:`pipelines.vertex.index_shards.choose`)."""
    shard_size = choose(settings["index_machine_type"], settings.get("shard_size"), count,
                        dimensions)
    aiplatform = init(project, region, api_endpoint)
    vectors = model_uri.rstrip("/") + "/" + VECTOR_DIR + "/"
    index = _named(aiplatform.MatchingEngineIndex, display_name)
    if index is None:
        index = aiplatform.MatchingEngineIndex.create_tree_ah_index(
            display_name=display_name, contents_delta_uri=vectors, dimensions=dimensions,
            approximate_neighbors_count=settings["approximate_neighbors_count"],
            leaf_nodes_to_search_percent=settings["leaf_nodes_to_search_percent"],
            distance_measure_type="DOT_PRODUCT_DISTANCE", shard_size=shard_size,
            labels=labels or None, sync=True)
    else:
        index = index.update_embeddings(contents_delta_uri=vectors, is_complete_overwrite=True)
    where = _named(aiplatform.MatchingEngineIndexEndpoint, display_name)
    if where is None:
        where = aiplatform.MatchingEngineIndexEndpoint.create(
            display_name=display_name, public_endpoint_enabled=True, labels=labels or None,
            sync=True)
    deployed = deployed_index_id(display_name)
    if deployed not in [d.id for d in where.deployed_indexes]:
        where = where.deploy_index(index=index, deployed_index_id=deployed,
                                   machine_type=settings["index_machine_type"],
                                   min_replica_count=settings["min_replica_count"],
                                   max_replica_count=settings["max_replica_count"])
    model = aiplatform.Model.upload(
        display_name=f"{display_name}-query-tower",
        artifact_uri=query_tower_uri or model_uri.rstrip("/") + "/" + QUERY_TOWER_DIR,
        serving_container_image_uri=settings["serving_image"], labels=labels or None, sync=True,
        **settings.get("serving_container", {}))
    endpoint = _named(aiplatform.Endpoint, display_name) or aiplatform.Endpoint.create(
        display_name=display_name, labels=labels or None, sync=True)
    model.deploy(endpoint=endpoint, machine_type=settings["endpoint_machine_type"],
                 min_replica_count=settings["min_replica_count"],
                 max_replica_count=settings["max_replica_count"], traffic_percentage=100,
                 sync=True)
    return {"index": index.resource_name, "index_endpoint": where.resource_name,
            "deployed_index_id": deployed, "model": model.resource_name,
            "endpoint": endpoint.resource_name, "shard_size": shard_size}


def neighbours(project: str, region: str, endpoint: str, index_endpoint: str,
               deployed_index: str, instances: List[dict], k: int,
               api_endpoint: str = "") -> List[List[Tuple[str, float]]]:
    """For each instance (the serving inputs by name, as the query tower takes them), the
    ``k`` nearest catalog ids (raw, as written) and their dot products, best first."""
    aiplatform = init(project, region, api_endpoint)
    embeddings = aiplatform.Endpoint(endpoint).predict(instances=instances).predictions
    queries = [p["embedding"] if isinstance(p, dict) else p for p in embeddings]
    found = aiplatform.MatchingEngineIndexEndpoint(index_endpoint).find_neighbors(
        deployed_index_id=deployed_index, queries=queries, num_neighbors=k)
    return [[(n.id, float(n.distance)) for n in row] for row in found]
