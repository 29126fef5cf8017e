"""Hostile and broken configs, and two runs on one root (FAULTS.md lists each row's test)."""
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, demo_raw
from pipelines.cli.main import main

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
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "root").exists() and not (tmp_path / "pwned").exists()


def test_the_bomb_is_refused_quickly(tmp_path):
    from pipelines.config.schema import ConfigError, read_raw

    started = time.time()
    with pytest.raises(ConfigError, match="more than 100,000 values"):
        read_raw(yaml_config(tmp_path, BOMB))
    assert time.time() - started < 5


def test_a_second_run_on_a_held_root_is_refused_and_a_killed_holder_frees_it(
        tmp_path, small_data, capsys):
    from pipelines.runners.lock import holding

    root = tmp_path / "root" / "b2b-demo"  # <pipeline.root>/<pipeline.name>
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
        assert f"pipeline.name: {root} is in use by another run (pipeline 'first', pid " \
               f"{holder.pid}" in err
        assert not (root / "input").exists() and not (root / "tfx").exists()
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs
        holder.wait()
    with holding(str(root), "second"):  # the operating system released the lock
        pass


def test_a_root_holding_pipelines_is_not_taken_for_one_of_them(tmp_path, capsys):
    """`runs`, `inspect` and `recommend` given the shared root name the pipelines in it,
    never pick one."""
    for name in ("alpha", "beta"):
        os.makedirs(tmp_path / "shared" / name / "modules")
    shared = str(tmp_path / "shared")
    listed = (f"{shared} is a root holding the pipelines alpha, beta: give one of their "
              f"folders, e.g. {os.path.join(shared, 'alpha')}")
    for args in (["runs", shared], ["recommend", "--model", shared, "--users", "u.csv",
                                    "--out", str(tmp_path / "r.csv")]):
        code, out, err = run_cli(args, capsys)
        assert code == 2 and (f"ROOT: {listed}" in err or f"--model: {listed}" in err), err
    code, out, err = run_cli(["inspect", shared], capsys)
    assert code == 2 and listed in err, err
    assert sorted(os.listdir(shared)) == ["alpha", "beta"]  # nothing written


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


# ---- bad data, through the CLI (`twotower prepare`): exit 2, one message naming the file
HEAD = "customer_id,segment,region,product_id,timestamp,quantity\n"
GOOD = "".join(f"C{i % 4},smb,north,P{i % 3 + 1},{1700000000 + i * 3600},1\n" for i in range(40))


def prepare_cli(tmp_path, capsys, purchases, products=None, overrides=()):
    from test_prepare import PRODUCTS, config

    cfg = config(tmp_path, purchases, products=products or PRODUCTS,
                 overrides=["data.timestamp=timestamp"] + list(overrides))
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json(), encoding="utf-8")
    return run_cli(["prepare", "--config", str(path), "--out", str(tmp_path / "out")], capsys)


@pytest.mark.parametrize("case, purchases, needle", [
    ("empty_file", "", "purchases.csv is empty: a CSV with a header row is needed"),
    ("header_only", HEAD, "0 interaction rows; at least 2 are needed"),
    ("repeated_header", HEAD.replace("quantity", "region"), "the header repeats column(s) "
                                                              "['region']"),
    ("not_utf8", HEAD + GOOD + "C1,sm\xe9b,north,P1,1700999999,1\n" + GOOD * 200,
     "purchases.csv row 42: not UTF-8 text (byte 0xe9"),
])
def test_unreadable_files_are_one_line_naming_the_file(tmp_path, capsys, case, purchases, needle):
    if case == "not_utf8":  # a Latin-1 byte in row 42 (of 8,000: DuckDB reads past it), written
        # after the config is made; it used to be reported as "the header is not UTF-8"
        from test_prepare import config

        cfg = config(tmp_path, purchases, overrides=["data.timestamp=timestamp"])
        (tmp_path / "purchases.csv").write_bytes(purchases.encode("latin-1"))
        path = tmp_path / "config.json"
        path.write_text(cfg.to_json(), encoding="utf-8")
        code, out, err = run_cli(["prepare", "--config", str(path), "--out",
                                  str(tmp_path / "out")], capsys)
    else:
        code, out, err = prepare_cli(tmp_path, capsys, purchases)
    assert code == 2, out + err
    assert needle in err and "purchases.csv" in err, err
    assert len(err.strip().splitlines()) == 1, err
    if case == "not_utf8":
        assert "header" not in err, err
    assert not (tmp_path / "out").exists()


def test_quoted_separators_crlf_and_a_bom_are_read_as_written(tmp_path, capsys):
    text = ("\ufeff" + HEAD + GOOD).replace("\n", "\r\n")
    products = 'product_id,category,price\r\nP1,"ink, black",10.5\r\nP2,paper,2\r\nP3,"a ""b""",7\r\n'
    code, out, err = prepare_cli(tmp_path, capsys, text, products)
    assert code == 0, err
    from test_prepare import rows_of

    catalog = {r["product_id"]: r["category"] for r in rows_of(str(tmp_path / "out"), "catalog")}
    assert catalog == {"P1": "ink, black", "P2": "paper", "P3": 'a "b"'}


