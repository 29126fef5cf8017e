"""The code generator: golden files, determinism, pyflakes, safety, the runtime contract.

Regenerate the golden files after an intended change with
``UPDATE_GOLDEN=1 make test`` and review the diff.
"""
import ast
import dataclasses
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from pipelines.build import codegen
from pipelines.config.schema import Config, apply_overrides, read_raw

GOLDEN = os.path.join(ROOT, "tests", "golden")
HOSTILE = "x'); import os; os.system('id') #"


def example(name):
    """An example config with data paths fixed, so golden files don't depend on a machine."""
    raw = read_raw(os.path.join(ROOT, "examples", f"{name}.yaml"))
    return Config.from_dict(apply_overrides(raw, [
        "data.path=data/interactions.csv", "data.candidates.path=data/candidates.csv"]))


def hostile_config():
    raw = {"data": {"path": "d.csv", "query_id": "user id", "candidate_id": 'item"id'},
           "query_tower": {"features": [
               {"name": "user", "column": "user id", "kind": "id"},
               {"name": "hostile", "column": HOSTILE, "kind": "categorical"},
               {"name": "amount", "column": "{amount}\\n", "kind": "numeric",
                "transform": "log", "default": 0.0}]},
           "candidate_tower": {"features": [
               {"name": "item", "column": 'item"id', "kind": "id"},
               {"name": "genres", "column": "génres '''", "kind": "multi_categorical",
                "separator": "\"", "max_length": 3}]}}
    return Config.from_dict(raw)


def all_kinds():
    """Every feature kind and tower option (the config of test_trainer_run)."""
    from test_trainer_run import BASE

    return Config.from_dict(BASE)


