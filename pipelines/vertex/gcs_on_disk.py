"""A filesystem for ``gs://`` in TFX's ``tfx.dsl.io``, backed by a local folder.

``register(root)`` makes every ``gs://bucket/path`` that TFX's fileio touches
in this process read and write ``root/bucket/path``, so code that stages to
Cloud Storage keeps its real ``gs://`` paths in what it produces.
`twotower compile --stage-dir DIR` uses it to compile on a machine without
Cloud Storage access (copy DIR to the bucket afterwards, e.g. ``gsutil -m rsync
-r DIR/BUCKET gs://BUCKET``); the tests use it in place of the bucket.
"""
import os

from tfx.dsl.io import filesystem_registry
from tfx.dsl.io.plugins.local import LocalFilesystem

ROOT = {"dir": None}


def local(path):
    path = path.decode() if isinstance(path, bytes) else path
    if not path.startswith("gs://"):
        return path
    return os.path.join(ROOT["dir"], path[len("gs://"):])


class GcsOnDisk(LocalFilesystem):
    SUPPORTED_SCHEMES = ["gs://"]

    @staticmethod
    def open(name, mode="r"):
        return LocalFilesystem.open(local(name), mode)

    @staticmethod
    def copy(src, dst, overwrite=False):
        return LocalFilesystem.copy(local(src), local(dst), overwrite)

    @staticmethod
    def exists(path):
        return LocalFilesystem.exists(local(path))

    @staticmethod
    def glob(pattern):
        found = LocalFilesystem.glob(local(pattern))
        return ["gs://" + os.path.relpath(p, ROOT["dir"]) for p in found]

    @staticmethod
    def isdir(path):
        return LocalFilesystem.isdir(local(path))

    @staticmethod
    def listdir(path):
        return LocalFilesystem.listdir(local(path))

    @staticmethod
    def makedirs(path):
        return LocalFilesystem.makedirs(local(path))

    @staticmethod
    def mkdir(path):
        return LocalFilesystem.mkdir(local(path))

    @staticmethod
    def remove(path):
        return LocalFilesystem.remove(local(path))

    @staticmethod
    def rename(src, dst, overwrite=False):
        return LocalFilesystem.rename(local(src), local(dst), overwrite)

    @staticmethod
    def rmtree(path):
        return LocalFilesystem.rmtree(local(path))

    @staticmethod
    def stat(path):
        return LocalFilesystem.stat(local(path))

    @staticmethod
    def walk(top, topdown=True, onerror=None):
        return LocalFilesystem.walk(local(top), topdown, onerror)


def register(root):
    ROOT["dir"] = str(root)
    filesystem_registry.DEFAULT_FILESYSTEM_REGISTRY.register(GcsOnDisk, priority=-100)
