"""What every fault test shares: the load, the fault, the checks and the line of figures.

``run_fault(stack, Fault(...))`` loads the stack through the geo router, injects the fault a few
seconds in (and undoes it after ``hold``), then checks that every acknowledged event is in the
central table exactly once, that the central stream holds no mirror duplicate, and that clients
saw only retried errors (none at all with ``zero_client_errors``). Used by ``test_faults.py``
(one broker per cluster) and ``test_broker_faults.py`` (three).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import orjson

from geostack.audit import wait_for_central
from geostack.clients import LoadReport, run_clients
from geostack.stack import LocalStack
from geostack.stream_audit import audit_stream
from harness.process import hang, resume
from test_mirror_helpers import metric_value

COUNTRIES = ["DE", "FR", "RU", "US", "BR", "JP"]
RATE = 2000.0          # events/s from all simulated clients together
FAULT_AT = 4.0
# A hang or outage outlasts every timeout that declares a part dead (the mirror's group session
# 10 s, the brokers' 6 s) and the produce timeouts (15 s), so requests to a hung part time out.
OUTAGE = 20.0
AFTER = 6.0            # seconds of load after the fault is undone (the recovered path carries traffic)
ALLOWED_ERRORS = ("http:503", "http:429", "connection:", "event:failed")
RESULTS: list[dict[str, object]] = []


@dataclass
class Fault:
    """``inject`` at FAULT_AT seconds into the load; ``undo`` (when given) after ``hold`` more."""

    name: str
    inject: Callable[[], None]
    undo: Callable[[], None] | None = None
    hold: float = OUTAGE
    zero_client_errors: bool = False
    load_seconds: float = 0.0   # 0: FAULT_AT + hold + AFTER
    times: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.load_seconds:
            self.load_seconds = FAULT_AT + (self.hold if self.undo is not None else 0.0) + AFTER


def run_fault(stack: LocalStack, fault: Fault) -> dict[str, object]:
    """Load the stack, apply the fault, check exactly-once; returns and prints the figures."""
    started_ms = int(time.time() * 1000) - 5000   # the run's records are stamped after this
    report = LoadReport(run_id=f"{fault.name}-{int(time.time())}")
    refetched_before = refetched(stack)
    loader = threading.Thread(target=lambda: asyncio.run(run_clients(
        stack.router_url, COUNTRIES, duration=fault.load_seconds, rate=RATE, report=report,
        ssl_context=stack.client_ssl())), daemon=True)  # HTTPS, the stack's CA
    loader.start()
    time.sleep(FAULT_AT)  # the load is time-based: the fault lands a few seconds into it
    fault.times["injected"] = time.monotonic()
    fault.inject()
    if fault.undo is not None:
        time.sleep(fault.hold)  # the outage lasts this long by definition
        fault.undo()
    fault.times["undone"] = time.monotonic()
    wait_healthy(stack)
    recovered = time.monotonic() - fault.times["undone"]
    loader.join(fault.load_seconds + 240)
    assert not loader.is_alive(), "the simulated clients did not finish"
    audit = wait_for_central(stack.central_url, report, timeout=240)
    stream = asyncio.run(audit_stream(stack.kafka[stack.regions.central.name].bootstrap, report.run_id,
                                    since_ms=started_ms))
    figures = {
        "fault": fault.name, "sent": report.sent, "acknowledged": len(report.acked),
        "found_centrally": audit.found, "missing": audit.missing, "duplicates": audit.duplicates,
        **stream.as_dict(), "client_errors": dict(report.errors), "gave_up": report.gave_up,
        "rejected": report.rejected, "acknowledged_by_pool": report.acked_by_pool,
        "time_to_recover_s": round(recovered, 1),
        # records a mirror round was handed twice (re-fetched after a seek) and took once
        "mirror_refetched_dropped": max(0, int(refetched(stack) - refetched_before)),
        "catch_up_after_load_s": round(audit.seconds_to_complete, 1),
    }
    RESULTS.append(figures)
    print(orjson.dumps(figures).decode())
    assert audit.missing == 0, figures
    assert audit.duplicates == 0, figures
    assert stream.mirror_duplicates == 0, figures
    assert report.gave_up == 0 and report.rejected == 0, figures
    unexpected = {k: v for k, v in report.errors.items() if not k.startswith(ALLOWED_ERRORS)}
    assert not unexpected, figures
    if fault.zero_client_errors:
        assert not report.errors, figures
    assert len(report.acked) > RATE * fault.load_seconds * 0.3, figures
    return figures


def refetched(stack: LocalStack) -> float:
    return metric_value(stack.mirror_admin_port, "geo_mirror_refetched_records_total")


def wait_healthy(stack: LocalStack) -> None:
    """The full topology is back: every edge routable, the mirror and geo-central healthy, the
    Consul datacenters federated again (a mirror started now discovers every region)."""
    stack.wait_routable(timeout=120)
    stack.wait_federated(120)
    for proc in (stack.mirror, stack.central):
        assert proc is not None
        proc.wait_healthy(120)


def hung(name: str, *pids: Callable[[], int | None], hold: float = OUTAGE) -> Fault:
    """SIGSTOP the processes for ``hold`` seconds, then SIGCONT: they wake up believing nothing
    happened (a GC pause, a frozen VM, a stalled disk)."""
    stopped: list[int | None] = []

    def inject() -> None:
        stopped[:] = [pid() for pid in pids]
        for pid in stopped:
            hang(pid)

    def undo() -> None:
        for pid in stopped:
            resume(pid)

    return Fault(f"{name} SIGSTOP {hold:.0f}s", inject=inject, undo=undo, hold=hold)


def restart(proc) -> Callable[[], None]:  # type: ignore[no-untyped-def]
    def again() -> None:
        proc.start()
        proc.wait_healthy(120)
    return again