@pytest.mark.parametrize("name", ["b2b_demo", "movielens", "all_kinds"])
@pytest.mark.parametrize("kind", ["transform", "trainer"])
def test_golden_files(name, kind):
    cfg = all_kinds() if name == "all_kinds" else example(name)
    text = getattr(codegen, f"{kind}_module")(cfg)
    path = os.path.join(GOLDEN, name, f"{kind}_module.py")
    if os.environ.get("UPDATE_GOLDEN"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    with open(path, encoding="utf-8") as handle:
        assert text == handle.read(), f"{path} differs: regenerate with UPDATE_GOLDEN=1"


def test_generation_is_deterministic_across_processes(tmp_path):
    """Same config, byte-identical files, even with a different hash seed."""
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        env = dict(os.environ, PYTHONHASHSEED=seed)
        cfg = os.path.join(ROOT, "examples", "movielens.yaml")
        subprocess.run([sys.executable, "-m", "pipelines", "generate", "--config", cfg,
                        "--out", str(out), "--no-data", "--set=pipeline.serving_k=7"],
                       check=True, env=env, capture_output=True, cwd=ROOT)
        outputs.append({str(p.relative_to(out)): p.read_bytes()
                        for p in sorted(out.rglob("*")) if p.is_file()})
    assert outputs[0] == outputs[1]
    # each module in its own folder, with the manifest that says twotower wrote it
    # (pipelines/data/written.py)
    assert set(outputs[0]) == {"transform/transform_module.py", "transform/.twotower-written",
                               "trainer/trainer_module.py", "trainer/.twotower-written"}


@pytest.mark.parametrize("make", [lambda: example("b2b_demo"), lambda: example("movielens"),
                                  all_kinds, hostile_config])
def test_modules_pass_pyflakes_and_define_entry_points(tmp_path, make):
    paths = codegen.write_modules(make(), str(tmp_path))
    flakes = subprocess.run([sys.executable, "-m", "pyflakes", paths["transform"],
                             paths["trainer"]], capture_output=True, text=True)
    assert flakes.returncode == 0, flakes.stdout + flakes.stderr
    for key, entry in (("transform", "preprocessing_fn"), ("trainer", "run_fn")):
        tree = ast.parse(open(paths[key], encoding="utf-8").read())
        names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert names[-1] == entry


def _import_modules(paths, cwd, extra_path=(), env_extra=None):
    """Imports the generated modules (``paths``: ``{'transform': path, 'trainer': path}``, in
    that order) in a fresh Python whose path holds neither this checkout nor its editable
    install, only ``extra_path``; returns the finished process (``imported <key>`` per module
    imported, then the Trainer's entry point and where its runtime came from)."""
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "
            "'__module__', '').startswith('__editable___twotower')]\n"
            "sys.path = [p for p in sys.path if p not in ('', %r)] + %r\n"
            "import importlib.util as u\n"
            "for name, path in [('t', %r), ('r', %r)]:\n"
            "    s = u.spec_from_file_location(name, path); m = u.module_from_spec(s)\n"
            "    s.loader.exec_module(m); print('imported', name, flush=True)\n"
            "assert 'pipelines' not in sys.modules, 'a generated module imported pipelines'\n"
            "print(m.run_fn.__name__, sys.modules['trainer'].__file__)"
            ) % (ROOT, list(extra_path), paths["transform"], paths["trainer"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=str(cwd), env=env)


def _runtime_copy(tmp_path):
    """A copy of the runtime (transform/, trainer/) in a folder of its own, as the image has."""
    from transform.runtime_digest import runtime_files

    site = tmp_path / "site"
    for relative, source in runtime_files():
        target = site / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(open(source, "rb").read())
    return site


def test_generated_modules_import_the_runtime_and_nothing_else_of_this_library(tmp_path):
    """The modules are thin: they import where only TF/TFT/TFRS and the runtime exist."""
    paths = codegen.write_modules(example("b2b_demo"), str(tmp_path / "modules"))
    site = _runtime_copy(tmp_path)
    done = _import_modules(paths, tmp_path, [str(site)])
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.split("\n")
    assert lines[:2] == ["imported t", "imported r"], done.stdout
    name, runtime = lines[2].split()
    assert name == "run_fn" and runtime == str(site / "trainer" / "__init__.py")


def _edited(site, relative):
    path = site / relative
    path.write_text(path.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")


@pytest.mark.parametrize("edited, failing, imported", [
    ("trainer/towers.py", "trainer_module.py", ["imported t"]),  # the Transform's is intact
    ("transform/features.py", "transform_module.py", [])])
def test_a_module_refuses_a_runtime_it_was_not_generated_against(tmp_path, edited, failing,
                                                                 imported):
    """One changed byte of the runtime a module imports: its import fails in one line naming
    both digests. The Transform module's digest covers transform/ only: an edit of the
    Trainer's runtime leaves it importable (and its bytes, so the Transforms' cache key)."""
    paths = codegen.write_modules(example("b2b_demo"), str(tmp_path / "modules"))
    site = _runtime_copy(tmp_path)
    _edited(site, edited)
    done = _import_modules(paths, tmp_path, [str(site)])
    assert done.returncode != 0
    assert done.stdout.split() == " ".join(imported).split(), done.stdout
    last = done.stderr.strip().splitlines()[-1]
    key = failing.split("_")[0]
    expected = open(paths[key], encoding="utf-8").read().split("RUNTIME_DIGEST = '")[1][:19]
    assert last.startswith(f"ImportError: {failing} was generated by twotower "), last
    assert expected in last and f"the runtime at {site} is sha256:" in last
    assert "regenerate the module" in last


def test_each_module_digests_only_the_runtime_it_imports():
    from transform.runtime_digest import runtime_digest

    cfg = example("b2b_demo")
    digest = {k: codegen.__dict__[f"{k}_module"](cfg).split("RUNTIME_DIGEST = '")[1][:71]
              for k in ("transform", "trainer")}
    assert digest["transform"] == runtime_digest(("transform",))
    assert digest["trainer"] == runtime_digest(("transform", "trainer"))
    assert digest["transform"] != digest["trainer"]


def test_a_module_without_the_runtime_says_so_in_one_line(tmp_path):
    paths = codegen.write_modules(example("b2b_demo"), str(tmp_path / "modules"))
    done = _import_modules(paths, tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: transform_module.py needs the twotower runtime "
                           "(the package transform)"), last
    done = _import_modules({"transform": paths["trainer"], "trainer": paths["trainer"]},
                           tmp_path)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: trainer_module.py needs the twotower runtime "
                           "(the packages transform and trainer)"), last


def test_each_module_lives_in_a_folder_of_its_own(tmp_path):
    """TFX versions a module's wheel by hashing every .py file of the module's folder
    (udf_utils.package_user_module_file): a module sharing a folder shares its cache key."""
    paths = codegen.write_modules(example("b2b_demo"), str(tmp_path / "modules"))
    assert paths == {"transform": str(tmp_path / "modules" / "transform" / "transform_module.py"),
                     "trainer": str(tmp_path / "modules" / "trainer" / "trainer_module.py")}
    for path in paths.values():
        assert [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".py")] == [
            os.path.basename(path)]


