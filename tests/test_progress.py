"""`twotower recommend` keeps TensorFlow's native start-up lines off the terminal."""
import os
import subprocess
import sys

from conftest import ROOT

IMPORT = "import tensorflow"
QUIET = ("from pipelines.recommend import _import_tensorflow_quietly; "
         "_import_tensorflow_quietly(); import tensorflow as tf; print(tf.__version__)")


def test_tensorflows_native_lines_are_kept_off_stderr():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_USE_LEGACY_KERAS="1")
    loud = subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True,
                          cwd=ROOT, env=env)
    assert loud.returncode == 0 and loud.stderr.strip(), "TensorFlow printed nothing: no test"
    quiet = subprocess.run([sys.executable, "-c", QUIET], capture_output=True, text=True,
                           cwd=ROOT, env=env)
    assert quiet.returncode == 0 and quiet.stdout.startswith("2."), quiet.stderr
    assert quiet.stderr == ""
