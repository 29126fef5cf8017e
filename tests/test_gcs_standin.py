"""The Cloud Storage stand-in: TensorFlow's, Beam's and TFX's own gs:// clients on one folder.

A process with the stand-in's environment writes, lists, renames and deletes
``gs://`` objects through TensorFlow (C++, libcurl), Beam's GCS filesystem
(``google-cloud-storage``) and TFX's ``fileio``; the files are where this
process reads them, folders are Cloud Storage prefixes, and a host other than
Cloud Storage's is refused, not reached.
"""
import json
import os
import subprocess
import sys

from gcs_standin import StandIn

CLIENT = r'''
import json, sys
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from tfx.dsl.io import fileio
import requests

g, out = tf.io.gfile, {}
g.makedirs("gs://bkt/tf/dir")
with g.GFile("gs://bkt/tf/dir/x.txt", "w") as f:
    f.write("hello " * 50000)
out["tf_read"] = len(g.GFile("gs://bkt/tf/dir/x.txt").read())
g.rename("gs://bkt/tf/dir/x.txt", "gs://bkt/tf/y.txt")
out["tf_list"] = sorted(g.listdir("gs://bkt/tf"))
writer = FileSystems.create("gs://bkt/beam/a.bin"); writer.write(b"\x00\x01" * 10); writer.close()
FileSystems.rename(["gs://bkt/beam/a.bin"], ["gs://bkt/beam/b.bin"])
out["beam_match"] = [m.path for m in FileSystems.match(["gs://bkt/beam/*"])[0].metadata_list]
out["beam_read"] = FileSystems.open("gs://bkt/beam/b.bin").read().hex()
fileio.copy("gs://bkt/beam/b.bin", "gs://bkt/tfx/c.bin")
out["tfx_exists"] = fileio.exists("gs://bkt/tfx/c.bin")
FileSystems.delete(["gs://bkt/beam/b.bin"])
out["beam_gone"] = not FileSystems.exists("gs://bkt/beam/b.bin")
try:
    requests.get("https://example.com/", timeout=20)
    out["elsewhere"] = "reached"
except requests.exceptions.ProxyError:
    out["elsewhere"] = "refused"
print("RESULT " + json.dumps(out))
'''


def test_tensorflow_beam_and_tfx_share_one_local_bucket_and_nothing_else(tmp_path):
    (tmp_path / "bkt").mkdir()
    storage = StandIn(tmp_path)
    try:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **storage.env())
        done = subprocess.run([sys.executable, "-c", CLIENT], env=env, capture_output=True,
                              text=True, timeout=600, cwd=str(tmp_path))
        assert done.returncode == 0, done.stderr[-3000:]
        [line] = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
        out = json.loads(line[len("RESULT "):])
    finally:
        storage.close()
    assert out == {"tf_read": 300000, "tf_list": ["dir/", "y.txt"],
                   "beam_match": ["gs://bkt/beam/b.bin"], "beam_read": "0001" * 10,
                   "tfx_exists": True, "beam_gone": True, "elsewhere": "refused"}
    assert (tmp_path / "bkt" / "tf" / "y.txt").read_text() == "hello " * 50000
    assert (tmp_path / "bkt" / "tfx" / "c.bin").read_bytes() == b"\x00\x01" * 10
    assert not (tmp_path / "bkt" / "beam" / "b.bin").exists()
    assert storage.refused == ["example.com:443"]
    hosts = {r["host"] for r in storage.requests}
    assert hosts <= {"www.googleapis.com", "storage.googleapis.com", "oauth2.googleapis.com"}