def test_only_what_the_transform_reads_changes_the_transform_module():
    """The Transform module's bytes (its wheel's hash, the Transforms' cache key) change with
    a feature or an id column, never with training, model, pipeline or tower-only options."""
    base = example("b2b_demo")
    spec = codegen.transform_spec(base)
    assert sorted(spec) == ["candidate_tower", "data", "query_tower"]
    assert spec["data"] == {"query_id": "customer_id", "candidate_id": "product_id",
                            "timestamp": "timestamp"}
    assert sorted(spec["query_tower"]) == ["features"]
    price = [f for f in spec["candidate_tower"]["features"] if f["name"] == "price"][0]
    assert price == {"name": "price", "kind": "numeric", "column": "price", "transform": "log",
                     "num_buckets": 10, "default": None}  # no embedding_dim: the towers'

    def changed(*overrides):
        raw = apply_overrides(base.to_dict(), list(overrides))
        cfg = Config.from_dict(raw)
        return (codegen.transform_module(cfg) != codegen.transform_module(base),
                codegen.trainer_module(cfg) != codegen.trainer_module(base))

    for same in (["training.learning_rate=0.005"], ["training.epochs=3", "training.refit=false"],
                 ["model.output_dim=16"], ["query_tower.layers=[32]"],
                 ["pipeline.serving_k=20"], ["data.path=elsewhere/purchases.csv"],
                 ["candidate_tower.features.1.embedding_dim=4"]):
        assert changed(*same) == (False, True), same
    for other in (["candidate_tower.features.2.transform=zscore"],
                  ["query_tower.features.1.column=region"], ["data.timestamp=null"]):
        assert changed(*other) == (True, True), other


def test_the_trainer_module_reads_top_down_and_is_small():
    text = codegen.trainer_module(example("b2b_demo"))
    lines = text.splitlines()
    assert len(lines) < 300
    assert lines[0].startswith('"""TFX Trainer module of pipeline \'b2b-demo\', generated by '
                               "twotower ")
    tree = ast.parse(text)
    [run_fn] = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert run_fn.name == "run_fn" and ast.get_docstring(run_fn)
    assert run_fn.lineno < 40  # before the SPEC, which is most of the file
    spec = {n.targets[0].id: n.lineno for n in tree.body if isinstance(n, ast.Assign)}["SPEC"]
    assert run_fn.lineno < spec


def test_the_spec_keeps_only_what_applies():
    cfg = example("b2b_demo")
    spec = codegen.frozen_spec(cfg)
    assert "vertex" not in spec
    price = [f for f in spec["candidate_tower"]["features"] if f["name"] == "price"][0]
    assert sorted(price) == sorted(["name", "kind", "column", "embedding_dim", "transform",
                                    "num_buckets", "default"])
    # nothing is lost: a validated config comes back from its frozen spec
    from pipelines.config.schema import VertexConfig

    assert Config.from_dict(spec).to_dict() == dict(cfg.to_dict(),
                                                    vertex=dataclasses.asdict(VertexConfig()))


def test_runtime_code_never_imports_pipelines():
    """The runtime runs where ``pipelines`` is not installed (the image holds only its
    components): no import of it, at the top or inside a function."""
    from transform.runtime_digest import runtime_files

    for relative, path in runtime_files():
        tree = ast.parse(open(path, encoding="utf-8").read(), relative)
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "pipelines" for n in names), relative


def test_hostile_column_is_only_ever_a_string_literal():
    for text in (codegen.transform_module(hostile_config()),
                 codegen.trainer_module(hostile_config())):
        tree = ast.parse(text)
        literals = [n.value for n in ast.walk(tree)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert HOSTILE in literals
        calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        assert "os.system" not in calls
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert imported == set()  # only the runtime's entry points, by name
        froms = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert froms <= {"transform.runtime_digest", "transform.preprocess", "trainer.training"}


def test_hostile_feature_name_is_rejected():
    from pipelines.config.schema import ConfigError
    from pipelines.validate import validate

    raw = {"data": {"path": "d.csv", "query_id": "u", "candidate_id": "i"},
           "query_tower": {"features": [{"name": HOSTILE, "column": "u", "kind": "id"}]},
           "candidate_tower": {"features": [{"name": "i", "column": "i", "kind": "id"}]}}
    with pytest.raises(ConfigError) as exc:
        validate(Config.from_dict(raw), check_data=False)
    assert [k for k, _ in exc.value.problems] == ["query_tower.features.0.name"]


def test_render_literal_round_trips_plain_data():
    value = {"a": [1, 2.5, None, True], "b": {"c": "q'\"\\{}\n", "d": []}, "e": {}}
    assert ast.literal_eval(codegen.render_literal(value)) == value
    with pytest.raises(codegen.CodegenError):
        codegen.render_literal({"x": object()})


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_a_non_finite_default_never_reaches_generated_code(value):
    """`default: .inf` passed validation and generated `inf`, a NameError at import."""
    from pipelines.config.schema import ConfigError
    from pipelines.validate import validate

    raw = apply_overrides(hostile_config().to_dict(), [f"query_tower.features.2.default={value}"])
    with pytest.raises(ConfigError) as exc:
        validate(Config.from_dict(raw), check_data=False)
    assert [k for k, _ in exc.value.problems] == ["query_tower.features.2.default"]
    with pytest.raises(codegen.CodegenError, match="non-finite"):
        codegen.transform_module(Config.from_dict(raw))
