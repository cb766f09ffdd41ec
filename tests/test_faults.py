"""The fault suite: the whole local geo stack under steady load through the geo router, one fault
at a time. After each: every event acknowledged with a 2xx is in the central table exactly once,
the central stream holds no mirror duplicate, and the only failures clients saw were 503s (or
429s) and connection errors, which they retried. Prints a line of figures per fault.

Run apart with ``make test-faults``; CI runs it within ``make test``.
"""

from __future__ import annotations

import time
from typing import Iterator

import httpx
import orjson
import pytest

from fault_kit import RESULTS, Fault, hung, restart, run_fault
from geostack.stack import LocalStack
from harness.process import resume, wait_until
from test_mirror_helpers import metric_value

pytestmark = [pytest.mark.slow, pytest.mark.faults]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("fault-stack")) as local:
        yield local
    print("\nfault suite summary:")
    for row in RESULTS:
        print(orjson.dumps(row).decode())


def test_geo_steering_through_the_router(stack: LocalStack) -> None:
    def pool_of(headers: dict[str, str], source: str | None = None) -> str:
        transport = httpx.HTTPTransport(local_address=source, verify=stack.client_ssl()) if source else None
        with httpx.Client(transport=transport, timeout=10, verify=stack.client_ssl()) as client:
            reply = client.post(f"{stack.router_url}/post", json={"event": "view"}, headers=headers)
        assert reply.status_code == 200, reply.text
        return reply.headers["x-geo-pool"]

    assert pool_of({"CF-IPCountry": "DE"}) == "eu"        # country pool
    assert pool_of({"CF-IPCountry": "US"}) == "us"        # country pool
    assert pool_of({"CF-IPCountry": "SG"}) == "us"        # region pool SEAS
    assert pool_of({"CF-IPCountry": "EG"}) == "eu"        # region pool NAF
    assert pool_of({"CF-IPCountry": "AQ"}) == "eu"        # default pool
    assert pool_of({}, source="127.20.0.77") == "us"      # GeoIP by source address (US range)
    assert pool_of({}, source="127.10.0.77") == "eu"      # (DE range)

    event_id = f"steer-{time.time_ns()}"
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.21.0.5", verify=stack.client_ssl()),
                      timeout=10) as client:
        reply = client.post(f"{stack.router_url}/post", json={"event": "view", "event_id": event_id},
                            headers={"CF-Connecting-IP": "6.6.6.6"})  # spoofed: the router overwrites it
    assert reply.status_code == 200
    def stored() -> dict | None:
        got = httpx.get(f"{stack.central_url}/api/events/{event_id}", timeout=5)
        return got.json() if got.status_code == 200 else None
    wait_until(lambda: stored() is not None, 60, what="the event in the central table")
    row = stored()
    assert row is not None
    assert row["client_ip"] == "127.21.0.5" and row["country"] == "BR" and row["region"] == "us"


def test_kill_9_of_an_edge(stack: LocalStack) -> None:
    edge = stack.edges_of("eu")[0].process
    run_fault(stack, Fault("edge kill -9", inject=edge.kill, undo=restart(edge), hold=8))


def test_sigterm_of_an_edge_drains_with_zero_client_errors(stack: LocalStack) -> None:
    edge = stack.edges_of("us")[1].process
    run_fault(stack, Fault("edge SIGTERM", inject=lambda: edge.stop(), undo=restart(edge), hold=8,
                           zero_client_errors=True))


def test_regional_kafka_stopped(stack: LocalStack) -> None:
    cluster = stack.kafka["us"]
    run_fault(stack, Fault("regional kafka stopped 20s", inject=cluster.stop, undo=cluster.start))


def test_mirror_killed_and_restarted(stack: LocalStack) -> None:
    mirror = stack.mirror
    assert mirror is not None
    run_fault(stack, Fault("mirror kill -9", inject=mirror.kill, undo=restart(mirror), hold=5))


