"""Vector Search on Vertex AI (``vertex.vector_search``): the real aiplatform client against
the loopback stand-in of the REST API; the requests are what the service is asked."""
import pytest

from pipelines.config.schema import Config, ConfigError, apply_overrides
from pipelines.vertex import vector_search
from pipelines.validate import validate
from vertex_standin import StandIn

IMAGE = "twotower"  # the image `twotower image` builds, serving with pipelines/vertex/serve.py
SETTINGS = {"serving_image": IMAGE, "display_name": None, "index_machine_type": "e2-standard-2",
            "endpoint_machine_type": "n1-standard-2", "min_replica_count": 1,
            "max_replica_count": 2, "approximate_neighbors_count": 150,
            "leaf_nodes_to_search_percent": 10, "shard_size": None}
PARENT = "/v1/projects/acme-recs/locations/europe-west4"


@pytest.fixture
def standin():
    server = StandIn()
    yield server
    server.close()


def calls(server, method=None):
    return [(r["method"], r["path"]) for r in server.requests
            if method is None or r["method"] == method]


def body(server, method, path):
    return [r["body"] for r in server.requests if (r["method"], r["path"]) == (method, path)][-1]


TOWER = "gs://acme-bucket/twotower/tfx/Pusher/pushed_model/9/query_tower"


def deploy(standin, version="1700000000", settings=None, count=60):
    return vector_search.deploy("acme-recs", "europe-west4",
                                f"gs://acme-bucket/twotower/serving/{version}", 65, "b2b-demo",
                                settings or SETTINGS, {"team": "growth"},
                                api_endpoint=standin.endpoint, query_tower_uri=TOWER,
                                count=count)


def test_first_deploy_creates_the_index_both_endpoints_and_deploys_them(standin):
    got = deploy(standin)
    assert got == {"index": "projects/acme-recs/locations/europe-west4/indexes/1",
                   "index_endpoint": "projects/acme-recs/locations/europe-west4/indexEndpoints/2",
                   "deployed_index_id": "idx_b2b_demo",
                   "model": "projects/acme-recs/locations/europe-west4/models/1",
                   "endpoint": "projects/acme-recs/locations/europe-west4/endpoints/3",
                   "shard_size": "SHARD_SIZE_SMALL"}
    posts = calls(standin, "POST")
    assert posts == [
        ("POST", f"{PARENT}/indexes"), ("POST", f"{PARENT}/indexEndpoints"),
        ("POST", f"{PARENT}/indexEndpoints/2:deployIndex"), ("POST", f"{PARENT}/models:upload"),
        ("POST", f"{PARENT}/endpoints"), ("POST", f"{PARENT}/endpoints/3:deployModel")]
    index = body(standin, "POST", f"{PARENT}/indexes")
    assert index["displayName"] == "b2b-demo" and index["labels"] == {"team": "growth"}
    meta = index["metadata"]
    assert meta["contentsDeltaUri"] == "gs://acme-bucket/twotower/serving/1700000000/vector_search/"
    tree = meta["config"]
    assert (tree["dimensions"], tree["approximateNeighborsCount"], tree["distanceMeasureType"]) == (
        65, 150, "DOT_PRODUCT_DISTANCE")
    assert tree["algorithmConfig"]["treeAhConfig"]["leafNodesToSearchPercent"] == 10
    # e2-standard-2 serves small shards only: the SDK's default (MEDIUM) could not deploy
    assert tree["shardSize"] == "SHARD_SIZE_SMALL"
    assert body(standin, "POST", f"{PARENT}/indexEndpoints")["publicEndpointEnabled"] is True
    deployed = body(standin, "POST", f"{PARENT}/indexEndpoints/2:deployIndex")["deployedIndex"]
    assert deployed["id"] == "idx_b2b_demo" and deployed["index"].endswith("/indexes/1")
    assert deployed["dedicatedResources"]["machineSpec"]["machineType"] == "e2-standard-2"
    assert deployed["dedicatedResources"]["maxReplicaCount"] == 2
    model = body(standin, "POST", f"{PARENT}/models:upload")["model"]
    assert model["artifactUri"] == TOWER  # the artifact's whole copy (see deploy)
    assert model["containerSpec"]["imageUri"] == IMAGE
    served = body(standin, "POST", f"{PARENT}/endpoints/3:deployModel")
    assert served["deployedModel"]["model"].endswith("/models/1")
    assert served["deployedModel"]["dedicatedResources"]["machineSpec"]["machineType"] == (
        "n1-standard-2")
    assert served["trafficSplit"] == {"0": 100}


