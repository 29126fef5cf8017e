"""Cloud Storage objects as files: ``gs://BUCKET/NAME`` is ``root/BUCKET/NAME``.

What a stand-in serves and the test reads is one folder. A directory is only a
prefix, as in Cloud Storage, unless a client created the placeholder object
``NAME/`` (TensorFlow does for a folder): then the directory holds
:data:`FOLDER`. Writes go to a temporary file renamed over the object.
"""
import base64
import datetime
import hashlib
import os
import tempfile
import threading


def _rfc3339(seconds):
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


FOLDER = ".gcs-folder-object"  # in a directory: the object NAME/ exists (clients made it)


class Store:
    """Objects as files under ``root``: ``gs://b/n`` is ``root/b/n``.

    A directory is only a prefix, as in Cloud Storage, unless a client created
    the placeholder object ``NAME/`` (TensorFlow does for a folder): then the
    directory holds :data:`FOLDER`.
    """

    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()

    def path(self, bucket, name=""):
        if not bucket or "/" in bucket or bucket in (".", ".."):
            raise KeyError(bucket)
        parts = [p for p in name.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise KeyError(name)
        return os.path.join(self.root, bucket, *parts)

    def bucket_exists(self, bucket):
        return os.path.isdir(self.path(bucket))

    def meta(self, bucket, name):
        """The object's resource, or None (``NAME/`` is a folder's placeholder)."""
        path = self.path(bucket, name)
        if name.endswith("/"):
            if not os.path.isfile(os.path.join(path, FOLDER)) or not name.strip("/"):
                return None
            size, stamp, digest = 0, os.stat(path).st_mtime, hashlib.md5(b"")
        elif os.path.isfile(path):
            with open(path, "rb") as handle:
                data = handle.read()
            size, stamp, digest = len(data), os.stat(path).st_mtime, hashlib.md5(data)
        else:
            return None
        generation = str(int(stamp * 1e6))
        return {"kind": "storage#object", "id": f"{bucket}/{name}/{generation}",
                "name": name, "bucket": bucket, "size": str(size), "generation": generation,
                "metageneration": "1", "contentType": "application/octet-stream",
                "timeCreated": _rfc3339(stamp), "updated": _rfc3339(stamp),
                "md5Hash": base64.b64encode(digest.digest()).decode(),
                "storageClass": "STANDARD"}

    def read(self, bucket, name):
        path = self.path(bucket, name)
        if name.endswith("/"):
            return b"" if os.path.isfile(os.path.join(path, FOLDER)) else None
        if not os.path.isfile(path) or os.path.basename(path) == FOLDER:
            return None
        with open(path, "rb") as handle:
            return handle.read()

    def write(self, bucket, name, data):
        if not self.bucket_exists(bucket):
            raise KeyError(bucket)
        path = self.path(bucket, name)
        with self.lock:
            if name.endswith("/"):
                os.makedirs(path, exist_ok=True)
                with open(os.path.join(path, FOLDER), "wb"):
                    pass
                return
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".upload-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)

    def delete(self, bucket, name):
        path = self.path(bucket, name)
        with self.lock:
            marker = os.path.join(path, FOLDER)
            if name.endswith("/") and os.path.isfile(marker):
                os.remove(marker)
                if not os.listdir(path):
                    os.rmdir(path)
                return True
            if os.path.isfile(path) and os.path.basename(path) != FOLDER:
                os.remove(path)
                return True
        return False

    def names(self, bucket, prefix):
        """Every object name under ``prefix``, sorted (folders as ``NAME/`` placeholders)."""
        top = self.path(bucket)
        out = []
        for where, dirs, files in os.walk(top):
            rel = os.path.relpath(where, top).replace(os.sep, "/")
            rel = "" if rel == "." else rel + "/"
            if rel and FOLDER in files:
                out.append(rel)
            out.extend(rel + f for f in files if not f.startswith(".upload-") and f != FOLDER)
        return sorted(n for n in out if n.startswith(prefix))
