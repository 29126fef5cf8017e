"""An HTTPS proxy that answers some hosts itself: how a test serves clients that can't be pointed.

A client process run with ``HTTPS_PROXY`` pointing here (libcurl in TensorFlow,
``requests`` in the Google client libraries) opens a ``CONNECT`` tunnel for every
https host. For a host in ``hosts`` the tunnel is answered here, over TLS with a
certificate for that host signed by a certificate authority made for the run
(the client trusts it through ``CURL_CA_BUNDLE``/``REQUESTS_CA_BUNDLE``), by
``answer(method, host, path, query, headers, body) -> (status, headers, data)``.
A tunnel to any other host is refused and recorded in ``refused``: nothing the
client asks for leaves the machine. Plain http requests to the proxy itself are
answered the same way, for ``default_host``.
"""
import datetime
import ipaddress
import os
import shutil
import ssl
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_certificates(folder, hosts):
    """A CA and a certificate for ``hosts`` signed by it; returns (ca, cert, key) paths."""
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
    names = [x509.DNSName(h) for h in hosts] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
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


class Proxy:
    """The proxy on 127.0.0.1 (``address``), answering ``hosts`` with ``answer``.

    ``tunnels``: ``{host: port}``, hosts whose tunnel is passed through, bytes as they
    come, to ``127.0.0.1:port`` (a gRPC server with TLS and a certificate of its own).
    """

    def __init__(self, hosts, answer, default_host, tunnels=None):
        self.hosts, self.answer, self.refused = tuple(hosts), answer, []
        self.tunnels = dict(tunnels or {})
        self.folder = tempfile.mkdtemp(prefix="https-proxy-")
        self.ca, cert, key = make_certificates(self.folder, self.hosts)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert, key)
        self.tls.set_alpn_protocols(["http/1.1"])
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            host = default_host

            def log_message(self, *args):
                pass

            def do_CONNECT(self):  # noqa: N802
                host, _, port = self.path.partition(":")
                if host in owner.tunnels and port == "443":
                    return self._pass_through(owner.tunnels[host])
                if host not in owner.hosts or port != "443":
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

            def _pass_through(self, port):
                import select
                import socket

                upstream = socket.create_connection(("127.0.0.1", port))
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                ends = [self.connection, upstream]
                try:
                    while True:
                        ready, _, _ = select.select(ends, [], [], 300)
                        if not ready:
                            break
                        for end in ready:
                            data = end.recv(65536)
                            if not data:
                                return
                            (upstream if end is self.connection else self.connection
                             ).sendall(data)
                except OSError:
                    pass
                finally:
                    upstream.close()
                    self.close_connection = True

            def _serve(self):
                owner.serve(self, self.command, self.host)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve  # noqa: N815

        class Tunnel(Handler):
            """The requests inside one CONNECT tunnel, after TLS."""

            def __init__(self, sock, address, host):
                self.host = host
                BaseHTTPRequestHandler.__init__(self, sock, address, owner.server)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def env(self):
        """What a client process needs to come here and trust the certificate."""
        return {"HTTPS_PROXY": f"http://{self.address}", "https_proxy": f"http://{self.address}",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "CURL_CA_BUNDLE": self.ca, "REQUESTS_CA_BUNDLE": self.ca, "SSL_CERT_FILE": self.ca,
                "HTTPLIB2_CA_CERTS": self.ca,  # httplib2: Beam's BigQuery client
                "grpc_proxy": f"http://{self.address}"}  # gRPC: the Vertex AI SDK's clients

    def serve(self, handler, method, host):
        url = urllib.parse.urlsplit(handler.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query,
                                                             keep_blank_values=True).items()}
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _read_chunked(handler.rfile)
        else:
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length) if length else b""
        status, headers, data = self.answer(method, host, url.path, query, handler.headers, body)
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        if status not in (204, 304):
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if method != "HEAD" and data:
            handler.wfile.write(data)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _read_chunked(stream):
    out = bytearray()
    while True:
        size = int(stream.readline().strip().split(b";")[0], 16)
        if size == 0:
            stream.readline()
            return bytes(out)
        out.extend(stream.read(size))
        stream.readline()