def test_a_second_deploy_overwrites_the_index_and_reuses_the_endpoints(standin):
    deploy(standin)
    before = len(standin.requests)
    got = deploy(standin, "1700009999")
    later = [(r["method"], r["path"]) for r in standin.requests[before:] if r["method"] != "GET"]
    assert later == [("PATCH", f"{PARENT}/indexes/1"), ("POST", f"{PARENT}/models:upload"),
                     ("POST", f"{PARENT}/endpoints/3:deployModel")]  # no second deployIndex
    patch = [r for r in standin.requests[before:] if r["method"] == "PATCH"][0]
    assert patch["body"]["metadata"]["contentsDeltaUri"].endswith("/1700009999/vector_search/")
    assert patch["body"]["metadata"]["isCompleteOverwrite"] is True
    assert got["index_endpoint"].endswith("/indexEndpoints/2")
    assert got["model"].endswith("/models/2")


@pytest.mark.parametrize("override,key", [
    ("vertex.vector_search={serving_image: 'not an image'}", "vertex.vector_search.serving_image"),
    (f"vertex.vector_search={{serving_image: '{IMAGE}', min_replica_count: 3, "
     "max_replica_count: 2}", "vertex.vector_search.max_replica_count"),
    (f"vertex.vector_search={{serving_image: '{IMAGE}', approximate_neighbors_count: 5}}",
     "vertex.vector_search.approximate_neighbors_count"),
    (f"vertex.vector_search={{serving_image: '{IMAGE}', index_machine_type: 'E2 big'}}",
     "vertex.vector_search.index_machine_type"),
    (f"vertex.vector_search={{serving_image: '{IMAGE}', index_machine_type: n1-standard-4}}",
     "vertex.vector_search.index_machine_type"),  # a machine type, but not an index machine
    (f"vertex.vector_search={{serving_image: '{IMAGE}', shard_size: SHARD_SIZE_MEDIUM}}",
     "vertex.vector_search.index_machine_type"),  # e2-standard-2 serves SMALL only
    (f"vertex.vector_search={{serving_image: '{IMAGE}', shard_size: medium}}",
     "vertex.vector_search.shard_size"),
])
def test_vector_search_settings_are_checked(raw_config, override, key):
    cfg = Config.from_dict(apply_overrides(raw_config, [override]))
    with pytest.raises(ConfigError) as exc:
        validate(cfg, check_data=False)
    assert key in {k for k, _ in exc.value.problems}


def test_the_default_shard_size_is_the_smallest_that_holds_the_catalog():
    from pipelines.vertex.index_shards import GIB, choose, problem

    # 2 GiB of float32 vectors of 64 dimensions: 2 * 2^30 / (64 * 4) = 8388608 vectors
    limit = 2 * GIB // (64 * 4)
    assert limit == 8_388_608
    assert choose("e2-standard-16", None, limit, 64) == "SHARD_SIZE_SMALL"
    assert choose("e2-standard-16", None, limit + 1, 64) == "SHARD_SIZE_MEDIUM"
    assert choose("e2-highmem-16", None, 100_000_000, 64) == "SHARD_SIZE_LARGE"  # 23.8 GiB
    # e2-standard-2 serves only small shards: a larger index is split over several of them
    assert choose("e2-standard-2", None, limit + 1, 64) == "SHARD_SIZE_SMALL"
    assert choose("n1-standard-32", "SHARD_SIZE_LARGE", 10, 64) == "SHARD_SIZE_LARGE"
    assert "serves SHARD_SIZE_SMALL only, not SHARD_SIZE_LARGE: use e2-highmem-16" in problem(
        "e2-standard-2", "SHARD_SIZE_LARGE")
    with pytest.raises(ValueError, match="vertex.vector_search: index_machine_type e2-standard-2"):
        choose("e2-standard-2", "SHARD_SIZE_MEDIUM", 10, 64)


def test_a_set_shard_size_reaches_the_index_request(standin):
    deploy(standin, settings=dict(SETTINGS, index_machine_type="e2-standard-16",
                                  shard_size="SHARD_SIZE_MEDIUM"))
    index = body(standin, "POST", f"{PARENT}/indexes")
    assert index["metadata"]["config"]["shardSize"] == "SHARD_SIZE_MEDIUM"
    deployed = body(standin, "POST", f"{PARENT}/indexEndpoints/2:deployIndex")["deployedIndex"]
    assert deployed["dedicatedResources"]["machineSpec"]["machineType"] == "e2-standard-16"


