"""Bad invocations of the CLI, as a table: each is one line on stderr naming the file, key or
row, the documented exit code, and nothing written (FAULTS.md, "Bad invocations").

Each row runs ``twotower`` (in-process ``main()``; a sample again as a real subprocess) in
a folder of its own holding a copy of the data, and compares every byte under it (and,
for ``recommend``, under the trained model's pipeline folder) before and after.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, demo_raw
from pipelines.cli.main import main

HOME = os.path.expanduser("~")


def snapshot(*folders):
    """Every file and folder under ``folders``, with file bytes and link targets."""
    out = {}
    for top in folders:
        for where, dirs, files in os.walk(top):
            out[where] = "dir"
            for name in files:
                path = os.path.join(where, name)
                out[path] = os.readlink(path) if os.path.islink(path) else open(path, "rb").read()
    return out


class Case:
    """A row's folder: ``data/`` (a copy of the small dataset), a config, files to refuse."""

    def __init__(self, tmp, small_data, model=None):
        self.tmp, self.model = tmp, model
        self.data = tmp / "data"
        shutil.copytree(small_data, self.data)
        self.root = tmp / "root"

    def p(self, *parts):
        return str(self.tmp.joinpath(*parts))

    def config(self, *overrides, name="config.json"):
        from pipelines.config.schema import apply_overrides

        raw = apply_overrides(demo_raw(str(self.data)), [f"pipeline.root={self.root}"]
                              + list(overrides))
        (self.tmp / name).write_text(json.dumps(raw), encoding="utf-8")
        return self.p(name)

    def purchases(self, transform):
        path = self.data / "purchases.csv"
        path.write_bytes(transform(path.read_bytes()))
        return self.config()

    def file(self, name, text="mine\n"):
        path = self.tmp / name
        os.makedirs(path.parent, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return str(path)


def row_42(data: bytes, bad: bytes) -> bytes:
    lines = data.split(b"\n")
    return b"\n".join(lines[:41] + [bad] + lines[41:])


def in_ms(data: bytes) -> bytes:
    """The same CSV with every timestamp in milliseconds."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    t = rows[0].index("timestamp")
    for row in rows[1:]:
        if row:
            row[t] += "000"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


# (case, argv(c), exit code, what the one line must name)
ROWS = [
    ("missing --config", lambda c: ["run", "--config", c.p("nope.yaml")], 2,
     ["--config", "nope.yaml", "No such file"]),
    ("config not YAML", lambda c: ["validate", "--config", c.file("bad.yaml", "a: [1,\n")], 2,
     ["bad.yaml", "not valid YAML"]),
    ("malformed --set", lambda c: ["validate", "--config", c.config(), "--set", "epochs"], 2,
     ["--set", "KEY=VALUE"]),
    ("pipeline.root is a file", lambda c: ["run", "--config", c.config(
        f"pipeline.root={c.file('rootfile')}")], 2, ["pipeline.root", "is a file"]),
    ("pipeline.root under a file", lambda c: ["run", "--config", c.config(
        f"pipeline.root={c.file('rootfile')}/runs")], 2, ["pipeline.root", "is a file"]),
    ("pipeline.root '~'", lambda c: ["run", "--config", c.config("pipeline.root='~'")], 2,
     ["pipeline.root", "'~'", "does not expand"]),
    ("pipeline.root '~/runs'", lambda c: ["run", "--config", c.config("pipeline.root=~/runs")],
     2, ["pipeline.root", "~/runs", "does not expand"]),
    ("pipeline.root '$HOME'", lambda c: ["prepare", "--config", c.config(
        "pipeline.root=$HOME/runs")], 2, ["pipeline.root", "$HOME/runs", "does not expand"]),
    ("data.path '~/x.csv'", lambda c: ["validate", "--config", c.config(
        "data.path=~/purchases.csv")], 2, ["data.path", "does not expand"]),
    ("demo --root a file", lambda c: ["demo", "--root", c.file("rootfile")], 2,
     ["pipeline.root", "is a file"]),
    ("a NUL byte in the header", lambda c: ["run", "--config", c.purchases(
        lambda b: b.replace(b"segment", b"seg\0ment", 1))], 2,
     ["purchases.csv row 1", "NUL"]),
    ("not UTF-8 at row 42", lambda c: ["run", "--config", c.purchases(
        lambda b: row_42(b, b"C00001,sm\xe9b,north,P00001,1735700000,1"))], 2,
     ["purchases.csv row 42", "not UTF-8"]),
    ("a 3 MB line at row 42", lambda c: ["prepare", "--config", c.purchases(
        lambda b: row_42(b, b"C00001,smb,north,P00001,1735700000," + b"9" * (3 << 20)))], 2,
     ["purchases.csv row 42", "longer than 2,000,000 bytes"]),
    ("UTF-16 data", lambda c: ["run", "--config", c.purchases(
        lambda b: b.decode().encode("utf-16"))], 2, ["purchases.csv row 1"]),
    ("timestamps in ms", lambda c: ["run", "--config", c.purchases(in_ms)], 2,
     ["purchases.csv row 2", "column 'timestamp'", "data.timestamp_unit"]),
    ("an unknown timestamp unit", lambda c: ["validate", "--config", c.config(
        "data.timestamp_unit=ns")], 2, ["data.timestamp_unit", "'ns'"]),
    ("synth --customers 0", lambda c: ["synth", "--out", c.p("syn"), "--customers", "0"], 2,
     ["--customers"]),
    ("synth over a user's purchases.csv", lambda c: [
        "synth", "--out", os.path.dirname(c.file("mine/purchases.csv"))], 2,
     ["purchases.csv", "did not write", "--force"]),
    ("generate over a hand-written module", lambda c: [
        "generate", "--config", c.config(), "--out",
        os.path.dirname(os.path.dirname(c.file("mine/transform/transform_module.py")))], 2,
     ["transform_module.py", "did not write", "--force"]),
    ("generate --out a file", lambda c: ["generate", "--config", c.config(), "--out",
                                         c.file("afile")], 2, ["afile", "not a folder"]),
    ("image over a user's Dockerfile", lambda c: [
        "image", "--config", c.config(), "--out", os.path.dirname(c.file("img/Dockerfile"))],
     2, ["Dockerfile", "did not write", "--force"]),
    ("runs of no folder", lambda c: ["runs", c.p("nowhere")], 2, ["RUN", "nowhere"]),
    ("inspect of no folder", lambda c: ["inspect", c.p("nowhere")], 2, ["RUN", "nowhere"]),
    ("recommend of no model", lambda c: ["recommend", "--model", c.p("nowhere"), "--users",
                                         c.file("u.csv"), "--out", c.p("r.csv")], 2,
     ["--model", "nowhere"]),
    ("lr-check --rates abc", lambda c: ["lr-check", "--config", c.config(), "--rates", "abc"],
     2, ["--rates", "'abc'"]),
    ("an int option given text", lambda c: ["recommend", "--model", "m", "--users", "u",
                                            "--out", "o", "--k", "x"], 2, ["--k", "'x'"]),
    ("an unknown command", lambda c: ["trian"], 2, ["invalid choice", "'trian'"]),
    ("prepare --engine bigquery without --print-sql", lambda c: [
        "prepare", "--config", c.config(), "--engine", "bigquery"], 2, ["--print-sql"]),
    # refused at once, not after Transform or minutes of work (issue 32)
    ("training.seed -1", lambda c: ["run", "--config", c.config("training.seed=-1")], 2,
     ["training.seed", "-1", "0..4,294,967,295"]),
    ("training.seed 2**32", lambda c: ["validate", "--config", c.config(
        "training.seed=4294967296")], 2, ["training.seed", "4294967296"]),
    ("lr-check --rates 1e9", lambda c: ["lr-check", "--config", c.config(), "--rates",
                                        "0.01,1e9"], 2, ["--rates", "out of range", "(0, 10)"]),
    ("lr-check --steps 0", lambda c: ["lr-check", "--config", c.config(), "--steps", "0"], 2,
     ["--steps", "10..100,000", "got 0"]),
    ("lr-check's default rates above the range", lambda c: [
        "lr-check", "--config", c.config("training.learning_rate=5",
                                         "training.optimizer=sgd")], 2,
     ["--rates", "reach 50", "give --rates"]),
    ("synth --purchases 1e12", lambda c: ["synth", "--out", c.p("syn"), "--purchases",
                                          "1000000000000"], 2,
     ["--purchases", "1,000,000,000,000", "100,000,000"]),
    ("synth --seed -1", lambda c: ["synth", "--out", c.p("syn"), "--seed", "-1"], 2,
     ["--seed", "-1", "0..4,294,967,295"]),
    ("tensorboard --port 99999", lambda c: ["tensorboard", c.p("data"), "--port", "99999"], 2,
     ["--port", "1..65535", "99999"]),
    ("tensorboard --port -1", lambda c: ["tensorboard", c.p("data"), "--port", "-1"], 2,
     ["--port", "1..65535", "-1"]),
    ("a CRLF file with an LF row appended", lambda c: ["prepare", "--config", c.purchases(
        lambda b: b + b"C00001,smb,north,P00001,1735700000,1\n")], 2,
     ["purchases.csv row 3002", "ends with LF", "CRLF", "one kind of line ending"]),
    ("an LF file with a CRLF row appended", lambda c: ["run", "--config", c.purchases(
        lambda b: b.replace(b"\r\n", b"\n") + b"C00001,smb,north,P00001,1735700000,1\r\n")],
     2, ["purchases.csv row 3002", "ends with CRLF", "LF"]),
    ("headers differing only in case", lambda c: ["prepare", "--config", c.purchases(
        lambda b: b.replace(b"region", b"Segment", 1))], 2,
     ["data.path", "the header repeats column(s) ['Segment', 'segment']", "upper/lower case"]),
    # a fresh clone (no runs/ in the working folder): what to run first (issue 36)
    ("tune of the demo config before its data exists", lambda c: [
        "tune", "--config", os.path.join(ROOT, "examples", "b2b_demo.yaml"), "--trials", "4"],
     2, ["error: data.path: file not found: runs/b2b-demo/data/purchases.csv",
         "run `twotower demo`", "`twotower synth --out runs/b2b-demo/data`"]),
    ("run of the demo config before its data exists", lambda c: [
        "run", "--config", os.path.join(ROOT, "examples", "b2b_demo.yaml")], 2,
     ["data.path", "run `twotower demo`", "`twotower synth --out runs/b2b-demo/data`"]),
]

FLAG = {name: i for i, (name, *_) in enumerate(ROWS)}


def check(code, err, want_code, names, before, after):
    lines = err.strip().splitlines()
    assert code == want_code, err
    assert len(lines) == 1, err  # one line, no traceback, no warning
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert after == before, sorted(set(after) ^ set(before)) or "a file changed"


@pytest.mark.parametrize("name", [r[0] for r in ROWS])
def test_a_bad_invocation_is_one_line_and_writes_nothing(name, tmp_path, small_data, capsys,
                                                         monkeypatch):
    _, argv, want_code, names = ROWS[FLAG[name]]
    case = Case(tmp_path, small_data)
    args = argv(case)
    work = tmp_path / "cwd"  # relative paths ('~', '$HOME') would land here
    os.makedirs(work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    before = snapshot(tmp_path)
    code = invoke(args)
    captured = capsys.readouterr()
    check(code, captured.err, want_code, names, before, snapshot(tmp_path))
    assert captured.out == ""


def invoke(args):
    """main()'s exit code (argparse ends the process for a usage error: caught here)."""
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


def test_an_argparse_error_is_one_line_too(capsys):
    for args in (["recommend", "--model", "m"], ["run"], ["synth", "--customers", "many"]):
        assert invoke(args) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: twotower"), err


@pytest.mark.parametrize("name", ["missing --config", "a NUL byte in the header",
                                  "pipeline.root '~'", "an unknown command"])
def test_the_same_through_the_real_entry_point(name, tmp_path, small_data):
    """`python -m pipelines` (a fresh process: imports, exit status, stderr as the user sees)."""
    _, argv, want_code, names = ROWS[FLAG[name]]
    case = Case(tmp_path, small_data)
    args = argv(case)
    os.makedirs(tmp_path / "cwd")
    before = snapshot(tmp_path)
    done = subprocess.run([sys.executable, "-m", "pipelines"] + args, capture_output=True,
                          text=True, cwd=tmp_path / "cwd", env=dict(
                              os.environ, PYTHONPATH=ROOT, XDG_STATE_HOME=str(tmp_path / "s")))
    err = "\n".join(line for line in done.stderr.splitlines() if "FutureWarning" not in line
                    and "warnings.warn" not in line)  # google.api_core on Python 3.10
    check(done.returncode, err, want_code, names, before, snapshot(tmp_path))


def test_a_read_only_pipeline_root_is_one_line(tmp_path, small_data):
    """A read-only file system (a tmpfs mounted ro in a user and mount namespace: root in a
    container writes through permission bits, not through a read-only mount)."""
    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro,size=64k tmpfs {tmp_path}"]
    ).returncode:
        pytest.skip("unshare -m (a mount namespace for a read-only tmpfs) is not available")
    case = Case(tmp_path, small_data)
    ro = tmp_path / "ro"
    os.makedirs(ro)
    config = case.config(f"pipeline.root={ro}")
    before = snapshot(tmp_path)
    script = (f"mount -t tmpfs -o ro,size=64k tmpfs {ro} && {sys.executable} -m pipelines run "
              f"--config {config}")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, cwd=ROOT)
    err = "\n".join(line for line in done.stderr.splitlines() if "FutureWarning" not in line
                    and "warnings.warn" not in line)
    check(done.returncode, err, 2, ["pipeline.root", "not writable"], before, snapshot(tmp_path))


