"""A trained pipeline folder, copied elsewhere and then damaged (issue 32): `runs`,
`recommend` and `tensorboard` agree on it and serve the copy's own files.

ML Metadata records absolute paths into the folder where the run ran; a copy used to be
listed as pushed by `runs` and refused by `recommend` ("neither a serving SavedModel nor
a pipeline folder with a pushed model"). A cut-off ``training_metrics.json`` used to stop
`recommend --model <folder>` and `tensorboard` with a JSONDecodeError although the
SavedModel and the logs were intact: now one warning line names the file.
"""
import os
import shutil

import pytest

from pipelines.cli.main import main

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def copied(e2e_run, tmp_path_factory):
    """The shared run's pipeline folder copied to another place, its training record cut."""
    copy = str(tmp_path_factory.mktemp("moved") / "e2e-copy")
    shutil.copytree(e2e_run["root"], copy, symlinks=True)
    from pipelines.runners.local import results

    record = results(copy)["metrics_file"]
    assert record.startswith(copy + os.sep)
    with open(record, "r+b") as handle:
        handle.truncate(os.path.getsize(record) // 2)
    return {"copy": copy, "record": record, "run": e2e_run}


def test_runs_and_recommend_agree_on_a_copied_folder(copied, tmp_path, capsys):
    copy = copied["copy"]
    assert main(["runs", copy]) == 0
    listed = capsys.readouterr().out.splitlines()[1].split()
    assert listed[2] == "pushed"
    users = tmp_path / "users.csv"
    users.write_text("customer_id\nC00001\nC00002\n", encoding="utf-8")
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--model", copy, "--users", str(users), "--k", "5", "--out",
                 str(out)]) == 0
    printed, err = capsys.readouterr()
    # the copy's own serving model, the version `runs` lists
    assert f"model {os.path.join(copy, 'serving', listed[-1])};" in printed, printed
    warnings = [line for line in printed.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {copied['record']}: not readable as JSON ("
                        + warnings[0].split(": not readable as JSON (", 1)[1]], printed
    assert "left out" in warnings[0] and err == ""
    with open(out, encoding="utf-8") as handle:
        assert len(handle.read().splitlines()) == 1 + 2 * 5


def test_tensorboard_finds_the_copys_logs_despite_the_damaged_record(copied, capsys):
    assert main(["tensorboard", copied["copy"], "--print-logdir"]) == 0
    out, err = capsys.readouterr()
    logdir = out.strip()
    assert logdir.startswith(copied["copy"] + os.sep) and os.path.isdir(logdir), out
    assert len(err.splitlines()) == 1 and err.startswith(f"warning: {copied['record']}: ")
