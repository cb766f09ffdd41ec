"""The edge serving HTTPS itself, checked with real TLS clients: certificate validation (a client
that does not trust the CA fails, one that does succeeds) and protocol versions (TLS 1.2 and 1.3
accepted; a TLS 1.0/1.1 handshake refused *by the server*, with a protocol-version alert)."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from typing import Iterator

import httpx
import pytest
import trustme

from edge.config import EdgeConfig
from edge.testing import edge_argv, edge_env, wait_status
from harness.ports import free_port
from harness.process import spawn, terminate


@pytest.fixture(scope="module")
def tls_edge(kafka, tmp_path_factory) -> Iterator[tuple[int, str]]:
    tmp_path = tmp_path_factory.mktemp("tls-edge")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    port = free_port()
    cfg = EdgeConfig(host="127.0.0.1", port=port, metrics_host="127.0.0.1", metrics_port=free_port(),
                     kafka=kafka.bootstrap, topic="tls-events", tls_cert=str(cert_path),
                     tls_key=str(key_path), kafka_check_interval=0.5)
    proc = spawn(edge_argv(cfg), tmp_path / "edge.log", env=edge_env())
    try:
        wait_status(f"https://127.0.0.1:{port}/status", 200, 60,
                    verify=ssl.create_default_context(cafile=str(ca_path)))
        yield port, str(ca_path), str(cert_path), str(key_path)
    finally:
        assert terminate(proc, 20) == 0


def _handshake(port: int, ctx: ssl.SSLContext) -> str:
    """The negotiated protocol version of a TLS handshake with the edge."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version() or ""


def _pinned(ca_path: str, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")  # let the client *offer* old versions (Debian forbids them)
    return ctx


def _permissive_server(cert: str, key: str) -> tuple[int, threading.Thread]:
    """A one-connection TLS server that accepts TLS 1.0+: proves the pinned client can do old TLS."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def test_https_with_a_trusted_ca_works(tls_edge):
    port, ca_path, *_ = tls_edge
    with httpx.Client(verify=ssl.create_default_context(cafile=ca_path)) as client:
        r = client.post(f"https://127.0.0.1:{port}/post", content=b'{"event":"tls"}')
        assert r.status_code == 200 and r.json()["status"] == "ok"


def test_a_client_that_does_not_trust_the_ca_fails(tls_edge):
    port, *_ = tls_edge
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(port, ssl.create_default_context())  # system CAs only
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://127.0.0.1:{port}/status", verify=True)


def test_tls_1_2_and_1_3_accepted(tls_edge):
    port, ca_path, *_ = tls_edge
    assert _handshake(port, _pinned(ca_path, ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    assert _handshake(port, _pinned(ca_path, ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_1_0_and_1_1_refused_by_the_server(tls_edge, version):
    port, ca_path, cert, key = tls_edge
    client = _pinned(ca_path, version)
    other_port, thread = _permissive_server(cert, key)
    assert _handshake(other_port, client) == version.name.replace("_", ".").replace("TLSv1.", "TLSv1.")
    thread.join(5)
    with pytest.raises(ssl.SSLError) as info:
        _handshake(port, client)
    # the same client that just spoke this version is refused by the edge: an alert or a hang-up
    # after its ClientHello, never a client-side "no protocols available"
    message = str(info.value)
    assert "NO_PROTOCOLS_AVAILABLE" not in message and "NO_CIPHERS" not in message, message
    assert any(x in message for x in ("ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "UNEXPECTED_EOF")), message