# ---- recommend, with a trained model (the session's e2e run): refused before any loading
def model_rows():
    return [
        ("--out is --history", lambda c: dict(history=c.hist, out=c.hist), ["--out", "--history"]),
        ("--out is --users", lambda c: dict(out=c.users), ["--out", "--users"]),
        ("--out is the training data", lambda c: dict(out=c.train),
         ["--out", "training data"]),
        ("--out is the candidate table", lambda c: dict(out=c.products),
         ["--out", "candidate"]),
        ("--out is a hard link to --users", lambda c: dict(out=c.link("hard", c.users)),
         ["--out", "--users"]),
        ("--out is a symbolic link to --history", lambda c: dict(
            history=c.hist, out=c.link("soft", c.hist)), ["--out", "--history"]),
        ("--out inside the model", lambda c: dict(out=os.path.join(c.serving, "recs.csv")),
         ["--out", "inside the model"]),
        ("--out in no folder", lambda c: dict(out=c.p("no", "such", "dir", "o.csv")),
         ["--out", "does not exist"]),
        ("--out is a folder", lambda c: dict(out=c.p("data")), ["--out", "is a folder"]),
        ("--out over a user's file", lambda c: dict(out=c.file("report.csv")),
         ["--out", "report.csv", "--force"]),
        ("--out twice", lambda c: dict(out=c.p("r.csv"), again=c.p("r.csv")),
         ["--buy-again-out", "also given as --out"]),
        ("--batch-size 0", lambda c: dict(out=c.p("r.csv"), extra=["--batch-size", "0"]),
         ["--batch-size", "0"]),
        ("--k 0", lambda c: dict(out=c.p("r.csv"), extra=["--k", "0"]), ["--k", "0"]),
        ("--users missing", lambda c: dict(out=c.p("r.csv"), users=c.p("nobody.csv")),
         ["nobody.csv", "no such file"]),
        ("--users not UTF-8", lambda c: dict(out=c.p("r.csv"), users=c.file_bytes(
            "u8.csv", b"customer_id\nC00001\n\xff\xfe\n")), ["u8.csv row 3", "not UTF-8"]),
        ("--history in ms", lambda c: dict(out=c.p("r.csv"), history=c.file_bytes(
            "ms.csv", in_ms(open(c.train, "rb").read()))), ["ms.csv row", "'timestamp'",
                                                            "data.timestamp_unit"]),
    ]


