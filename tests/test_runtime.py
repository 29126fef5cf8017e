"""Where the Trainer runs: runtime parameters, GPUs asked for, several GPUs (trainer.runtime)."""
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from pipelines.config.schema import Config
from tests.conftest import demo_raw
from trainer.runtime import NoGpuError, apply_runtime, choose_strategy

HERE = os.path.dirname(os.path.abspath(__file__))


def spec():
    return Config.from_dict(demo_raw("/nowhere")).to_dict()


def test_runtime_values_replace_the_frozen_ones_typed():
    out = apply_runtime(spec(), {"epochs": 12, "learning_rate": 0.002, "batch_size": 64.0})
    assert (out["training"]["epochs"], out["training"]["learning_rate"],
            out["training"]["batch_size"]) == (12, 0.002, 64)
    assert type(out["training"]["batch_size"]) is int
    assert spec()["training"]["epochs"] != 12  # the frozen spec is not modified
    assert apply_runtime(spec(), None) == spec()


@pytest.mark.parametrize("values, message", [
    ({"epochs": 0}, r"epochs: 0 is out of range: use 1\.\.1000"),
    ({"epochs": 2.5}, "epochs: 2.5 is not a whole number"),
    ({"batch_size": "many"}, "batch_size: 'many' is not a whole number"),
    ({"batch_size": 1}, r"batch_size: 1 is out of range: use 2\.\.65536"),
    ({"learning_rate": 10.0}, r"learning_rate: 10\.0 is out of range: use \(0, 10\)"),
    ({"learning_rate": 0.1}, "above 0.01"),
    ({"momentum": 0.9}, r"unknown runtime parameter\(s\) \['momentum'\]"),
])
def test_bad_runtime_values_are_refused_by_name(values, message):
    with pytest.raises(ValueError, match=message):
        apply_runtime(spec(), values, learning_rate_ceiling=0.01)


def test_a_refused_runtime_value_is_recorded_in_training_metrics(tmp_path):
    from trainer.training import run_training

    with pytest.raises(ValueError):
        run_training(spec(), {"config_fingerprint": "f", "library_version": "v",
                              "learning_rate_ceiling": 0.01}, {}, "", "", str(tmp_path),
                     hyperparameters={"learning_rate": 0.1})
    record = json.loads((tmp_path / "training_metrics.json").read_text(encoding="utf-8"))
    assert record["status"] == "failed" and "learning_rate: 0.1 is above 0.01" in record["error"]


def test_gpus_asked_for_but_none_visible_is_one_clear_error():
    with pytest.raises(NoGpuError, match=r"asked for 2 GPU\(s\) \(vertex.training."
                                         r"accelerator_count\) but TensorFlow sees none"):
        choose_strategy(2, visible_gpus=[])


def test_one_device_unless_several_gpus_are_visible():
    assert choose_strategy(0, visible_gpus=[]).num_replicas_in_sync == 1
    gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    assert choose_strategy(1, visible_gpus=[gpu]).num_replicas_in_sync == 1
    assert isinstance(choose_strategy(2, visible_gpus=[gpu, gpu]),
                      tf.distribute.MirroredStrategy)


def test_two_replicas_take_the_same_step_as_one_device():
    """MirroredStrategy over two logical CPUs (standing in for two GPUs): each replica's
    mean loss is divided by the replica count, so the summed gradient is the batch's.
    Without that division the step is twice as long (measured: 1.66 apart)."""
    done = subprocess.run([sys.executable, os.path.join(HERE, "mirrored_step.py")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["replicas"] == 2 and got["moved"] > 0.5
    assert got["difference"] < 1e-5, got
    assert got["clipped_finite"]


def test_a_metrics_write_cut_short_leaves_the_earlier_record_whole(tmp_path, monkeypatch):
    """A full disk in the middle of writing ``training_metrics.json``: the earlier record
    stays as it was (the new one goes beside it and is renamed over it when whole)."""
    import errno

    import tensorflow as tf

    from trainer import training

    training.write_record(str(tmp_path), {"status": "running", "epochs": [1]})
    real = tf.io.gfile.GFile

    class FullDisk(real):
        def write(self, text):
            super().write(text[:len(text) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tf.io.gfile, "GFile", FullDisk)
    with pytest.raises(OSError, match="No space left on device"):
        training.write_record(str(tmp_path), {"status": "completed", "epochs": [1, 2, 3]})
    path = tmp_path / training.METRICS_FILE
    assert json.loads(path.read_text(encoding="utf-8")) == {"status": "running", "epochs": [1]}
    monkeypatch.setattr(tf.io.gfile, "GFile", real)
    training.write_record(str(tmp_path), {"status": "completed"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"status": "completed"}
    assert sorted(os.listdir(tmp_path)) == [training.METRICS_FILE]
