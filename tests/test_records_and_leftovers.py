"""What a careless or hostile user met in issue 32 (second half), each in seconds: config
values YAML 1.1 misreads, a mistyped key, a users file recommend and prepare must read
alike, what killed commands leave behind, and a pipeline folder's damaged records
(``runs.jsonl``, ``training_metrics.json``, ``metadata.sqlite``).

The CLI refusals of the same issue (seeds, ``lr-check``, ``synth`` sizes, ``tensorboard
--port``, mixed line endings, headers differing in case) are rows of the table in
tests/test_cli_errors.py; the copied and damaged folder of a real trained run is
tests/test_damaged_run.py.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from pipelines.cli.main import main
from pipelines.config.schema import Config, ConfigError, apply_overrides, load_config
from pipelines.data.csvfile import DataError


def _dead_pid() -> int:
    """The id of a process that has ended (a child, waited for)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- the config -----------------------------------------------------------------------------

def test_yaml_1_1_numbers_without_a_dot_are_numbers_in_number_fields(tmp_path, raw_config):
    """PyYAML reads ``1e-3`` (no dot) as the text '1e-3': a number field takes it as 0.001,
    in a file and through --set; text that is not a number is still refused."""
    import yaml

    text = yaml.safe_dump(raw_config).replace("learning_rate: 0.01", "learning_rate: 1e-3")
    assert "learning_rate: 1e-3" in text
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_config(str(path)).training.learning_rate == 0.001
    cfg = Config.from_dict(apply_overrides(raw_config, ["training.learning_rate=2E-3",
                                                        "model.temperature=5e-2"]))
    assert (cfg.training.learning_rate, cfg.model.temperature) == (0.002, 0.05)
    for bad in ("fast", "1e", "1_000", "nan", "0x10", "1e-3 "):
        with pytest.raises(ConfigError, match="expected a number"):
            Config.from_dict(apply_overrides(dict(raw_config), [f"training.learning_rate='{bad}'"]))
    with pytest.raises(ConfigError, match="expected an integer, got '1e3'"):  # not a float field
        Config.from_dict(apply_overrides(dict(raw_config), ["training.epochs=1e3"]))


def test_a_mistyped_key_suggests_the_likely_one(raw_config):
    raw = apply_overrides(raw_config, ["training.learnig_rate=0.1", "model.zzz=1"])
    with pytest.raises(ConfigError) as exc:
        Config.from_dict(raw)
    found = dict(exc.value.problems)
    assert found["training.learnig_rate"].endswith("did you mean 'learning_rate'?")
    assert "known keys: " in found["training.learnig_rate"]
    assert "did you mean" not in found["model.zzz"]  # nothing near: no guess


@pytest.mark.parametrize("seed, ok", [(0, True), (2**32 - 1, True), (-1, False),
                                      (2**32, False)])
def test_a_seed_is_checked_by_validation(raw_config, seed, ok):
    from pipelines.validate import validate

    cfg = Config.from_dict(apply_overrides(raw_config, [f"training.seed={seed}"]))
    if ok:
        validate(cfg, check_data=False)
    else:
        with pytest.raises(ConfigError) as exc:
            validate(cfg, check_data=False)
        assert [k for k, _ in exc.value.problems] == ["training.seed"]


# --- a users file: recommend reads ids as prepare does -----------------------------------------

