"""Commands that write into a folder keep what they did not write there (issue 32).

`prepare --out DIR` replaced DIR whole, deleting a user's ``my_analysis.txt`` and
``notebooks/a.ipynb`` silently; `inspect --out DIR` replaced a user's ``report.html`` and
``recall.png`` and wrote into a pushed SavedModel or a prepared ``input/`` folder. Now each
follows the rule of :mod:`pipelines.data.written` (what `recommend` does): never replace or delete
a file it did not write without ``--force``, never write inside a model or a prepared input.
"""
import copy
import json
import os

import pytest
import yaml

from pipelines.data import written
from pipelines.cli.main import main
from pipelines.build.codegen import write_modules
from pipelines.config.schema import Config, ConfigError, apply_overrides
from pipelines.data.output import MARKER


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def config_file(tmp_path, raw, overrides=()):
    """A config file of its own (the name says which overrides) for ``raw`` (left as it is)."""
    path = tmp_path / f"config{abs(hash(tuple(overrides)))}.yaml"
    path.write_text(yaml.safe_dump(apply_overrides(copy.deepcopy(raw), list(overrides))),
                    encoding="utf-8")
    return str(path)


def test_prepare_keeps_a_users_files_in_a_folder_it_prepared_before(tmp_path, raw_config,
                                                                     capsys):
    out = tmp_path / "prepared"
    first = config_file(tmp_path, raw_config)
    assert run_cli(["prepare", "--config", first, "--out", str(out)], capsys)[0] == 0
    before = {p: (out / p).read_bytes() for p in ("train/data.parquet", "prepare.sql")}
    (out / "my_analysis.txt").write_text("mine", encoding="utf-8")
    (out / "notebooks").mkdir()
    (out / "notebooks" / "a.ipynb").write_text("{}", encoding="utf-8")
    changed = config_file(tmp_path, raw_config, ["data.split.eval_fraction=0.3"])  # not reused
    code, stdout, err = run_cli(["prepare", "--config", changed, "--out", str(out)], capsys)
    assert code == 2 and stdout == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and "holds notebooks, my_analysis.txt, which twotower" in line
    assert (out / "my_analysis.txt").read_text(encoding="utf-8") == "mine"
    assert (out / "notebooks" / "a.ipynb").read_text(encoding="utf-8") == "{}"
    assert {p: (out / p).read_bytes() for p in before} == before  # the old output too
    assert not [n for n in os.listdir(tmp_path) if ".partial" in n]
    # an unchanged preparation reuses the folder: nothing is deleted, so nothing is refused
    assert run_cli(["prepare", "--config", first, "--out", str(out)], capsys)[0] == 0
    os.remove(out / "my_analysis.txt")
    os.remove(out / "notebooks" / "a.ipynb")
    os.rmdir(out / "notebooks")
    assert run_cli(["prepare", "--config", changed, "--out", str(out)], capsys)[0] == 0
    assert (out / "prepare.sql").read_bytes() != before["prepare.sql"]  # its own: replaced


def test_prepare_refuses_to_delete_an_output_file_the_user_edited(tmp_path, raw_config, capsys):
    out = tmp_path / "prepared"
    assert run_cli(["prepare", "--config", config_file(tmp_path, raw_config), "--out",
                    str(out)], capsys)[0] == 0
    listed = json.loads((out / MARKER).read_text(encoding="utf-8"))["files"]
    assert sorted(listed) == sorted(["prepare.sql", "prepare_report.json"] + [
        f"{s}/data.parquet" for s in os.listdir(out) if (out / s).is_dir()])
    with open(out / "prepare.sql", "a", encoding="utf-8") as handle:
        handle.write("-- my note\n")
    code, _, err = run_cli(["prepare", "--config", config_file(
        tmp_path, raw_config, ["data.split.eval_fraction=0.3"]), "--out", str(out)], capsys)
    assert code == 2 and "holds prepare.sql, which twotower prepare did not write" in err
    assert (out / "prepare.sql").read_text(encoding="utf-8").endswith("-- my note\n")


