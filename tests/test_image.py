"""The Vertex AI training image: pinned like the lock file, and holding what the modules import
(the runtime, and the packages it imports)."""
import ast
import os
import re
import subprocess
import sys

import pytest

from pipelines.build.codegen import trainer_module, transform_module
from pipelines.config.schema import Config, apply_overrides
from pipelines.vertex.image import BASE, dockerfile, locked, packages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What gcr.io/tfx-oss-public/tfx provides that the modules may import.
def tfx_closure():
    """The import names of every distribution TFX installs (its requirements, transitively,
    without extras), read from the installed metadata: what TFX's image holds, by TFX's own
    definition (tensorboard comes with TensorFlow, keras_tuner with TFX's Tuner)."""
    import importlib.metadata as md
    import re as _re

    names, todo = set(), ["tfx"]
    while todo:
        dist = todo.pop().lower().replace("_", "-")
        if dist in names:
            continue
        names.add(dist)
        try:
            requires = md.requires(dist) or []
        except md.PackageNotFoundError:
            continue
        todo += [_re.split(r"[ ;<>=!~\[(]", r, 1)[0] for r in requires if "extra ==" not in r]
    tops = md.packages_distributions()  # {import name: [distribution]}, where RECORD says
    return ({top for top, dists in tops.items()
             if any(d.lower().replace("_", "-") in names for d in dists)}
            | {d.replace("-", "_") for d in names})  # and a distribution's own name


BASE_IMAGE = tfx_closure()
IMPORT_NAMES = {"tensorflow-recommenders": "tensorflow_recommenders", "tf-keras": "tf_keras",
                "scann": "scann"}


def lock_pins():
    text = open(os.path.join(ROOT, "requirements.lock"), encoding="utf-8").read()
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, flags=re.M))


@pytest.mark.parametrize("index", ["exact", "scann"])
def test_the_dockerfile_pins_what_the_lock_pins(raw_config, index):
    cfg = Config.from_dict(apply_overrides(raw_config, [f"pipeline.serving_index={index}"]))
    text = dockerfile(cfg)
    pins = lock_pins()
    assert f"FROM {BASE}:{pins['tfx']}\n" in text
    installed = dict(re.findall(r"([a-z\-]+)==(\S+)", text.split("pip install")[1]))
    assert installed == {name: pins[name] for name in packages(cfg)}
    assert ("scann" in installed) == (index == "scann")
    assert "ENV TF_USE_LEGACY_KERAS=1" in text
    assert dockerfile(cfg) == text  # deterministic


@pytest.mark.parametrize("index", ["exact", "scann"])
def test_the_image_holds_every_package_the_generated_modules_import(raw_config, index):
    cfg = Config.from_dict(apply_overrides(raw_config, [f"pipeline.serving_index={index}"]))
    from transform.runtime_digest import RUNTIME_PACKAGES, runtime_files

    # the image's copy of the runtime provides its packages (test below); what they import
    # in turn must be in the image too
    provided = BASE_IMAGE | {IMPORT_NAMES[p] for p in packages(cfg)} | set(RUNTIME_PACKAGES)
    sources = [("transform", transform_module(cfg)), ("trainer", trainer_module(cfg))] + [
        (relative, open(path, encoding="utf-8").read()) for relative, path in runtime_files()]
    for name, text in sources:
        tree = ast.parse(text)
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        nested = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                  and n not in top]
        for nodes, allowed in ((top, provided), (nested, provided | {"scann"})):
            # scann is imported only inside require_scann(), which runs only when the config
            # asks for the ScaNN index
            roots = set()
            for node in nodes:
                if isinstance(node, ast.Import):
                    roots |= {a.name.split(".")[0] for a in node.names}
                elif node.level == 0:
                    roots.add(node.module.split(".")[0])
            outside = {r for r in roots if r not in sys.stdlib_module_names} - allowed
            assert not outside, f"{name} imports {outside}, which the image lacks"


def test_a_package_missing_from_the_lock_is_named(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("tfx==1.16.0\n", encoding="utf-8")
    with pytest.raises(ValueError, match="pins no \\['tf-keras'\\]"):
        locked(["tfx", "tf-keras"], str(lock))


def test_image_cli_writes_the_dockerfile_and_prints_the_build_command(tmp_path, raw_config):
    path = tmp_path / "config.json"
    path.write_text(Config.from_dict(raw_config).to_json(), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pipelines", "image", "--config", str(path),
                           "--out", str(tmp_path / "img"), "--tag", "eu-docker.pkg.dev/p/r/t:1"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "img" / "Dockerfile").read_text(encoding="utf-8").startswith("# The Vertex")
    assert "docker build -t eu-docker.pkg.dev/p/r/t:1" in done.stdout


def test_the_image_code_is_the_components_and_the_runtime_and_needs_nothing_else(tmp_path,
                                                                                 raw_config):
    from pipelines.vertex.image import component_files, write
    from transform.runtime_digest import runtime_digest, runtime_files

    write(Config.from_dict(raw_config), str(tmp_path))
    copied = sorted(str(p.relative_to(tmp_path / "twotower"))
                    for p in (tmp_path / "twotower").rglob("*.py"))
    runtime = [relative for relative, _ in runtime_files()]
    assert copied == sorted(set(component_files()) | set(runtime))
    assert {r.split("/")[0] for r in runtime} == {"transform", "trainer"}
    assert "trainer/training.py" in runtime and "transform/kinds/numeric.py" in runtime
    own = {f[:-3].replace("/", ".").replace(".__init__", "") for f in copied}
    for relative in copied:
        tree = ast.parse((tmp_path / "twotower" / relative).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] in (
                    "pipelines", "trainer", "transform"):
                assert node.module in own, f"{relative} imports {node.module}, not in the image"
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] in ("pipelines", "trainer", "transform")
                               and a.name not in own for a in node.names)
    assert "COPY twotower /opt/twotower" in (tmp_path / "Dockerfile").read_text(encoding="utf-8")
    # the copy is the runtime the generated modules check for, byte for byte
    assert runtime_digest() == subprocess.run(
        [sys.executable, "-c", "import sys; sys.meta_path[:] = [f for f in sys.meta_path if not "
         "getattr(f, '__module__', '').startswith('__editable___twotower')]; "
         "sys.path.insert(0, sys.argv[1]); from transform.runtime_digest import runtime_digest, "
         "runtime_location; assert runtime_location() == sys.argv[1]; print(runtime_digest())",
         str(tmp_path / "twotower")], capture_output=True, text=True, check=True,
        cwd=str(tmp_path)).stdout.strip()