def test_central_kafka_stopped(stack: LocalStack) -> None:
    cluster = stack.kafka[stack.regions.central.name]
    run_fault(stack, Fault("central kafka stopped 20s", inject=cluster.stop, undo=cluster.start))


def test_loader_killed_during_a_batch(stack: LocalStack) -> None:
    central = stack.central
    assert central is not None
    run_fault(stack, Fault("loader kill -9", inject=central.kill, undo=restart(central), hold=3))


def test_consul_stopped(stack: LocalStack) -> None:
    agents = list(stack.consul.values())

    def stop_all() -> None:
        for agent in agents:
            agent.stop()

    def start_all() -> None:
        for agent in agents:
            agent.start(wait=False)
        for agent in agents:
            agent.wait_ready()

    run_fault(stack, Fault("consul stopped 20s", inject=stop_all, undo=start_all))


def test_region_cut_off_from_the_centre(stack: LocalStack) -> None:
    link = stack.wan["eu"]
    if stack.wan_links == "regions":  # the suite runs over the regions file's links by default
        assert link.link is not None and link.link.shape == stack.regions["eu"].wan
        assert link.link.to_client.bytes > 0  # the mirror's fetches came through the shaped link
    run_fault(stack, Fault("region eu cut off 20s", inject=link.cut, undo=link.restore))


def test_regional_kafka_hung(stack: LocalStack) -> None:
    cluster = stack.kafka["eu"]
    run_fault(stack, hung("regional kafka eu", lambda: cluster.pid))


def test_central_kafka_hung(stack: LocalStack) -> None:
    cluster = stack.kafka[stack.regions.central.name]
    run_fault(stack, hung("central kafka", lambda: cluster.pid))


def test_mirror_hung(stack: LocalStack) -> None:
    mirror = stack.mirror
    assert mirror is not None
    run_fault(stack, hung("mirror", lambda: mirror.pid))


def test_edge_hung(stack: LocalStack) -> None:
    edge = stack.edges_of("eu")[0].process
    run_fault(stack, hung("edge eu-1", lambda: edge.pid))


def test_loader_hung(stack: LocalStack) -> None:
    central = stack.central
    assert central is not None
    run_fault(stack, hung("loader", lambda: central.pid))


def test_consul_agents_hung(stack: LocalStack) -> None:
    run_fault(stack, hung("consul agents", *[lambda a=agent: a.pid for agent in stack.consul.values()]))


def test_two_mirrors_one_hung_the_other_takes_over_then_the_zombie_wakes(stack: LocalStack) -> None:
    """The classic zombie: worker 1 hangs, worker 2 takes all its partitions (the source groups
    drop worker 1 after the session timeout), then worker 1 wakes up still believing it owns
    them and tries to finish its rounds. Nothing may appear twice in the central stream."""
    first = stack.mirror
    assert first is not None
    ports = [stack.mirror_admin_port]

    def assigned(port: int) -> float:
        return metric_value(port, "geo_mirror_assigned_partitions")

    total = assigned(ports[0])
    assert total > 0
    second, port = stack.add_mirror()
    ports.append(port)
    try:
        wait_until(lambda: all(assigned(p) > 0 for p in ports) and sum(map(assigned, ports)) == total,
                   60, interval=0.3, what=f"two workers sharing the {total:.0f} partitions")
        fault = hung("mirror worker 1 of 2", lambda: first.pid)
        wake = fault.undo
        assert wake is not None

        def take_over_then_wake() -> None:
            wait_until(lambda: assigned(ports[1]) == total, 30, interval=0.3,
                       what="worker 2 holding every partition while worker 1 hangs")
            wake()

        fault.name = "mirror worker 1 of 2 SIGSTOP 20s (worker 2 takes over, zombie wakes)"
        fault.undo = take_over_then_wake
        run_fault(stack, fault)
    finally:
        resume(first.pid)
        second.stop(timeout=30)
        stack.extra_mirrors.remove(second)
    wait_until(lambda: assigned(ports[0]) == total, 60, interval=0.3,
               what="worker 1 holding every partition again")