def test_a_catalog_of_one_candidate_is_refused_before_training(tmp_path, capsys):
    one = "".join(f"C{i % 4},smb,north,P1,{1700000000 + i * 3600},1\n" for i in range(40))
    code, _, err = prepare_cli(tmp_path, capsys, HEAD + one, "product_id,category,price\nP1,a,1\n")
    assert code == 2 and "the catalog has 1 candidate(s); retrieval ranks at least 2" in err


def test_times_far_from_now_are_kept_in_order(tmp_path, capsys):
    """Epoch seconds and ISO times from before 1970 to 2200 are read as the instants they are."""
    rows = [("C0", "P1", "-86400"), ("C0", "P2", "1970-01-01T00:00:00Z"),
            ("C1", "P1", "2000-01-01T00:00:00Z"), ("C1", "P3", "2200-01-01T00:00:00Z"),
            ("C0", "P3", "7258118400"), ("C1", "P2", "2199-12-31T23:59:59Z")]
    text = HEAD + "".join(f"{q},smb,north,{p},{t},1\n" for q, p, t in rows) + GOOD
    code, _, err = prepare_cli(tmp_path, capsys, text, overrides=["data.split.method=hash"])
    assert code == 0, err
    from test_prepare import rows_of

    got = {(r["customer_id"], r["product_id"], r["timestamp"])
           for s in ("train", "eval") for r in rows_of(str(tmp_path / "out"), s)}
    for q, p, t in [("C0", "P1", -86400), ("C0", "P2", 0), ("C1", "P1", 946684800),
                    ("C1", "P3", 7258118400), ("C0", "P3", 7258118400),
                    ("C1", "P2", 7258118399)]:
        assert (q, p, t) in got


def test_an_empty_test_split_is_named(tmp_path, capsys):
    code, _, err = prepare_cli(tmp_path, capsys, HEAD + GOOD, overrides=[
        "data.split.method=dates", "data.split.eval_from=2023-11-15",
        "data.split.test_from=2031-01-01"])
    assert code == 2 and "the dates split leaves no test rows" in err, err


def test_what_a_killed_preparation_left_is_cleared_and_unchanged_input_is_kept(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    left = tmp_path / f".out.partial-{dead.pid}"
    os.makedirs(left / "train")
    (left / "train" / "data.parquet").write_bytes(b"half a file")
    code, out, err = prepare_cli(tmp_path, capsys, HEAD + GOOD)
    assert code == 0, err
    assert not left.exists()
    report = tmp_path / "out" / "prepare_report.json"
    before = os.stat(tmp_path / "out" / "train" / "data.parquet").st_mtime_ns
    assert prepare_cli(tmp_path, capsys, HEAD + GOOD)[0] == 0  # same bytes, same program
    assert os.stat(tmp_path / "out" / "train" / "data.parquet").st_mtime_ns == before
    changed = HEAD + GOOD + "C9,smb,north,P1,1800000000,1\n"
    assert prepare_cli(tmp_path, capsys, changed)[0] == 0  # one row more: prepared again
    assert json.loads(report.read_text(encoding="utf-8"))["rows"] == 41


@pytest.mark.parametrize("size", ["8k", "24k"])
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, capsys, size):
    """A tmpfs of a few KB (in a user and mount namespace) fills up during preparation: in
    DuckDB's Parquet writer (8k) or in Python's report writer (24k)."""
    import shutil

    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=8k tmpfs {tmp_path}"]
    ).returncode:
        pytest.skip("unshare -m (a mount namespace for a small tmpfs) is not available here")
    from test_prepare import config

    cfg = config(tmp_path, HEAD + GOOD, overrides=["data.timestamp=timestamp"])
    (tmp_path / "config.json").write_text(cfg.to_json(), encoding="utf-8")
    disk = tmp_path / "disk"
    os.makedirs(disk)
    script = (f"mount -t tmpfs -o size={size} tmpfs {disk} && {sys.executable} -m pipelines "
              f"prepare --config {tmp_path / 'config.json'} --out {disk / 'out'}; "
              f"code=$?; ls -A {disk}; exit $code")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.strip() == ""  # the tmpfs holds nothing: no partial folder, no output


@pytest.mark.parametrize("megabytes", [3, 50])
def test_a_huge_line_is_named_not_swallowed(tmp_path, capsys, megabytes):
    """A line longer than DuckDB's 2 MB CSV line limit is named by row before DuckDB reads
    the file: at 3 MB DuckDB itself named the row, at 50 MB it said "The Parallel CSV
    Reader currently does not support a full read on this file". The bytes are read in 1 MB
    blocks, so a 1 GB line costs no more memory than this one."""
    big = "C1,smb,north,P1,1700999999," + "9" * (megabytes << 20) + "\n"
    code, _, err = prepare_cli(tmp_path, capsys, HEAD + GOOD + big + GOOD)
    assert code == 2, err
    assert "purchases.csv row 42: a line longer than 2,000,000 bytes" in err, err
    assert len(err.strip().splitlines()) == 1 and "Parallel CSV Reader" not in err
    assert not (tmp_path / "out").exists()


