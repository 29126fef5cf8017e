"""A loopback stand-in for Cloud Storage: ``gs://`` backed by a local folder, for every client.

The tasks of a compiled pipeline reach ``gs://`` three ways: TensorFlow's own
GCS filesystem (C++, libcurl: SavedModels, TFRecord datasets, and TFX's
``fileio``), Apache Beam's GCS filesystem (the ``google-cloud-storage``
client: ExampleGen, StatisticsGen, Transform) and ``google-auth`` for tokens.
None of them takes another endpoint for the Storage hosts, so this stand-in is
an HTTPS proxy: the clients run with ``HTTPS_PROXY`` pointing here and trust a
certificate authority made for the run (``CURL_CA_BUNDLE``,
``REQUESTS_CA_BUNDLE``); a ``CONNECT`` to ``www.googleapis.com``,
``storage.googleapis.com`` or ``oauth2.googleapis.com`` is answered here, over
TLS with a certificate for that host, by the part of the Cloud Storage JSON API
those clients use (objects: metadata, list, media download with ranges,
media/multipart/resumable uploads, rewrite and copy, delete, batch) and a token
endpoint. Any other host is refused and recorded (``refused``): nothing leaves
the machine.

Object ``gs://BUCKET/NAME`` is the file ``root/BUCKET/NAME``, so what the
tasks write is what the test reads, and ``pipelines.runners.gcs_on_disk``
(TFX's ``fileio`` in this process) sees the same folder. A directory stands
for the placeholder object ``NAME/`` that clients create for folders.
"""
import datetime
import email.parser
import email.policy
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import ssl
import tempfile
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOSTS = ("www.googleapis.com", "storage.googleapis.com", "oauth2.googleapis.com")


def make_certificates(folder):
    """A CA and a certificate for :data:`HOSTS` signed by it; returns (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "twotower test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(h) for h in HOSTS] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTS[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    paths = [os.path.join(folder, n) for n in ("ca.pem", "cert.pem", "key.pem")]
    with open(paths[0], "wb") as handle:
        handle.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return paths


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
        import base64

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


class StandIn:
    """The proxy and the Storage API; ``env()`` is what a client process needs."""

    def __init__(self, root):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.store = Store(self.root)
        self.requests, self.refused, self.uploads = [], [], {}
        self.certs = tempfile.mkdtemp(prefix="gcs-standin-")
        ca, cert, key = make_certificates(self.certs)
        self.ca = ca
        self.credentials = os.path.join(self.certs, "adc.json")
        with open(self.credentials, "w", encoding="utf-8") as handle:
            json.dump({"type": "authorized_user", "client_id": "standin",
                       "client_secret": "standin", "refresh_token": "standin",
                       "token_uri": "https://oauth2.googleapis.com/token"}, handle)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert, key)
        self.tls.set_alpn_protocols(["http/1.1"])
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_CONNECT(self):  # noqa: N802
                host, _, port = self.path.partition(":")
                if host not in HOSTS or port != "443":
                    owner.refused.append(self.path)
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                try:
                    tunnel = owner.tls.wrap_socket(self.connection, server_side=True)
                except (ssl.SSLError, OSError):
                    self.close_connection = True
                    return
                Tunnel(tunnel, self.client_address, host)
                self.close_connection = True

            def do_GET(self):  # noqa: N802
                owner.answer(self, "GET", "storage.googleapis.com")

            def do_POST(self):  # noqa: N802
                owner.answer(self, "POST", "storage.googleapis.com")

            def do_PUT(self):  # noqa: N802
                owner.answer(self, "PUT", "storage.googleapis.com")

            def do_DELETE(self):  # noqa: N802
                owner.answer(self, "DELETE", "storage.googleapis.com")

        class Tunnel(Handler):
            """The requests inside one CONNECT tunnel, after TLS."""

            def __init__(self, sock, address, host):
                self.host = host
                BaseHTTPRequestHandler.__init__(self, sock, address, owner.server)

            def do_GET(self):  # noqa: N802
                owner.answer(self, "GET", self.host)

            def do_POST(self):  # noqa: N802
                owner.answer(self, "POST", self.host)

            def do_PUT(self):  # noqa: N802
                owner.answer(self, "PUT", self.host)

            def do_DELETE(self):  # noqa: N802
                owner.answer(self, "DELETE", self.host)

            def do_PATCH(self):  # noqa: N802
                owner.answer(self, "PATCH", self.host)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def env(self):
        """Environment variables that send a process's Cloud Storage calls here.

        TensorFlow takes a token from ``GOOGLE_AUTH_TOKEN_FOR_TESTING``;
        ``google-auth`` (Beam, the Storage client) reads the application default
        credentials file written here, whose token request comes here too.
        """
        return {"GOOGLE_APPLICATION_CREDENTIALS": self.credentials,
                "GOOGLE_CLOUD_PROJECT": "standin-project", "HTTPS_PROXY": f"http://{self.address}", "https_proxy": f"http://{self.address}",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "CURL_CA_BUNDLE": self.ca, "REQUESTS_CA_BUNDLE": self.ca,
                "SSL_CERT_FILE": self.ca, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "standin-token",
                "NO_GCE_CHECK": "True", "GCE_METADATA_HOST": "127.0.0.1:9",
                "GCE_METADATA_IP": "127.0.0.1:9"}

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.certs, ignore_errors=True)

    # ---- the API ------------------------------------------------------------------------

    def answer(self, handler, method, host):
        url = urllib.parse.urlsplit(handler.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query,
                                                             keep_blank_values=True).items()}
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _read_chunked(handler.rfile)
        else:
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length) if length else b""
        self.requests.append({"method": method, "host": host, "path": url.path, "query": query})
        try:
            status, headers, data = self.route(method, host, url.path, query, handler.headers,
                                               body)
        except KeyError:
            status, headers, data = _error(404, "Not Found")
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        if status not in (204, 304):
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if method != "HEAD" and data:
            handler.wfile.write(data)

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


def _read_chunked(stream):
    out = bytearray()
    while True:
        size = int(stream.readline().strip().split(b";")[0], 16)
        if size == 0:
            stream.readline()
            return bytes(out)
        out.extend(stream.read(size))
        stream.readline()


def _parts(content_type, body):
    """``[(headers, payload)]`` of a multipart body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return [(part, part.get_payload(decode=True) or b"") for part in message.iter_parts()]


def _multipart(content_type, body):
    (_, meta), (_, data) = _parts(content_type, body)[:2]
    return json.loads(meta), data


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