def test_a_folder_prepared_before_the_marker_listed_files_is_still_replaced(tmp_path,
                                                                            raw_config, capsys):
    out = tmp_path / "prepared"
    assert run_cli(["prepare", "--config", config_file(tmp_path, raw_config), "--out",
                    str(out)], capsys)[0] == 0
    (out / MARKER).write_text("written by twotower prepare; the directory is replaced on each "
                              "run\n", encoding="utf-8")  # the old marker: no file list
    changed = config_file(tmp_path, raw_config, ["data.split.eval_fraction=0.3"])
    assert run_cli(["prepare", "--config", changed, "--out", str(out)], capsys)[0] == 0
    (out / MARKER).write_text("old\n", encoding="utf-8")
    (out / "train" / "notes.txt").write_text("mine", encoding="utf-8")  # not the old layout
    code, _, err = run_cli(["prepare", "--config", config_file(tmp_path, raw_config), "--out",
                            str(out)], capsys)
    assert code == 2 and "holds train/notes.txt" in err


@pytest.fixture
def pipeline_folder(tmp_path, raw_config):
    """A pipeline folder as far as `inspect` reads it before any work: its trainer module."""
    raw = apply_overrides(raw_config, [f"pipeline.root={tmp_path}", "pipeline.name=p"])
    write_modules(Config.from_dict(raw), str(tmp_path / "p" / "modules"))
    return tmp_path / "p"


def test_inspect_out_keeps_a_users_report_and_figures(pipeline_folder, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    for name in ("report.html", "recall.png"):
        (out / name).write_text(f"my {name}", encoding="utf-8")
    code, stdout, err = run_cli(["inspect", str(pipeline_folder), "--out", str(out)], capsys)
    assert code == 2 and stdout == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: --out (") and "twotower did not write it" in line
    assert "--force" in line
    assert sorted(os.listdir(out)) == ["recall.png", "report.html"]  # not even a log
    assert (out / "report.html").read_text(encoding="utf-8") == "my report.html"


@pytest.mark.parametrize("where", ["serving/1", "serving/1/variables", "input", "input/train"])
def test_inspect_never_writes_into_a_pushed_model_or_the_prepared_input(pipeline_folder,
                                                                        capsys, where):
    (pipeline_folder / "serving" / "1" / "variables").mkdir(parents=True)
    (pipeline_folder / "serving" / "1" / "saved_model.pb").write_bytes(b"model")
    (pipeline_folder / "input" / "train").mkdir(parents=True)
    (pipeline_folder / "input" / MARKER).write_text("{}", encoding="utf-8")
    target = pipeline_folder / where
    before = sorted(os.listdir(target))
    code, _, err = run_cli(["inspect", str(pipeline_folder), "--out", str(target), "--force"],
                           capsys)
    assert code == 2
    what = "a SavedModel's folder" if where.startswith("serving") else "a prepared input folder"
    assert what in err and "twotower never writes into" in err, err
    assert sorted(os.listdir(target)) == before


def test_every_output_check_refuses_a_models_folder_even_with_force(tmp_path):
    model = tmp_path / "exported"
    (model / "assets.extra").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"model")
    with pytest.raises(ConfigError) as exc:  # e.g. recommend --out into another model
        written.check({"--out": str(model / "assets.extra" / "recs.csv")}, force=True)
    assert "a SavedModel's folder" in str(exc.value)
    written.check({"--out": str(tmp_path / "recs.csv")}, force=True)  # beside it: fine


def test_compile_keeps_a_users_file_at_its_out_path(tmp_path, raw_config, capsys):
    """`compile --out` wrote the spec over whatever was there; a user's file is now refused
    before anything is prepared or staged (--force replaces it)."""
    mine = tmp_path / "pipeline.json"
    mine.write_text("my own notes\n", encoding="utf-8")
    config = config_file(tmp_path, raw_config, [
        "vertex.project=acme-recs", "vertex.region=europe-west4",
        "vertex.pipeline_root=gs://acme-bucket/runs"])
    code, _, err = run_cli(["compile", "--config", config, "--image",
                            "europe-docker.pkg.dev/acme-recs/ml/twotower:1", "--out", str(mine),
                            "--stage-dir", str(tmp_path / "stage")], capsys)
    assert code == 2 and "--out" in err and "twotower did not write it" in err, err
    assert mine.read_text(encoding="utf-8") == "my own notes\n"
    assert not (tmp_path / "stage").exists()  # refused before any work
