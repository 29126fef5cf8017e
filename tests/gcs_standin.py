"""A loopback stand-in for Cloud Storage: ``gs://`` backed by a local folder, for every client.

The tasks of a compiled pipeline reach ``gs://`` three ways: TensorFlow's own
GCS filesystem (C++, libcurl: SavedModels, TFRecord datasets, and TFX's
``fileio``), Apache Beam's GCS filesystem (the ``google-cloud-storage``
client: ExampleGen, StatisticsGen, Transform) and ``google-auth`` for tokens.
None of them takes another endpoint for the Storage hosts, so this stand-in sits
behind an HTTPS proxy (:mod:`https_proxy`): the clients run with ``HTTPS_PROXY``
pointing at it, and ``www.googleapis.com``, ``storage.googleapis.com`` and
``oauth2.googleapis.com`` are answered here, over TLS, by the part of the Cloud
Storage JSON API those clients use (objects: metadata, list, media download with ranges,
media/multipart/resumable uploads, rewrite and copy, delete, batch) and a token
endpoint. Any other host is refused and recorded (``refused``): nothing leaves
the machine.

Object ``gs://BUCKET/NAME`` is the file ``root/BUCKET/NAME``, so what the
tasks write is what the test reads, and ``pipelines.vertex.gcs_on_disk``
(TFX's ``fileio`` in this process) sees the same folder. A directory stands
for the placeholder object ``NAME/`` that clients create for folders.
"""
import email.parser
import email.policy
import json
import os
import urllib.parse
import uuid

from gcs_store import Store
from https_proxy import Proxy

HOSTS = ("www.googleapis.com", "storage.googleapis.com", "oauth2.googleapis.com")


