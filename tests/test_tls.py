"""Running behind TLS: a real uvicorn with `--ssl-keyfile/--ssl-certfile` and a certificate made
here (the README shows the same commands). Over HTTPS the /ui session cookie is `Secure` and
responses carry HSTS; the server presents our certificate and refuses plain HTTP; a 1 MiB
unauthenticated body is refused without spoiling the keep-alive connection."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h11
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from numa_balloon_testing.server import free_port
from service.db.alembic import upgrade
from tests.conftest import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[1]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A P-256 key and a self-signed certificate for localhost and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class TlsServer:
    url: str
    port: int
    context: ssl.SSLContext


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    cert, key = self_signed(tmp_path)
    db_url = f"sqlite:///{tmp_path / 'nb.db'}"
    upgrade(db_url)
    port = free_port()
    env = dict(os.environ, NUMA_BALLOON_DATABASE_URL=db_url, NUMA_BALLOON_ADMIN_TOKEN=ADMIN_TOKEN)
    cmd = [
        sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--ssl-keyfile", str(key), "--ssl-certfile", str(cert),
    ]  # fmt: skip
    log = tmp_path / "uvicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
    context = ssl.create_default_context(cafile=str(cert))
    server = TlsServer(f"https://127.0.0.1:{port}", port, context)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{server.url}/readyz", verify=context, timeout=1).is_success:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_the_service_runs_behind_tls(tls_server: TlsServer) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=tls_server.url, verify=tls_server.context, timeout=30) as c:
        r = c.get("/healthz")
        assert r.status_code == 200 and r.http_version == "HTTP/1.1"
        assert r.headers["strict-transport-security"].startswith("max-age=")
        key = c.post("/v1/api-keys", headers=admin, json={"name": "wall", "role": "viewer"})
        assert key.status_code == 201
        login = c.post(
            "/ui/login",
            content=f"key={key.json()['secret']}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert login.status_code == 303
        cookie = login.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie
        assert c.get("/ui").status_code == 200  # the client sends the Secure cookie back


def test_a_refused_body_leaves_the_connection_usable(tls_server: TlsServer) -> None:
    """An unauthenticated 1 MiB body is answered 401 at once, and the server drains it: the next
    request on the same TLS connection is served (h11 checks both responses' framing)."""
    body = b'"' + b'\\"' * ((1 << 20) // 2 - 1)
    raw = socket.create_connection(("127.0.0.1", tls_server.port), timeout=10)
    with tls_server.context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        conn = h11.Connection(h11.CLIENT)
        start = time.perf_counter()
        status, _ = _exchange(sock, conn, "POST", "/v1/hosts", body)
        elapsed_ms = (time.perf_counter() - start) * 1000
        assert status == 401
        conn.start_next_cycle()
        status, text = _exchange(sock, conn, "GET", "/healthz", b"")
        assert status == 200 and b"ok" in text
    print(f"1 MiB unauthenticated body over TLS: 401 in {elapsed_ms:.1f} ms")


def _exchange(
    sock: ssl.SSLSocket, conn: h11.Connection, method: str, path: str, body: bytes
) -> tuple[int, bytes]:
    headers = [("Host", "127.0.0.1"), ("Content-Type", "application/json")]
    headers.append(("Content-Length", str(len(body))))
    sock.sendall(conn.send(h11.Request(method=method, target=path, headers=headers)) or b"")
    sock.sendall(conn.send(h11.Data(data=body)) or b"" if body else b"")
    sock.sendall(conn.send(h11.EndOfMessage()) or b"")
    status, data = 0, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            data += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return status, data


def test_it_presents_our_certificate_and_refuses_plain_http(tls_server: TlsServer) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/healthz", timeout=5)  # the system's CAs do not know it
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=5)