class ModelCase(Case):
    def __init__(self, tmp, small_data, run):
        super().__init__(tmp, small_data)
        from pipelines.runners.local import results

        self.run = run
        self.serving = results(run["root"])["serving_model"]
        self.train = os.path.join(run["data"], "purchases.csv")
        self.products = os.path.join(run["data"], "products.csv")
        self.users = self.file("users.csv", "customer_id\nC00001\n0042\n")
        self.hist = self.file_bytes("hist.csv", open(self.train, "rb").read())

    def file_bytes(self, name, data):
        (self.tmp / name).write_bytes(data)
        return self.p(name)

    def link(self, kind, target):
        path = self.p(f"{kind}.csv")
        (os.link if kind == "hard" else os.symlink)(target, path)
        return path


@pytest.mark.e2e
@pytest.mark.parametrize("name", [r[0] for r in model_rows()])
def test_a_bad_recommend_is_refused_before_the_model_loads(name, e2e_run, tmp_path, small_data,
                                                           capsys, monkeypatch):
    (_, make, names), = [r for r in model_rows() if r[0] == name]
    case = ModelCase(tmp_path, small_data, e2e_run)
    got = make(case)
    args = ["recommend", "--model", e2e_run["root"], "--users", got.get("users", case.users),
            "--out", got["out"]] + got.get("extra", [])
    if got.get("history"):
        args += ["--history", got["history"]]
    if got.get("again"):
        args += ["--buy-again-out", got["again"]]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    # refused before TensorFlow is needed: importing it (to load the model) would fail here
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    before = snapshot(tmp_path, e2e_run["root"], e2e_run["data"])
    code = invoke(args)
    captured = capsys.readouterr()
    check(code, captured.err, 2, names, before, snapshot(tmp_path, e2e_run["root"],
                                                         e2e_run["data"]))


def test_an_unexpected_error_is_one_line_naming_the_log_of_its_traceback(tmp_path, capsys,
                                                                          monkeypatch):
    """A bug (here a KeyError raised inside a command) is exit 1 and one line; the traceback
    is in a log file the line names, not on the terminal."""
    from pipelines.cli.errors import handled

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("TWOTOWER_TRACEBACK", raising=False)

    def command():
        return {}["missing"]

    assert handled("runs", command) == 1
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: twotower runs failed: KeyError: 'missing' (traceback: ")
    log = line.rsplit("(traceback: ", 1)[1].rstrip(")")
    assert log.startswith(str(tmp_path / "twotower")) and "Traceback (most recent call last)" \
        in open(log, encoding="utf-8").read()
    assert handled("runs", lambda: (_ for _ in ()).throw(OSError(30, "Read-only file system",
                                                                   "/data/x"))) == 2
    assert capsys.readouterr().err == "error: /data/x: Read-only file system\n"
