"""Hostile and broken configs, and two runs on one root (FAULTS.md lists each row's test)."""
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, demo_raw
from pipelines.cli import main

BOMB = "\n".join(["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi")])


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def yaml_config(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def valid_yaml(tmp_path, small_data, extra=""):
    raw = demo_raw(small_data)
    raw["pipeline"]["root"] = str(tmp_path / "root")
    import yaml

    return yaml.safe_dump(raw) + extra


@pytest.mark.parametrize("case, needle", [
    ("unknown_key", "training.epoch: unknown key (known keys:"),
    ("wrong_type", "training.epochs: expected an integer, got"),
    ("bomb", "expands to more than 100,000 values (nested YAML aliases?)"),
    ("tag", "could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("duplicate_yaml_key", "duplicate key 'training'"),
    ("duplicate_json_key", "duplicate key(s) ['epochs'] in one object"),
    ("refused_by_validation", "training.learning_rate: learning rate 0.1 is risky for adam"),
])
def test_a_bad_config_never_starts_a_pipeline(tmp_path, small_data, capsys, case, needle):
    """Exit 2, one error naming the key (or the YAML problem and line), nothing written."""
    text = valid_yaml(tmp_path, small_data)
    if case == "unknown_key":
        config = yaml_config(tmp_path, text.replace("  epochs:", "  epoch:"))
    elif case == "wrong_type":
        config = yaml_config(tmp_path, text.replace("  epochs: 8", "  epochs: eight"))
    elif case == "bomb":
        config = yaml_config(tmp_path, BOMB + "\n" + text)
    elif case == "tag":
        config = yaml_config(tmp_path, text + "\nx: !!python/object/apply:os.system ['touch "
                             f"{tmp_path / 'pwned'}']\n")
    elif case == "duplicate_yaml_key":
        config = yaml_config(tmp_path, text + "\ntraining: {epochs: 1}\n")
    elif case == "duplicate_json_key":
        raw = json.dumps(demo_raw(small_data))
        raw = raw.replace('"epochs": 8', '"epochs": 8, "epochs": 1')
        (tmp_path / "config.json").write_text(raw, encoding="utf-8")
        config = str(tmp_path / "config.json")
    else:
        config = yaml_config(tmp_path, text.replace("learning_rate: 0.01",
                                                    "learning_rate: 0.1"))
    code, out, err = run_cli(["run", "--config", config], capsys)
    assert code == 2, out + err
    assert needle in err, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) <= 3, err
    assert not (tmp_path / "root").exists() and not (tmp_path / "pwned").exists()


def test_the_bomb_is_refused_quickly(tmp_path):
    from pipelines.config import ConfigError, read_raw

    started = time.time()
    with pytest.raises(ConfigError, match="more than 100,000 values"):
        read_raw(yaml_config(tmp_path, BOMB))
    assert time.time() - started < 5


def test_a_second_run_on_a_held_root_is_refused_and_a_killed_holder_frees_it(
        tmp_path, small_data, capsys):
    from pipelines.runners.lock import holding

    root = tmp_path / "root"
    os.makedirs(root)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pipelines.runners.lock import holding\n"
         "with holding(sys.argv[1], 'first'):\n    print('held', flush=True); time.sleep(600)",
         str(root)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        config = yaml_config(tmp_path, valid_yaml(tmp_path, small_data))
        code, out, err = run_cli(["run", "--config", config], capsys)
        assert code == 2, out + err
        assert f"pipeline.root: {root} is in use by another run (pipeline 'first', pid " \
               f"{holder.pid}" in err
        assert not (root / "input").exists() and not (root / "tfx").exists()
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs
        holder.wait()
    with holding(str(root), "second"):  # the operating system released the lock
        pass


def test_folders_the_library_did_not_write_are_never_removed(tmp_path, small_data, capsys):
    """`prepare` and `image` replace only what they wrote (their marker file), else refuse."""
    mine = tmp_path / "out" / "twotower"
    os.makedirs(mine)
    (mine / "thesis.tex").write_text("years of work", encoding="utf-8")
    config = yaml_config(tmp_path, valid_yaml(tmp_path, small_data))
    code, _, err = run_cli(["image", "--config", config, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "was not written by `twotower image`" in err
    assert (mine / "thesis.tex").read_text(encoding="utf-8") == "years of work"
    assert run_cli(["image", "--config", config, "--out", str(tmp_path / "img")], capsys)[0] == 0
    assert run_cli(["image", "--config", config, "--out", str(tmp_path / "img")], capsys)[0] == 0
    theirs = tmp_path / "prepared"
    os.makedirs(theirs)
    (theirs / "keep.txt").write_text("keep", encoding="utf-8")
    code, _, err = run_cli(["prepare", "--config", config, "--out", str(theirs)], capsys)
    assert code == 2 and "exists but was not written by twotower" in err
    assert (theirs / "keep.txt").read_text(encoding="utf-8") == "keep"


@pytest.mark.parametrize("key, value", [
    ("pipeline.name", "../../etc"), ("pipeline.name", "a/b"),
    ("query_tower.features.0.name", "../x"), ("pipeline.name", "Ünïcode"),
])
def test_names_that_become_paths_are_refused(tmp_path, small_data, capsys, key, value):
    config = yaml_config(tmp_path, valid_yaml(tmp_path, small_data))
    code, _, err = run_cli(["validate", "--config", config, "--set", f"{key}={value}"], capsys)
    assert code == 2 and key in err, err
