"""The geo router's public path as ``make up`` runs it: HTTPS (the local CA's certificate, TLS 1.2+)
and a plain-HTTP port, edges reached over HTTPS and verified against the CA (a router that does
not trust the edges' CA reaches none of them), and the slow-client protection of both public
ports. Real Consul, a real TLS edge on real Kafka, the real ``geo-router`` process."""

from __future__ import annotations

import socket
import ssl
import warnings
from pathlib import Path
from typing import Iterator

import httpx
import orjson
import pytest

from geostack.local_ca import LocalCA
from geostack.processes import ServiceProcess, python_entry
from harness.consul import ConsulAgent
from harness.ports import free_port
from service_kit.wait import wait_until
from slowclient_kit import NormalClients, stall_storm, tree_fds

TIMEOUT = 2.0


class Router:
    def __init__(self, proc: ServiceProcess, port: int, http_port: int, admin_port: int) -> None:
        self.proc, self.port, self.http_port, self.admin_port = proc, port, http_port, admin_port

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def start_router(tmp: Path, name: str, agent: ConsulAgent, ca: LocalCA, edge_ca: Path) -> Router:
    cert = ca.issue(f"router-{name}", ["localhost", "127.0.0.1", "events.example.com"])
    port, http_port, admin_port = free_port(), free_port(), free_port()
    env = {"GEO_ROUTER_PORT": str(port), "GEO_ROUTER_HTTP_PORT": str(http_port),
           "GEO_ROUTER_ADMIN_PORT": str(admin_port), "GEO_ROUTER_CONSUL_URL": agent.url,
           "GEO_ROUTER_TLS_CERT": str(cert.cert), "GEO_ROUTER_TLS_KEY": str(cert.key),
           "GEO_ROUTER_EDGE_CA_FILE": str(edge_ca), "GEO_ROUTER_HEADER_TIMEOUT": str(TIMEOUT),
           "GEO_ROUTER_BODY_TIMEOUT": str(TIMEOUT)}
    proc = ServiceProcess(f"router-{name}", python_entry("geostack.router_cli"), tmp / "logs", env=env,
                          health_url=f"http://127.0.0.1:{admin_port}/status").start()
    return Router(proc, port, http_port, admin_port)


@pytest.fixture(scope="module")
def stack(kafka, tmp_path_factory) -> Iterator[tuple[Router, Router, LocalCA]]:
    tmp = tmp_path_factory.mktemp("router-https")
    ca = LocalCA.load_or_create(tmp / "tls")
    other_ca = LocalCA.load_or_create(tmp / "other-tls", name="some other CA")
    origin = ca.issue("edge-eu-1", ["eu-1.edges.events.example.com", "localhost", "127.0.0.1"])
    with ConsulAgent(tmp / "consul", datacenter="eu") as agent:
        port = free_port()
        env = {"GEO_EDGE_LISTEN": f"127.0.0.1:{port}", "GEO_EDGE_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
               "GEO_EDGE_KAFKA": kafka.bootstrap, "GEO_EDGE_TOPIC": "router-https", "GEO_EDGE_REGION": "eu",
               "GEO_EDGE_NODE_ID": "eu-1", "GEO_EDGE_CONSUL_URL": agent.url, "GEO_EDGE_TLS_CERT": str(origin.cert),
               "GEO_EDGE_TLS_KEY": str(origin.key), "GEO_EDGE_TRUSTED_PROXIES": "127.0.0.0/8"}
        edge = ServiceProcess("edge-eu-1", python_entry("edge.cli"), tmp / "logs", env=env,
                              health_url=f"https://127.0.0.1:{port}/status", health_verify=ca.client_context())
        routers: list[Router] = []
        try:
            edge.start().wait_healthy(60)
            routers.append(start_router(tmp, "strict", agent, ca, ca.cert_path))
            routers.append(start_router(tmp, "wrong-ca", agent, ca, other_ca.cert_path))
            for router in routers:
                router.proc.wait_healthy(60)   # /status 200: Consul shows it a healthy edge
            yield routers[0], routers[1], ca
        finally:
            for proc in [r.proc for r in routers] + [edge]:
                proc.stop(timeout=20)