def test_rows_are_named_by_csv_record_when_a_quoted_cell_spans_lines(tmp_path, capsys):
    """A cell over two lines makes records and lines differ: the row is the record."""
    from test_prepare import config

    text = HEAD + 'C1,"sm\nb",north,P1,1700000000,1\n' + GOOD + "C1,sm\xe9b,north,P1,1,1\n"
    cfg = config(tmp_path, text, overrides=["data.timestamp=timestamp"])
    (tmp_path / "purchases.csv").write_bytes(text.encode("latin-1"))
    (tmp_path / "config.json").write_text(cfg.to_json(), encoding="utf-8")
    code, _, err = run_cli(["prepare", "--config", str(tmp_path / "config.json"), "--out",
                            str(tmp_path / "out")], capsys)
    assert code == 2 and "purchases.csv row 43: not UTF-8 text" in err, err  # line 44


def test_a_file_that_changes_while_it_is_read_is_refused(tmp_path, capsys, monkeypatch):
    """The sources are hashed before and after the program reads them: a file appended to
    in between (here right after DuckDB's read) gives an error, not a mixed preparation."""
    from pipelines.data.sql import duck

    real = duck._run

    def read_then_append(runner, plan, tmp):
        report = real(runner, plan, tmp)
        with open(tmp_path / "purchases.csv", "a", encoding="utf-8") as handle:
            handle.write("C9,smb,north,P1,1800000000,1\n")  # another process writing
        return report

    monkeypatch.setattr(duck, "_run", read_then_append)
    code, _, err = prepare_cli(tmp_path, capsys, HEAD + GOOD)
    assert code == 2 and "the input changed while it was being read; nothing was written" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("root", ["~", "~/runs", "$HOME/runs", "${HOME}/runs"])
def test_a_pipeline_root_with_shell_syntax_is_refused_not_made_literally(
        tmp_path, small_data, capsys, monkeypatch, root):
    """`~` and `$HOME` are not expanded (a config is data: docs in pipelines/local_paths.py):
    refused by name, and no folder named '~' or '$HOME' is made in the working folder."""
    monkeypatch.chdir(tmp_path)
    config = yaml_config(tmp_path, valid_yaml(tmp_path, small_data).replace(
        f"root: {tmp_path / 'root'}", f"root: '{root}'"))
    for command in ("run", "prepare", "validate"):
        code, _, err = run_cli([command, "--config", config], capsys)
        assert code == 2 and f"pipeline.root: {root!r}" in err and "does not expand" in err, err
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]


def test_a_data_error_leaves_no_pipeline_folder(tmp_path, small_data, capsys):
    """Refused data (here a timestamp in milliseconds) is found after the run took its folder:
    the log, the lock and the folders it made are removed again. An existing folder keeps
    what it had (the refused run is recorded in its runs.jsonl)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    text = (data / "purchases.csv").read_text(encoding="utf-8").splitlines()
    text[5] = text[5].replace(",17", ",17000", 1)  # one time in ms: the year ~55,000
    (data / "purchases.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    config = yaml_config(tmp_path, valid_yaml(tmp_path, str(data)))
    code, _, err = run_cli(["run", "--config", config], capsys)
    assert code == 2 and "purchases.csv row 6, column 'timestamp'" in err, err
    assert not (tmp_path / "root").exists()
    os.makedirs(tmp_path / "root" / "b2b-demo" / "modules")  # a pipeline folder that was there
    code, _, err = run_cli(["run", "--config", config], capsys)
    assert code == 2
    folder = tmp_path / "root" / "b2b-demo"
    assert (folder / "modules").is_dir() and (folder / "logs" / "runs.jsonl").exists()


def test_a_run_killed_with_sigkill_is_listed_as_killed(tmp_path, small_data, capsys):
    """A run records itself as running when it starts; killed (SIGKILL: no clean-up runs), it
    shows as `killed` in `twotower runs`, and the next run is listed beside it."""
    import signal

    config = yaml_config(tmp_path, valid_yaml(tmp_path, small_data))
    runs_file = tmp_path / "root" / "b2b-demo" / "logs" / "runs.jsonl"
    run = subprocess.Popen([sys.executable, "-m", "pipelines", "run", "--config", config],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (runs_file.exists() and '"running"' in runs_file.read_text()):
            assert time.time() < deadline and run.poll() is None, "the run never started"
            time.sleep(0.2)
        code, out, _ = run_cli(["runs", str(tmp_path / "root" / "b2b-demo")], capsys)
        assert code == 0 and out.splitlines()[1].split()[2] == "running", out
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
    code, out, _ = run_cli(["runs", str(tmp_path / "root" / "b2b-demo")], capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and lines[1].split()[2] == "killed", out
    from pipelines.inspect import runs

    (killed,) = runs.read(str(runs_file.parent))
    assert killed["status"] == "killed" and "SIGKILL" in killed["error"]
