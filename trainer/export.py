"""The exported SavedModel without the local paths TensorFlow writes into it.

TensorFlow Transform builds each vocabulary's lookup table with a ``shared_name`` made
from the vocabulary file's path at analysis time, written as the repr of a string tensor
(``hash_table_tf.Tensor(b'/.../tfx/Transform/transform_graph/4/.temp_path/tftransform_tmp/
_query_id', shape=(), dtype=string)_-2_-1``); the Trainer's serving model keeps those
names (``HashTableV2`` ops in the table-creating functions of ``saved_model.pb``), so every
model carried the absolute pipeline folder (or the ``gs://`` bucket) it was trained in.

A shared name only has to tell tables apart in one TensorFlow process (loading a model
appends ``_load_<n>`` to each; the file itself is an asset, found by the asset map). So
:func:`strip_local_paths` rewrites each path in a shared name as the file's base name and
a digest of the whole path (``asset:_query_id#1a2b3c4d``): still one name per table,
without the folder. Nothing else in ``saved_model.pb`` holds a path (checked by the tests).

Part of the runtime the generated Trainer module imports.
"""
import hashlib
import re

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

PATH_IN_NAME = re.compile(r"tf\.Tensor\(b'([^']*)', shape=\(\), dtype=string\)")


def _path_free(name: str) -> str:
    def short(found):
        path = found.group(1)
        base = path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        return f"asset:{base}#{hashlib.sha256(path.encode('utf-8')).hexdigest()[:8]}"

    return PATH_IN_NAME.sub(short, name)


def strip_local_paths(export_dir):
    """Rewrites the table shared names of ``export_dir/saved_model.pb`` without paths (see
    above) and its fingerprint; returns how many names changed."""
    pb = export_dir.rstrip("/") + "/saved_model.pb"
    model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(pb, "rb") as handle:
        model.ParseFromString(handle.read())
    changed = 0
    for graph in model.meta_graphs:
        nodes = list(graph.graph_def.node) + [n for f in graph.graph_def.library.function
                                              for n in f.node_def]
        for node in nodes:
            if "shared_name" not in node.attr:
                continue
            old = node.attr["shared_name"].s.decode("utf-8", "surrogateescape")
            new = _path_free(old)
            if new != old:
                node.attr["shared_name"].s = new.encode("utf-8", "surrogateescape")
                changed += 1
    if changed:
        with tf.io.gfile.GFile(pb + ".partial", "wb") as handle:
            handle.write(model.SerializeToString(deterministic=True))
        tf.io.gfile.rename(pb + ".partial", pb, overwrite=True)
        try:  # the fingerprint holds a checksum of saved_model.pb: made again for the new one
            from tensorflow.python.saved_model import fingerprinting_utils  # private: may go

            fingerprinting_utils.write_fingerprint(export_dir)
        except Exception:  # noqa: BLE001 (metadata only: the model loads without it)
            tf.io.gfile.remove(export_dir.rstrip("/") + "/fingerprint.pb")
    return changed