def test_a_users_file_with_a_repeated_header_is_refused(tmp_path):
    from pipelines.recommend import read_queries

    path = tmp_path / "users.csv"
    path.write_text("user_id,segment,user_id\nC1,smb,C2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"the header repeats column\(s\) \['user_id'\]"):
        read_queries(str(path), "customer_id")


def test_an_id_with_a_line_break_is_refused_by_recommend_as_by_prepare(tmp_path, raw_config):
    """The same message, naming the row, from recommend's --users and prepare's data."""
    from pipelines.data.prepare import prepare
    from pipelines.recommend import read_queries

    users = tmp_path / "users.csv"
    users.write_text('customer_id\nC00001\n"C0\n0002"\n', encoding="utf-8")
    with pytest.raises(DataError) as recommend_error:
        read_queries(str(users), "customer_id")
    assert str(recommend_error.value) == (
        f"{users} row 3: column 'customer_id' (--users) holds a line break in 'C0\\n0002'; "
        "ids must be on one line")
    data = tmp_path / "purchases.csv"
    with open(raw_config["data"]["path"], encoding="utf-8", newline="") as handle:
        lines = handle.read().splitlines(keepends=True)
    lines[2] = '"C0\r\n0002"' + lines[2][lines[2].index(","):]
    data.write_text("".join(lines), encoding="utf-8", newline="")
    cfg = Config.from_dict(apply_overrides(raw_config, [f"data.path={data}"]))
    with pytest.raises(DataError) as prepare_error:
        prepare(cfg, str(tmp_path / "out"))
    assert str(prepare_error.value).startswith(
        f"{data} row 3: column 'customer_id' (data.query_id) holds a line break in ")
    assert str(prepare_error.value).endswith("; ids must be on one line")


# --- what killed commands leave --------------------------------------------------------------

def test_a_later_write_removes_the_partial_files_of_killed_processes(tmp_path):
    """A killed `recommend` leaves `.recs.csv.<pid>-0.partial`: the next write of recs.csv
    removes it (its process is gone); a live process's partial is left alone."""
    from pipelines.data import written

    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".recs.csv.{dead}-0.partial"
    stale.write_bytes(b"x" * 1000)
    live = tmp_path / f".recs.csv.{alive}-0.partial"
    live.write_bytes(b"y")
    other = tmp_path / f".other.csv.{dead}-0.partial"  # another file's: not this write's
    other.write_bytes(b"z")
    with written.atomic(str(tmp_path / "recs.csv")) as handle:
        handle.write("user_id,item_id,rank\n")
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name, "recs.csv"])


def test_one_function_names_what_gone_processes_left(tmp_path):
    """The scratch folders of a run, synth's and atomic's partial files all ask it."""
    import re

    from pipelines.data.written import left_by_gone_processes

    dead = _dead_pid()
    for pid in (dead, os.getppid(), os.getpid()):
        (tmp_path / f".tmp-{pid}").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    assert left_by_gone_processes(str(tmp_path), re.compile(r"\.tmp-(\d+)")) == [f".tmp-{dead}"]
    assert left_by_gone_processes(str(tmp_path / "absent"), re.compile(r"(\d+)")) == []


def test_synth_removes_a_killed_runs_scratch_and_a_stopped_run_leaves_none(tmp_path):
    """SIGKILL runs no cleanup: the next synth into the folder removes `.synth-<pid>-*` of
    a gone process. SIGTERM ends synth as an exit: its scratch is removed at once."""
    out = tmp_path / "syn"
    os.makedirs(out / f".synth-{_dead_pid()}-abc")
    (out / f".synth-{os.getppid()}-keep").mkdir()  # a live generator's: left alone
    assert main(["synth", "--out", str(out), "--purchases", "200", "--customers", "20",
                 "--products", "10"]) == 0
    assert sorted(os.listdir(out)) == [".synth-%d-keep" % os.getppid(), ".twotower-written",
                                       "products.csv", "purchases.csv"]
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "synth", "--out", str(stopped),
                             "--purchases", "3000000", "--customers", "3000"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (stopped.is_dir() and any(n.startswith(".synth-") for n in os.listdir(stopped))):
        assert time.time() < deadline and proc.poll() is None, "synth never started writing"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert os.listdir(stopped) == []


def test_synth_help_names_only_the_files_it_writes(capsys):
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    text = capsys.readouterr().out
    assert "customers.csv" not in text
    assert "purchases.csv" in text and "products.csv" in text and "100,000,000" in text


# --- a pipeline folder's damaged records ---------------------------------------------------------

def _runs_file(tmp_path, *lines: bytes):
    folder = tmp_path / "p"
    os.makedirs(folder / "logs")
    (folder / "logs" / "runs.jsonl").write_bytes(b"".join(lines))
    return folder