class StandIn:
    """Cloud Storage (and its token endpoint) behind :class:`https_proxy.Proxy`, on ``root``.

    ``env()`` is what a client process needs; ``requests`` records what was asked,
    ``refused`` the hosts the proxy would not answer. ``also``: more hosts the proxy
    answers, ``{host: answer(method, host, path, query, headers, body)}`` (BigQuery's,
    :mod:`bigquery_standin`); ``tunnels``: hosts passed through to a local port
    (:class:`https_proxy.Proxy`; Vertex AI Training's gRPC, :mod:`training_standin`).
    """

    def __init__(self, root, also=None, tunnels=None):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.store = Store(self.root)
        self.requests, self.uploads, self.also = [], {}, dict(also or {})
        self.proxy = Proxy(HOSTS + tuple(self.also), self.answer,
                           default_host="storage.googleapis.com", tunnels=tunnels)
        self.refused = self.proxy.refused
        self.credentials = os.path.join(self.proxy.folder, "adc.json")
        with open(self.credentials, "w", encoding="utf-8") as handle:
            json.dump({"type": "authorized_user", "client_id": "standin",
                       "client_secret": "standin", "refresh_token": "standin",
                       "token_uri": "https://oauth2.googleapis.com/token"}, handle)

    def env(self):
        """Environment variables that send a process's Cloud Storage calls here.

        TensorFlow takes a token from ``GOOGLE_AUTH_TOKEN_FOR_TESTING``;
        ``google-auth`` (Beam, the Storage client) reads the application default
        credentials file written here, whose token request comes here too; no
        metadata server is looked for.
        """
        return dict(self.proxy.env(), GOOGLE_APPLICATION_CREDENTIALS=self.credentials,
                    GOOGLE_CLOUD_PROJECT="standin-project",
                    GOOGLE_AUTH_TOKEN_FOR_TESTING="standin-token", NO_GCE_CHECK="True",
                    GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9")

    def close(self):
        self.proxy.close()

    # ---- the API ------------------------------------------------------------------------

    def answer(self, method, host, path, query, headers, body):
        if host in self.also:
            return self.also[host](method, host, path, query, headers, body)
        self.requests.append({"method": method, "host": host, "path": path, "query": query})
        try:
            return self.route(method, host, path, query, headers, body)
        except KeyError:
            return _error(404, "Not Found")

    def route(self, method, host, path, query, headers, body):
        if host == "oauth2.googleapis.com" or path in ("/token", "/oauth2/v4/token"):
            return _json({"access_token": "standin-token", "expires_in": 3600,
                          "token_type": "Bearer"})
        if path.startswith("/batch/storage/v1"):
            return self.batch(headers, body)
        for prefix in ("/upload/storage/v1/b/", "/resumable/upload/storage/v1/b/"):
            if path.startswith(prefix):
                return self.upload(method, path[len(prefix):], query, headers, body)
        for prefix in ("/download/storage/v1/b/", "/storage/v1/b/"):
            if path.startswith(prefix):
                return self.api(method, path[len(prefix):], query, headers, body,
                                media=prefix.startswith("/download"))
        if host == "storage.googleapis.com" and method == "GET":  # https://HOST/BUCKET/NAME
            bucket, _, name = path.lstrip("/").partition("/")
            return self.media(bucket, urllib.parse.unquote(name), headers)
        return _error(404, f"no route for {method} {path}")

    def api(self, method, rest, query, headers, body, media=False):
        bucket, _, rest = rest.partition("/")
        bucket = urllib.parse.unquote(bucket)
        if not rest:
            if method == "GET" and self.store.bucket_exists(bucket):
                return _json({"kind": "storage#bucket", "name": bucket, "id": bucket,
                              "projectNumber": "123", "location": "EUROPE-WEST4"})
            return _error(404, "bucket not found")
        if rest == "o" and method == "GET":
            return self.listing(bucket, query)
        if not rest.startswith("o/"):
            return _error(404, rest)
        name, action = rest[2:], None
        for word in ("/rewriteTo/b/", "/copyTo/b/", "/compose"):
            if word in name:
                name, _, action = name.partition(word)
                action = (word, action)
        name = urllib.parse.unquote(name)
        if action and action[0] in ("/rewriteTo/b/", "/copyTo/b/"):
            target_bucket, _, target = action[1].partition("/o/")
            data = self.store.read(bucket, name)
            if data is None:
                return _error(404, "source not found")
            target_bucket, target = urllib.parse.unquote(target_bucket), \
                urllib.parse.unquote(target)
            self.store.write(target_bucket, target, data)
            resource = self.store.meta(target_bucket, target)
            if action[0] == "/copyTo/b/":
                return _json(resource)
            return _json({"kind": "storage#rewriteResponse", "done": True,
                          "totalBytesRewritten": str(len(data)), "objectSize": str(len(data)),
                          "resource": resource})
        if action:
            return _error(501, "compose is not supported by the stand-in")
        if method == "DELETE":
            return (204, {}, b"") if self.store.delete(bucket, name) else _error(404, name)
        if method in ("GET", "HEAD"):
            if media or query.get("alt") == "media":
                return self.media(bucket, name, headers)
            resource = self.store.meta(bucket, name)
            return _json(resource) if resource else _error(404, f"No such object: {name}")
        if method == "PATCH":
            resource = self.store.meta(bucket, name)
            return _json(resource) if resource else _error(404, name)
        return _error(405, method)

    def media(self, bucket, name, headers):
        data = self.store.read(bucket, name)
        if data is None:
            return _error(404, f"No such object: {bucket}/{name}")
        meta = self.store.meta(bucket, name) or {"generation": "1"}
        out = {"Content-Type": "application/octet-stream",
               "x-goog-generation": meta["generation"], "x-goog-metageneration": "1",
               "x-goog-stored-content-length": str(len(data)),
               "x-goog-hash": f"md5={meta.get('md5Hash', '')}", "Accept-Ranges": "bytes"}
        wanted = headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            first, _, last = wanted[len("bytes="):].partition("-")
            if not first:  # the last N bytes
                start, end = max(0, len(data) - int(last)), len(data) - 1
            else:
                start = int(first)
                end = min(int(last), len(data) - 1) if last else len(data) - 1
            if start >= len(data):
                if not data:
                    return 200, out, b""
                return 416, dict(out, **{"Content-Range": f"bytes */{len(data)}"}), b""
            out["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return 206, out, data[start:end + 1]
        return 200, out, data

    def listing(self, bucket, query):
        if not self.store.bucket_exists(bucket):
            return _error(404, "bucket not found")
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        names = self.store.names(bucket, prefix)
        items, prefixes = [], []
        for name in names:
            rest = name[len(prefix):]
            if delimiter and delimiter in rest:
                folder = prefix + rest[:rest.index(delimiter) + len(delimiter)]
                if folder not in prefixes:
                    prefixes.append(folder)
                continue
            items.append(name)
        start = query.get("pageToken") or ""
        items = [n for n in items if n > start]
        limit = int(query.get("maxResults") or 1000)
        page, more = items[:limit], items[limit:]
        out = {"kind": "storage#objects",
               "items": [self.store.meta(bucket, n) for n in page]}
        out["items"] = [m for m in out["items"] if m]
        if prefixes and not start:
            out["prefixes"] = prefixes
        if more:
            out["nextPageToken"] = page[-1]
        return _json(out)

    def upload(self, method, rest, query, headers, body):
        bucket, _, rest = rest.partition("/")
        bucket = urllib.parse.unquote(bucket)
        kind = query.get("uploadType", "")
        if method == "PUT" or query.get("upload_id"):
            return self.resume(query["upload_id"], headers, body)
        name = query.get("name")
        if kind == "media":
            self.store.write(bucket, name, body)
            return _json(self.store.meta(bucket, name))
        if kind == "multipart":
            meta, data = _multipart(headers.get("Content-Type", ""), body)
            name = name or meta["name"]
            self.store.write(bucket, name, data)
            return _json(self.store.meta(bucket, name))
        if kind == "resumable":
            if not name and body:
                name = json.loads(body).get("name")
            upload_id = uuid.uuid4().hex
            self.uploads[upload_id] = {"bucket": bucket, "name": name, "data": bytearray()}
            location = (f"https://www.googleapis.com/upload/storage/v1/b/"
                        f"{urllib.parse.quote(bucket, safe='')}/o?uploadType=resumable&"
                        f"upload_id={upload_id}")
            return 200, {"Location": location, "X-GUploader-UploadID": upload_id}, b""
        return _error(400, f"uploadType {kind!r}")

    def resume(self, upload_id, headers, body):
        state = self.uploads.get(upload_id)
        if state is None:
            return _error(404, "no such upload")
        span = headers.get("Content-Range", "")
        total = None
        if span.startswith("bytes "):
            where, _, size = span[len("bytes "):].partition("/")
            total = None if size == "*" else int(size)
            if where != "*":
                first = int(where.partition("-")[0])
                del state["data"][first:]
                state["data"].extend(body)
        else:
            state["data"].extend(body)
            total = len(state["data"])
        if total is not None and len(state["data"]) >= total:
            self.store.write(state["bucket"], state["name"], bytes(state["data"][:total]))
            del self.uploads[upload_id]
            return _json(self.store.meta(state["bucket"], state["name"]))
        out = {}
        if state["data"]:
            out["Range"] = f"bytes=0-{len(state['data']) - 1}"
        return 308, out, b""

    def batch(self, headers, body):
        """``multipart/mixed`` of HTTP requests (Beam deletes and copies in batches)."""
        boundary = "batch_" + uuid.uuid4().hex
        parts = []
        for i, (part_headers, payload) in enumerate(_parts(headers.get("Content-Type", ""),
                                                           body)):
            request_line, _, rest = payload.partition(b"\r\n")
            method, target, _ = request_line.decode().split(" ", 2)
            inner_headers, _, inner_body = rest.partition(b"\r\n\r\n")
            parsed = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(
                inner_headers + b"\r\n\r\n")
            url = urllib.parse.urlsplit(target)
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            try:
                status, out_headers, data = self.route(method, "www.googleapis.com", url.path,
                                                       query, parsed, inner_body)
            except KeyError:
                status, out_headers, data = _error(404, "Not Found")
            content_id = part_headers.get("Content-ID", f"<{i}>").strip("<>")
            head = "".join(f"{k}: {v}\r\n" for k, v in out_headers.items())
            parts.append(
                f"--{boundary}\r\nContent-Type: application/http\r\n"
                f"Content-ID: <response-{content_id}>\r\n\r\n"
                f"HTTP/1.1 {status} {'OK' if status < 300 else 'Error'}\r\n{head}"
                f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
        data = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return 200, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, data


def _json(value, status=200):
    return status, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(value).encode()


def _error(status, message):
    return _json({"error": {"code": status, "message": message,
                            "errors": [{"message": message, "reason": "notFound"
                                        if status == 404 else "invalid"}]}}, status)


def _parts(content_type, body):
    """``[(headers, payload)]`` of a multipart body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return [(part, part.get_payload(decode=True) or b"") for part in message.iter_parts()]


def _multipart(content_type, body):
    (_, meta), (_, data) = _parts(content_type, body)[:2]
    return json.loads(meta), data
