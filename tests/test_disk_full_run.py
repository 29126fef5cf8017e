"""The disk fills while TFX writes the serving model; the run fails in one line, the partial
copy is never served, and a rerun with room finishes from the cache (FAULTS.md)."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, demo_raw

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Runs inside the mount namespace (only it sees the tmpfs): what a later step would read.
LOOK = textwrap.dedent("""
    import json, os, subprocess, sys
    from pipelines.runners.local import results
    folder, users, out = sys.argv[1:4]
    serving = os.path.join(folder, "serving")
    rec = subprocess.run([sys.executable, "-m", "pipelines", "recommend", "--model", folder,
                          "--users", users, "--k", "5", "--out", out],
                         capture_output=True, text=True)
    print(json.dumps({"serving_model": results(folder)["serving_model"],
                      "versions": sorted(os.listdir(serving)),
                      "files": {v: sorted(os.listdir(os.path.join(serving, v)))
                                for v in os.listdir(serving)},
                      "recommend": [rec.returncode, rec.stderr.strip().splitlines()[-1:]],
                      "written": os.path.exists(out)}))
""")


def test_a_full_disk_while_pushing_fails_clearly_and_the_partial_model_is_never_served(
        tmp_path, small_data):
    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=8k tmpfs {tmp_path}"]
    ).returncode:
        pytest.skip("unshare -m (a mount namespace for a small tmpfs) is not available here")
    from test_resume import states

    raw = demo_raw(small_data)
    raw["pipeline"].update(root=str(tmp_path / "root"), name="disk", enable_cache=True,
                           min_lift_over_popularity=None)
    raw["training"].update(epochs=1)
    raw["model"].update(top_k=[10, 20])
    config = tmp_path / "config.json"
    config.write_text(json.dumps(raw), encoding="utf-8")
    folder = tmp_path / "root" / "disk"
    os.makedirs(folder / "serving")
    with open(os.path.join(small_data, "purchases.csv"), encoding="utf-8") as handle:
        customer = handle.read().splitlines()[1].split(",")[0]
    (tmp_path / "users.csv").write_text(f"customer_id\n{customer}\n", encoding="utf-8")
    (tmp_path / "look.py").write_text(LOOK, encoding="utf-8")
    run = f"{sys.executable} -m pipelines run --config {config}"
    look = f"{sys.executable} {tmp_path / 'look.py'} {folder} {tmp_path / 'users.csv'}"
    script = " ; ".join([
        f"mount -t tmpfs -o size=256k tmpfs {folder / 'serving'} || exit 99",
        f"{run} > {tmp_path / 'out1'} 2> {tmp_path / 'err1'}; echo $? > {tmp_path / 'code1'}",
        f"{look} {tmp_path / 'recs1.csv'} > {tmp_path / 'look1'}",
        f"mount -o remount,size=64m tmpfs {folder / 'serving'} || exit 98",  # room again
        f"{run} > {tmp_path / 'out2'} 2> {tmp_path / 'err2'}; echo $? > {tmp_path / 'code2'}",
        f"{look} {tmp_path / 'recs2.csv'} > {tmp_path / 'look2'}"])
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, cwd=ROOT, timeout=1500)
    assert done.returncode == 0, done.stdout + done.stderr

    def read(name):
        return (tmp_path / name).read_text(encoding="utf-8")

    # 1. The Pusher ran out of room: exit 1 and one line naming the cause, the log has the rest
    assert read("code1").strip() == "1", read("out1") + read("err1")
    failed = read("err1").strip().splitlines()
    assert failed[0].startswith("pipeline failed: ") and "No space left on device" in failed[0]
    assert "(full log: " in failed[0] and len(failed) == 1, failed  # one line, with the log
    first = json.loads(read("look1"))
    # a partial version folder was left (TFX copies in place; saved_model.pb goes last) ...
    assert len(first["versions"]) == 1 and first["files"][first["versions"][0]], first
    # ... and nothing reads it: no serving model, `recommend` refuses and writes nothing
    assert first["serving_model"] == "" and first["recommend"][0] == 2, first
    assert "pushed model" in first["recommend"][1][0] and not first["written"], first

    # 2. With room again, the same config finishes from the cache and pushes a whole model
    assert read("code2").strip() == "0", read("out2") + read("err2")
    second = json.loads(read("look2"))
    assert len(second["versions"]) == 2 and second["recommend"][0] == 0, second
    served = os.path.basename(second["serving_model"])
    assert served != first["versions"][0] and "saved_model.pb" in second["files"][served]
    assert second["written"]
    found = states(str(folder / "metadata.sqlite"), "disk")
    assert found["Pusher"] == ["FAILED", "COMPLETE"], found
    assert found["Trainer"] == ["COMPLETE", "CACHED"], found  # trained once
