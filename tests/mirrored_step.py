"""Run as a script: one SGD step of the two-tower model on 1 device and on 2 replicas.

Two logical CPU devices stand in for two GPUs (MirroredStrategy over them).
Prints JSON: the largest weight difference after the step, for the exact
full-catalog loss, and whether a step with global-norm clipping runs.
"""
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from trainer.model import ExactIndex, TwoTowerModel, make_optimizer  # noqa: E402
from transform.naming import CANDIDATE_POSITION  # noqa: E402


class Linear(tf.keras.Model):
    def __init__(self, key):
        super().__init__()
        self.key, self.dense = key, tf.keras.layers.Dense(2, kernel_initializer="ones")

    def call(self, features, training=False):
        return self.dense(features[self.key])


rng = np.random.default_rng(0)
catalog = {"c": rng.normal(size=(5, 3)).astype(np.float32), CANDIDATE_POSITION: np.arange(5)}
batch = {"q": rng.normal(size=(8, 3)).astype(np.float32),
         "c": catalog["c"][[0, 1, 2, 3, 4, 0, 1, 2]],
         CANDIDATE_POSITION: np.array([0, 1, 2, 3, 4, 0, 1, 2])}


def step(strategy, clipping):
    with strategy.scope():
        model = TwoTowerModel(Linear("q"), Linear("c"), ExactIndex(np.arange(5), 2, k=1), [1],
                              temperature=0.5, catalog=catalog)
        model.compile(optimizer=make_optimizer({"learning_rate": 0.5, "optimizer": "sgd",
                                                "clipping": clipping, "clip_value": 0.01}))
    data = tf.data.Dataset.from_tensor_slices(batch).batch(8)
    model.fit(data, epochs=1, verbose=0)
    return [v.numpy() for v in model.query_tower.weights + model.candidate_tower.weights]


one = step(tf.distribute.get_strategy(), "none")
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
two = step(mirrored, "none")
moved = max(float(np.abs(a - np.ones_like(a)).max()) for a in one if a.ndim == 2)
clipped = step(mirrored, "global_norm")
print(json.dumps({"replicas": mirrored.num_replicas_in_sync,
                  "difference": max(float(np.abs(a - b).max()) for a, b in zip(one, two)),
                  "moved": moved, "clipped_finite": all(np.isfinite(a).all() for a in clipped)}))