def _line(**fields) -> bytes:
    return (json.dumps(fields) + "\n").encode("utf-8")


def test_runs_skips_a_line_that_is_not_utf8_with_a_note(tmp_path, capsys):
    base = dict(started="2025-01-01 10:00:00", config_fingerprint="abc123", log="x.log")
    folder = _runs_file(tmp_path, _line(run="r1", status="pushed", serving_version="17", **base),
                        b'{"run": "r2", "status": "caf\xe9"}\n',
                        _line(run="r3", status="failed", **dict(base, started="2025-01-02 10:00:00")))
    assert main(["runs", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[2] for line in out.splitlines()[1:]] == ["failed", "pushed"]
    assert err == f"note: {folder / 'logs' / 'runs.jsonl'} line 2: not UTF-8 text (invalid " \
                  "continuation byte); skipped\n"


def test_a_cut_off_last_line_keeps_how_its_run_ended(tmp_path, capsys):
    """The end line of a pushed run, cut off mid-write (a full disk): still `pushed`, with
    the version it pushed; a line cut before its status is `unknown`, never `killed`."""
    from pipelines.inspect import runs

    folder = tmp_path / "p"
    logs = str(folder / "logs")
    start = dict(started="2025-01-01 10:00:00", config_fingerprint="abc123", log="x.log",
                 pid=_dead_pid())
    runs.record(logs, dict(run="r1", status="running", **start))
    runs.record(logs, dict(run="r1", status="pushed", serving_version="1735725600",
                           metric="recall@10", model=0.41, popularity=0.2, split="eval",
                           seconds=80.0, **start))
    path = os.path.join(logs, "runs.jsonl")
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[:-30])  # the write stopped 30 bytes short
    assert main(["runs", str(folder)]) == 0
    out, err = capsys.readouterr()
    row = out.splitlines()[1].split()
    assert (row[2], row[-1]) == ("pushed", "1735725600"), out
    assert "line 2: cut off" in err
    runs.record(logs, dict(run="r2", status="running", **start))  # after the cut: its own line
    with open(path, "ab") as handle:
        handle.write(b'{"run": "r2", "stat')
    found = {r["run"]: r["status"] for r in runs.read(logs)}
    assert found == {"r1": "pushed", "r2": "unknown"}


def test_a_damaged_training_record_is_left_out_with_its_problem(tmp_path):
    from pipelines.runners.local import results

    run = tmp_path / "p" / "tfx" / "Trainer" / "model_run" / "7"
    os.makedirs(run)
    (run / "training_metrics.json").write_text('{"status": "comple', encoding="utf-8")
    found = results(str(tmp_path / "p"))
    assert found["metrics"] is None
    (problem,) = found["unreadable"]
    assert problem.startswith(f"{run / 'training_metrics.json'}: not readable as JSON (")


def test_a_damaged_metadata_store_is_one_line_naming_the_file(tmp_path, capsys):
    folder = tmp_path / "p"
    os.makedirs(folder / "logs")
    (folder / "metadata.sqlite").write_bytes(b"SQLite format 3\0" + os.urandom(4000))
    users = tmp_path / "users.csv"
    users.write_text("user_id\nC1\n", encoding="utf-8")
    code = main(["recommend", "--model", str(folder), "--users", str(users), "--out",
                 str(tmp_path / "recs.csv")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {folder / 'metadata.sqlite'}: ML Metadata cannot read it (")
    assert "CREATE" not in err and "query" not in err
    assert not os.path.exists(tmp_path / "recs.csv")


def test_a_recorded_path_is_read_inside_the_folder_it_is_in(tmp_path):
    from pipelines.runners.recorded import relocated

    here = str(tmp_path / "copy")
    assert relocated(here, "/old/runs/p/serving/17") == os.path.join(here, "serving", "17")
    assert relocated(here, "/old/serving/runs/p/tfx/Trainer/model_run/5") == os.path.join(
        here, "tfx", "Trainer", "model_run", "5")
    inside = os.path.join(here, "serving", "3")
    assert relocated(here, inside) == inside
    assert relocated(here, "/elsewhere/model") == "/elsewhere/model"
