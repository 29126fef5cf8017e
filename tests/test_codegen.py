"""The code generator: golden files, determinism, pyflakes, safety, assembly rules.

Regenerate the golden files after an intended change with
``UPDATE_GOLDEN=1 make test`` and review the diff.
"""
import ast
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from pipelines import codegen
from pipelines.config import Config, apply_overrides, read_raw

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
        outputs.append({f: (out / f).read_bytes() for f in sorted(os.listdir(out))})
    assert outputs[0] == outputs[1]
    # the modules, and the manifest that says twotower wrote them (pipelines/written.py)
    assert set(outputs[0]) == {"transform_module.py", "trainer_module.py", ".twotower-written"}


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


def test_generated_modules_import_without_this_library(tmp_path):
    """The modules are self-contained: they import where only TF/TFT/TFRS exist."""
    paths = codegen.write_modules(example("b2b_demo"), str(tmp_path))
    code = ("import sys; sys.path = [p for p in sys.path if p not in ('', %r)]; "
            "import importlib.util as u\n"
            "for name, path in [('t', %r), ('r', %r)]:\n"
            "    s = u.spec_from_file_location(name, path); m = u.module_from_spec(s)\n"
            "    s.loader.exec_module(m)\n"
            "assert 'pipelines' not in sys.modules and 'trainer' not in sys.modules\n"
            "print(m.run_fn.__name__)") % (ROOT, paths["transform"], paths["trainer"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=str(tmp_path), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("run_fn")


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
        assert imported <= {"hashlib", "json", "logging", "math", "numpy", "os", "re", "scann",
                            "tensorflow", "tensorflow_recommenders", "tensorflow_transform",
                            "time"}


def test_hostile_feature_name_is_rejected():
    from pipelines.config import ConfigError
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


def _write_package(tmp_path, monkeypatch, files):
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(codegen, "source_path", lambda rel: str(tmp_path / rel))


@pytest.mark.parametrize("files, message", [
    ({"transform/a.py": "def f():\n    pass\n", "transform/b.py": "def f():\n    pass\n"},
     "also defined"),
    ({"transform/a.py": "x = 1\n", "transform/b.py": "from transform.a import y\n"},
     "must be defined by an earlier source"),
    ({"transform/a.py": "x = 1\n", "transform/b.py": "import transform.a\n"},
     "use 'from transform.a import name'"),
    ({"transform/a.py": "from pipelines.config import Config\n", "transform/b.py": ""},
     "must not import pipelines"),
    ({"transform/a.py": "from . import x\n", "transform/b.py": ""}, "relative imports"),
])
def test_assembly_rules(tmp_path, monkeypatch, files, message):
    _write_package(tmp_path, monkeypatch, files)
    with pytest.raises(codegen.CodegenError, match=message):
        codegen.assemble(["transform/a.py", "transform/b.py"], '"""h"""', {}, "")


def test_assembly_hoists_and_dedupes_imports(tmp_path, monkeypatch):
    _write_package(tmp_path, monkeypatch, {
        "transform/a.py": '"""doc"""\nimport os\nimport json\n\nA = 1\n',
        "transform/b.py": "import os\nfrom transform.a import A\n\nB = A + 1\n"})
    text = codegen.assemble(["transform/a.py", "transform/b.py"], '"""h"""', {"K": [1]},
                            "def entry():\n    return B\n")
    assert text.count("import os") == 1
    assert text.index("import json") < text.index("import os") < text.index("K = [1]")
    assert '"""doc"""' not in text
    namespace = {}
    exec(compile(text, "<t>", "exec"), namespace)
    assert namespace["entry"]() == 2


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_a_non_finite_default_never_reaches_generated_code(value):
    """`default: .inf` passed validation and generated `inf`, a NameError at import."""
    from pipelines.config import ConfigError
    from pipelines.validate import validate

    raw = apply_overrides(hostile_config().to_dict(), [f"query_tower.features.2.default={value}"])
    with pytest.raises(ConfigError) as exc:
        validate(Config.from_dict(raw), check_data=False)
    assert [k for k, _ in exc.value.problems] == ["query_tower.features.2.default"]
    with pytest.raises(codegen.CodegenError, match="non-finite"):
        codegen.transform_module(Config.from_dict(raw))
