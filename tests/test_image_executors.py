"""The training image holds what the compiled spec runs: every custom executor a spec of the
full Vertex AI config names imports from `twotower image`'s build folder alone."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from pipelines.config.schema import Config, apply_overrides
from pipelines.vertex.image_closure import closure, executors

IMAGE = "europe-west4-docker.pkg.dev/acme-recs/ml/twotower@sha256:" + "0" * 64
HIDE = os.path.join(ROOT, "tests", "image_site")  # its sitecustomize hides the installed library
FULL = [  # BigQuery input, Dataflow, Vertex AI Training on a T4, model upload, Vector Search
    "vertex.project=acme-recs", "vertex.region=europe-west4",
    "vertex.pipeline_root=gs://acme-bucket/full", "data.path=null",
    "data.bigquery=acme-recs.shop.orders", "data.candidates.path=null",
    "data.candidates.bigquery=acme-recs.shop.products", "vertex.dataflow={}",
    "vertex.training={machine_type: n1-standard-8, accelerator_type: NVIDIA_TESLA_T4, "
    "accelerator_count: 1}",
    "vertex.model_upload={serving_image: twotower}",
    "vertex.vector_search={serving_image: twotower}"]


def full_config(raw_config):
    return Config.from_dict(apply_overrides(raw_config, FULL))


def spec_executor_classes(spec: dict) -> set:
    """Every ``--executor_class_path`` value of the spec's containers (``module.Class``)."""
    found = set()
    for executor in spec["deploymentSpec"]["executors"].values():
        args = executor["container"].get("args", []) + executor["container"].get("command", [])
        for i, arg in enumerate(args):
            if arg == "--executor_class_path":
                found.add(args[i + 1])
    return found


def test_every_executor_of_the_full_config_imports_from_the_image_folder_alone(tmp_path,
                                                                               raw_config):
    from pipelines.vertex.image import import_check, write
    from pipelines.vertex import gcs_on_disk
    from pipelines.runners.compile import compile_vertex

    gcs_on_disk.register(tmp_path / "gcs")
    cfg = full_config(raw_config)
    out = tmp_path / "pipeline.json"
    compile_vertex(cfg, str(out), IMAGE, log=lambda *_: None)
    spec = json.loads(out.read_text(encoding="utf-8"))["pipelineSpec"]
    assert {"BigQueryExampleGen", "ModelUpload", "VectorSearchDeploy"} <= set(
        spec["root"]["dag"]["tasks"])
    named = spec_executor_classes(spec)
    ours = sorted(c for c in named if c.split(".")[0] in ("pipelines", "trainer", "transform"))
    assert "pipelines.build.components.vector_search.VectorSearchDeploy_Executor" in ours
    assert "pipelines.build.components.model_upload.ModelUpload_Executor" in ours
    # the build-time check imports each of them
    for path in ours:
        module, name = path.rsplit(".", 1)
        assert name in executors()[module], path
        assert f"from {module} import" in import_check()
    write(cfg, str(tmp_path / "img"))
    folder = str(tmp_path / "img" / "twotower")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    program = ("import importlib, sys\n"
               "folder = sys.argv[1]\n"
               "for path in sys.argv[2:]:\n"
               "    module, name = path.rsplit('.', 1)\n"
               "    loaded = importlib.import_module(module)\n"
               "    getattr(loaded, name)\n"
               "    assert loaded.__file__.startswith(folder), loaded.__file__\n"
               "import pipelines.vertex.vector_search as v\n"
               "assert v.__file__.startswith(folder)\n"
               "try:\n"
               "    import pipelines.validate\n"
               "except ImportError:\n"
               "    print('hidden')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([HIDE, folder])
    done = subprocess.run([sys.executable, "-c", program, folder, *ours], capture_output=True,
                          text=True, cwd=str(elsewhere), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "hidden"  # the rest of the library is not in the image
    # the Dockerfile's build-time check, as written, passes on that folder alone
    check = subprocess.run([sys.executable, "-c", import_check()], capture_output=True,
                           text=True, cwd=str(elsewhere), env=env)
    assert check.returncode == 0, check.stderr[-3000:]
    assert "RUN cd / && python -c 'import tensorflow_recommenders" in (
        tmp_path / "img" / "Dockerfile").read_text(encoding="utf-8")


def test_the_closure_follows_imports_inside_functions_and_adds_packages(tmp_path):
    (tmp_path / "pipelines" / "build" / "components").mkdir(parents=True)
    (tmp_path / "pipelines" / "runners").mkdir()
    for init in ("pipelines", "pipelines/build", "pipelines/build/components", "pipelines/runners"):
        (tmp_path / init / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "pipelines" / "build" / "components" / "deploy.py").write_text(
        "from tfx.dsl.component.experimental.decorators import component\n\n"
        "@component\ndef Deploy():\n    from pipelines.runners.later import go\n    go()\n",
        encoding="utf-8")
    (tmp_path / "pipelines" / "runners" / "later.py").write_text(
        "from . import helper\n\ndef go():\n    pass\n", encoding="utf-8")
    (tmp_path / "pipelines" / "runners" / "helper.py").write_text("", encoding="utf-8")
    (tmp_path / "pipelines" / "unused.py").write_text("", encoding="utf-8")
    got = closure(["pipelines.build.components.deploy"], str(tmp_path))
    assert got == ["pipelines/__init__.py", "pipelines/build/__init__.py",
                   "pipelines/build/components/__init__.py",
                   "pipelines/build/components/deploy.py", "pipelines/runners/__init__.py",
                   "pipelines/runners/helper.py", "pipelines/runners/later.py"]
    assert executors(str(tmp_path)) == {"pipelines.build.components.deploy": ["Deploy_Executor"]}
    with pytest.raises(ValueError, match="pipelines.build.components.gone: no source file"):
        closure(["pipelines.build.components.gone"], str(tmp_path))


def test_the_image_holds_the_vector_search_step_and_its_runner():
    """The bug: the hand list left out components/vector_search.py and what it imports."""
    from pipelines.vertex.image import image_files

    files = image_files()
    assert {"pipelines/build/components/vector_search.py", "pipelines/vertex/vector_search.py",
            "pipelines/vertex/__init__.py", "pipelines/build/gate.py"} <= set(files)
    assert "pipelines/validate.py" not in files and "pipelines/cli/main.py" not in files