def test_the_compiled_pipeline_deploys_after_the_pusher_only_when_asked(tmp_path, raw_config):
    import json

    from pipelines.vertex import gcs_on_disk
    from pipelines.runners.compile import compile_vertex

    gcs_on_disk.register(tmp_path / "gcs")
    base = ["vertex.project=acme-recs", "vertex.region=europe-west4",
            "vertex.pipeline_root=gs://acme-bucket/flow"]
    tasks = {}
    for name, extra in (("off", []), ("on", [
            f"vertex.vector_search={{serving_image: '{IMAGE}', max_replica_count: 3}}"])):
        cfg = Config.from_dict(apply_overrides(json.loads(json.dumps(raw_config)), base + extra))
        validate(cfg)
        out = tmp_path / f"{name}.json"
        compile_vertex(cfg, str(out), "europe-west4-docker.pkg.dev/acme-recs/ml/twotower:1",
                       log=lambda *_: None)
        tasks[name] = json.loads(out.read_text(encoding="utf-8"))["pipelineSpec"]["root"][
            "dag"]["tasks"]
    assert "VectorSearchDeploy" not in tasks["off"]  # billed by the hour: off by default
    step = tasks["on"]["VectorSearchDeploy"]
    assert step["inputs"]["artifacts"]["pushed_model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "pushed_model", "producerTask": "Pusher"}
    params = {k: v["runtimeValue"]["constantValue"]["stringValue"]
              for k, v in step["inputs"]["parameters"].items()}
    assert params["display_name"] == "b2b-demo" and params["project"] == "acme-recs"
    settings = json.loads(params["settings"])
    # `twotower`: the training image, with the server's command, routes and port
    assert settings["serving_image"] == "europe-west4-docker.pkg.dev/acme-recs/ml/twotower:1"
    assert settings["serving_container"]["serving_container_command"] == [
        "python", "-m", "pipelines.vertex.serve"]
    assert settings["max_replica_count"] == 3 and settings["shard_size"] is None


def test_neighbours_asks_the_endpoint_then_the_index_and_writes_raw_ids(standin, tmp_path):
    import csv
    import json

    from pipelines.cli.main import main

    deployed = deploy(standin)
    catalog = {"007": [1.0, 0.0], "7": [0.0, 1.0], "a b": [0.6, 0.6]}
    standin.predict = lambda name, body: {"predictions": [
        {"embedding": [1.0, 0.1] if i["query_id"] == "c-1" else [0.0, 2.0]}
        for i in body["instances"]]}

    def find(name, body):  # exact dot products over the catalog, as the index would
        out = []
        for query in body["queries"]:
            q = query["datapoint"]["featureVector"]
            scored = sorted(((sum(a * b for a, b in zip(q, v)), k) for k, v in catalog.items()),
                            reverse=True)[:query["neighborCount"]]
            out.append({"id": query["datapoint"].get("datapointId", ""), "neighbors": [
                {"datapoint": {"datapointId": k}, "distance": s} for s, k in scored]})
        return {"nearestNeighbors": out}
    standin.find = find
    (tmp_path / "deployed.json").write_text(json.dumps(deployed))
    (tmp_path / "q.jsonl").write_text('{"query_id": "c-1", "segment": "smb"}\n'
                                      '{"query_id": "c-2", "segment": ""}\n')
    out = tmp_path / "n.csv"
    assert main(["neighbours", "--deployment", str(tmp_path / "deployed.json"), "--instances",
                 str(tmp_path / "q.jsonl"), "--k", "2", "--out", str(out),
                 "--api-endpoint", standin.endpoint]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    # by hand: c-1 = [1, .1]: 007 scores 1.0, "a b" .66; c-2 = [0, 2]: 7 scores 2, "a b" 1.2
    assert [(r["query"], r["rank"], r["candidate_id"]) for r in rows] == [
        ("c-1", "1", "007"), ("c-1", "2", "a b"), ("c-2", "1", "7"), ("c-2", "2", "a b")]
    assert abs(float(rows[0]["score"]) - 1.0) < 1e-6
    predict = [r for r in standin.requests if r["path"].endswith(":predict")][0]
    assert predict["path"].endswith("/endpoints/3:predict")
    assert predict["body"]["instances"][0] == {"query_id": "c-1", "segment": "smb"}
    found = [r for r in standin.requests if r["path"].endswith(":findNeighbors")][0]
    assert found["path"].endswith("/indexEndpoints/2:findNeighbors")
    assert found["body"]["deployedIndexId"] == "idx_b2b_demo"


def test_the_deployment_waits_for_operations_that_stay_pending():
    """Every long-running operation answers `done: false` to its first two polls: the client
    polls each until it is done and the deployment's result is the same."""
    server = StandIn(pending_polls=2)
    try:
        got = deploy(server)
        polls = [p for m, p in calls(server, "GET") if "/operations/" in p]
    finally:
        server.close()
    assert got["index"].endswith("/indexes/1") and got["endpoint"].endswith("/endpoints/3")
    assert got["model"].endswith("/models/1")
    operations = set(polls)
    assert len(operations) == 6  # index, index endpoint, deployIndex, upload, endpoint, deploy
    assert all(polls.count(o) == 3 for o in operations), polls  # two pending, then done
