"""The public surface under abuse: slow clients, huge or many headers, too many
connections, bombs for bundles, path tricks in names, TLS, the dashboard's headers."""

from __future__ import annotations

import gzip
import io
import json
import socket
import ssl
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, start_server, wait_for

MAX_CONNECTIONS = 6
TIMEOUT_S = 1.0
LIMITS = {
    "MLAMBDA_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "MLAMBDA_HEADER_TIMEOUT_S": str(TIMEOUT_S),
    "MLAMBDA_BODY_TIMEOUT_S": str(TIMEOUT_S),
    "MLAMBDA_MAX_HEADER_KB": "4",
    "MLAMBDA_MAX_HEADERS": "20",
    "MLAMBDA_MAX_BUNDLE_MB": "1",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("hardening"), env=LIMITS)
    yield s
    s.stop()


def address(server: Server) -> tuple[str, int]:
    host, port = server.url.rsplit("//", 1)[1].split(":")
    return host, int(port)


def read_response(sock: socket.socket, limit_s: float = 5.0) -> tuple[int, dict[str, Any], float]:
    """Read until the server closes: (status, JSON body, seconds it took)."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return int(head.split()[1]), json.loads(body), time.monotonic() - started


def trickle(server: Server, first: bytes, then: bytes) -> tuple[int, dict[str, Any], float]:
    """Send `first`, then `then` one byte every 0.1 s (keeping the connection busy, as a
    slowloris client does) until the server answers and closes."""
    with socket.create_connection(address(server)) as sock:
        sock.sendall(first)
        started = time.monotonic()
        sock.settimeout(0.1)
        data = b""
        for i in range(100):  # at most ~10 s
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            except TimeoutError:
                try:
                    sock.send(then[i % len(then): i % len(then) + 1])
                except (BrokenPipeError, ConnectionResetError):
                    break
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body), time.monotonic() - started


def test_slow_headers_are_cut_off_with_408(server: Server) -> None:
    status, body, took = trickle(server, b"POST /echo HTTP/1.1\r\n", b"X-Slow: aaaaaaaaaaaaaa")
    assert status == 408 and body["errorType"] == "RequestTimeoutException"
    assert "headers" in body["errorMessage"]
    assert TIMEOUT_S * 0.5 < took < TIMEOUT_S + 3


def test_slow_body_is_cut_off_with_408(server: Server) -> None:
    head = (f"POST /echo HTTP/1.1\r\nHost: x\r\nx-api-key: {server.invoke_key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{").encode()
    status, body, took = trickle(server, head, b" ")
    assert status == 408 and "body" in body["errorMessage"]
    assert took < TIMEOUT_S + 3


def test_a_silent_connection_is_closed(server: Server) -> None:
    with socket.create_connection(address(server)) as sock:
        status, body, took = read_response(sock)
    assert status == 408 and body["errorType"] == "RequestTimeoutException"
    assert took < TIMEOUT_S + 3


def test_an_idle_keep_alive_connection_is_closed_quietly(server: Server) -> None:
    """A request answered in one piece with its length (not chunked), then the idle
    connection closed after the keep-alive timeout (5 s) without another word."""
    body = b'{"keep":"alive"}'
    with socket.create_connection(address(server)) as sock:
        sock.sendall(f"POST /echo HTTP/1.1\r\nHost: x\r\nx-api-key: {server.invoke_key}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                     .encode() + body)
        sock.settimeout(10)
        data = b""
        while not data.endswith(body):
            data += sock.recv(65536)
        answered = time.monotonic()
        head = data.partition(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 200") and b"content-length: 16" in head
        assert b"transfer-encoding" not in head and b"server:" not in head
        rest = b""
        while chunk := sock.recv(65536):  # b"": the server closed the connection
            rest += chunk
        idle = time.monotonic() - answered
    assert rest == b""  # no 408 for a connection that merely kept alive
    assert 4.0 < idle < 5.0 + 3


@pytest.mark.parametrize("headers", [
    {"x-big": "a" * 5000},
    {f"x-h{i}": "v" for i in range(25)},
])
def test_oversized_or_too_many_headers_are_431(server: Server, headers: dict[str, str]) -> None:
    with server.client() as c:
        r = c.post("/echo", json={}, headers=headers)
    assert r.status_code == 431
    assert r.json()["errorType"] == "RequestHeaderFieldsTooLargeException"


def test_garbage_is_a_json_400(server: Server) -> None:
    with socket.create_connection(address(server)) as sock:
        sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        status, body, _ = read_response(sock)
    assert status == 400 and body["errorType"] == "InvalidRequestContentException"


def test_connections_past_the_cap_get_a_json_503(server: Server) -> None:
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):  # each answered once, then idle on keep-alive
            sock = socket.create_connection(address(server))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            held.append(sock)
        with socket.create_connection(address(server)) as extra:
            status, body, took = read_response(extra)
        assert status == 503 and body["errorType"] == "ServiceUnavailableException"
        assert str(MAX_CONNECTIONS) in body["errorMessage"] and took < 1
    finally:
        for sock in held:
            sock.close()

    def served() -> bool:
        try:
            return httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(served, 10, "a slot to free up")


def tar_gz(files: dict[str, bytes], declared: dict[str, int] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    if declared:  # a header that claims a size the stream never holds
        raw = io.BytesIO()
        for name, size in declared.items():
            info = tarfile.TarInfo(name)
            info.size = size
            raw.write(info.tobuf())
        raw.write(b"\0" * 4096)
        return gzip.compress(raw.getvalue())
    return out.getvalue()


GOOD = {"function.toml": b'name = "bombed"\nhandler = "app.handler"\n',
        "app.py": b"def handler(event, context):\n    return event\n"}


@pytest.mark.parametrize("archive", [
    pytest.param(tar_gz({**GOOD, "zeros.bin": b"\0" * (8 << 20)}), id="8 MB of zeros"),
    pytest.param(tar_gz({}, declared={"huge.bin": 50 << 30}), id="a 50 GB header"),
])
def test_gzip_bomb_is_refused_before_extraction(server: Server, archive: bytes) -> None:
    assert len(archive) < 64 * 1024
    started = time.monotonic()
    with server.admin() as c:
        r = c.post("/admin/v1/functions", content=archive)
        assert r.status_code == 413, r.text
        assert "nothing was extracted" in r.json()["errorMessage"]
        assert time.monotonic() - started < 5
        assert c.get("/admin/v1/functions/bombed").status_code == 404
        fine = {**GOOD, "function.toml": b'name = "fine"\nhandler = "app.handler"\n'}
        ok = c.post("/admin/v1/functions", content=tar_gz(fine))  # the limit, not the route
        assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("name", ["..", "../etc", "a/b", "a\0b", "x" * 65, "ech o", "é"])
def test_function_names_with_path_tricks_are_400(server: Server, name: str) -> None:
    quoted = "".join(f"%{b:02X}" for b in name.encode())  # reaches the server decoded
    with server.client() as c:
        r = c.post(f"/2015-03-31/functions/{quoted}/invocations", json={})
    assert r.status_code == 400, (name, r.text)
    assert r.json()["errorType"] == "InvalidParameterValueException"


@pytest.mark.parametrize("name", ["..", "a.b", "x" * 65, "a b"])
def test_model_names_with_path_tricks_are_refused(server: Server, name: str) -> None:
    with server.admin() as c:
        r = c.put(f"/admin/v1/models/{name}", params={"filename": "m.onnx"}, content=b"x",
                  headers={"x-content-sha256": "0" * 64})
    assert r.status_code in (400, 404), r.text
    assert set(r.json()) == {"errorType", "errorMessage"}
    assert not (server.data / "volume" / "models" / name).exists() or name == ".."


@pytest.mark.parametrize("alias", ["../x", "a/b", "x" * 129, "$LATEST", "12"])
def test_alias_names_are_validated(server: Server, alias: str) -> None:
    with server.admin() as c:
        r = c.put(f"/admin/v1/functions/echo/aliases/{httpx.URL(alias).raw_path.decode()}",
                  json={"version": "1"})
    assert r.status_code in (400, 404), r.text
    assert set(r.json()) == {"errorType", "errorMessage"}


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/", "/dashboard/no/such/page"])
def test_dashboard_responses_carry_security_headers(server: Server, path: str) -> None:
    r = httpx.get(server.url + path)
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "same-origin"


def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=mlambda",
         "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    s = start_server(tmp_path, args=("--tls-cert", str(cert), "--tls-key", str(key)))
    try:
        assert s.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=s.url, verify=trusted,
                          headers={"x-api-key": s.invoke_key}) as c:
            assert c.post("/echo", json={"over": "tls"}).json() == {"over": "tls"}
        with pytest.raises(httpx.ConnectError):  # not trusted without the certificate
            httpx.get(f"{s.url}/healthz")
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(s.url.replace("https://", "http://") + "/healthz", timeout=3)
    finally:
        s.stop()


def test_a_certificate_without_its_key_is_refused_at_start(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "mlambda.cli", "up", "--data", str(tmp_path),
                        "--tls-cert", str(tmp_path / "cert.pem")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--tls-cert and --tls-key go together" in r.stderr
