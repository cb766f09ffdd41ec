"""The edge serving HTTPS itself: a trustme CA, a verifying httpx client, TLS 1.2 at least."""

from __future__ import annotations

import ssl

import httpx
import trustme

from edge.config import EdgeConfig
from edge.testing import edge_argv, edge_env, wait_status
from harness.ports import free_port
from harness.process import spawn, terminate


def test_https_with_a_generated_certificate(kafka, unique_topic, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    port = free_port()
    cfg = EdgeConfig(host="127.0.0.1", port=port, metrics_host="127.0.0.1", metrics_port=free_port(),
                     kafka=kafka.bootstrap, topic=unique_topic, tls_cert=str(cert_path),
                     tls_key=str(key_path), kafka_check_interval=0.5)
    proc = spawn(edge_argv(cfg), tmp_path / "edge.log", env=edge_env())
    try:
        verify = ssl.create_default_context(cafile=str(ca_path))
        wait_status(f"https://127.0.0.1:{port}/status", 200, 60, verify=verify)
        with httpx.Client(verify=verify) as client:
            r = client.post(f"https://127.0.0.1:{port}/post", content=b'{"event":"tls"}')
            assert r.status_code == 200 and r.json()["status"] == "ok"
        old = ssl.create_default_context(cafile=str(ca_path))
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
        refused = False
        try:
            httpx.get(f"https://127.0.0.1:{port}/status", verify=old)
        except (httpx.ConnectError, ssl.SSLError):
            refused = True
        assert refused, "a TLS 1.1 handshake must fail"
        try:
            httpx.get(f"https://127.0.0.1:{port}/status", verify=True)  # the system CAs do not know ours
            raise AssertionError("an unverified certificate must be rejected by a verifying client")
        except httpx.ConnectError:
            pass
    finally:
        assert terminate(proc, 20) == 0