def test_https_with_the_ca_and_plain_http_on_its_own_port(stack) -> None:
    router, _, ca = stack
    with httpx.Client(verify=ca.client_context(), timeout=10) as client:
        for base in (router.https, router.https.replace("127.0.0.1", "localhost"), router.http):
            answer = client.post(f"{base}/post", content=b'{"event":"view"}', headers={"CF-IPCountry": "DE", "Content-Type": "application/json"})
            assert answer.status_code == 200, (base, answer.text)
            assert answer.json()["status"] == "ok" and answer.headers["x-geo-edge"] == "eu-1"
    with pytest.raises(httpx.ConnectError):   # the system's CAs do not know the local CA
        httpx.post(f"{router.https}/post", content=b'{"event":"view"}', timeout=10)


def test_a_post_without_content_type_passes_the_router_as_sent(stack) -> None:
    """The edge takes a single event with no Content-Type (clients of the original service send
    none); the router must not add one (aiohttp would add application/octet-stream: a 415)."""
    router, _, ca = stack
    with httpx.Client(verify=ca.client_context(), timeout=10) as client:
        request = client.build_request("POST", f"{router.https}/post", content=b'{"event":"view"}',
                                       headers={"CF-IPCountry": "DE"})
        assert "content-type" not in request.headers
        answer = client.send(request)
    assert answer.status_code == 200, answer.text


def test_tls_below_1_2_refused(stack) -> None:
    router, _, ca = stack
    ctx = ca.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", router.port), timeout=5) as raw:
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    ok = ca.client_context()
    ok.minimum_version = ok.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as raw:
        with ok.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.2"


def test_a_router_that_does_not_trust_the_edges_ca_reaches_no_edge(stack) -> None:
    """Full (strict): an origin certificate the router cannot verify is an unreachable edge."""
    _, wrong, ca = stack
    answer = httpx.post(f"{wrong.https}/post", content=b'{"event":"view"}', headers={"CF-IPCountry": "DE", "Content-Type": "application/json"},
                        verify=ca.client_context(), timeout=10)
    assert answer.status_code == 503 and answer.json()["error"]["reason"] == "no_healthy_origin", answer.text
    metrics = httpx.get(f"http://127.0.0.1:{wrong.admin_port}/metrics", timeout=5).text
    assert 'geo_router_upstream_failures_total{kind="connect",pool="eu"}' in metrics


@pytest.mark.slow
@pytest.mark.parametrize("scheme,count", [("https", 300), ("http", 1000)])
def test_stalled_connections_closed_normal_clients_served(stack, scheme: str, count: int) -> None:
    router, _, ca = stack
    port = router.port if scheme == "https" else router.http_port
    baseline = tree_fds(router.proc.pid)
    before = closed_metric(router, "header_timeout")
    with NormalClients(f"{router.https}/post", verify=ca.client_context()) as normal:
        storm = stall_storm(router.proc.pid, port, count, baseline, normal, TIMEOUT,
                            tls=ca.client_context() if scheme == "https" else None, after_served=5,
                            what="the router")
    opened, closed = storm.opened, storm.closed
    print(f"router {scheme}: {count} stalled opened in {opened:.1f}s, closed after "
          f"{min(closed.after):.1f}-{max(closed.after):.1f}s; normal {dict(normal.statuses)} "
          f"slowest {normal.slowest:.2f}s")
    assert closed.open_left == 0
    assert closed.first_lines == {b"HTTP/1.1 408 Request Timeout": count}, closed.first_lines
    assert {orjson.loads(b)["error"]["reason"] for b in closed.bodies} == {"header_timeout"}
    assert min(closed.after) >= TIMEOUT * 0.9
    assert set(normal.statuses) == {200}, normal.statuses
    wait_until(lambda: tree_fds(router.proc.pid) <= baseline + 20, 30, what="the router's descriptors back")
    assert closed_metric(router, "header_timeout") - before == count


def closed_metric(router: Router, reason: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{router.admin_port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(f'geo_http_connections_closed_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0
