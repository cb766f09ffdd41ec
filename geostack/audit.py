"""Did every acknowledged event reach the central table exactly once? Asks geo-central's
``/api/audit`` for a load run and compares with what the clients were acknowledged."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from geostack.clients import LoadReport
from service_kit.wait import wait_until


@dataclass
class AuditResult:
    """The central table's view of one load run, against the clients' acknowledgements."""

    acknowledged: int
    found: int
    missing: int
    duplicates: int
    unexpected: int           # rows of the run that no client saw acknowledged (allowed: lost acks)
    by_region: dict[str, int]
    seconds_to_complete: float

    @property
    def exact(self) -> bool:
        return self.missing == 0 and self.duplicates == 0

    def as_dict(self) -> dict[str, object]:
        return {"acknowledged": self.acknowledged, "found_centrally": self.found, "missing": self.missing,
                "duplicates": self.duplicates, "unacknowledged_but_stored": self.unexpected,
                "by_region": self.by_region, "seconds_to_complete": round(self.seconds_to_complete, 1)}


def audit_once(central_url: str, report: LoadReport) -> AuditResult:
    doc = httpx.get(f"{central_url}/api/audit", params={"run_id": report.run_id, "ids": "1"},
                    timeout=30).json()
    stored = set(doc["event_ids"])
    acked = set(report.acked)
    return AuditResult(acknowledged=len(acked), found=len(acked & stored), missing=len(acked - stored),
                       duplicates=int(doc["duplicates"]), unexpected=len(stored - acked),
                       by_region=dict(doc["by_region"]), seconds_to_complete=0.0)


def wait_for_central(central_url: str, report: LoadReport, timeout: float = 180.0) -> AuditResult:
    """Poll until every acknowledged event is in the table (or ``timeout``); the last audit."""
    started = time.monotonic()
    last: AuditResult | None = None

    def complete() -> bool:
        nonlocal last
        try:
            last = audit_once(central_url, report)
        except (httpx.HTTPError, KeyError, ValueError):
            last = None
        return last is not None and last.missing == 0

    try:
        wait_until(complete, timeout, interval=0.5, what="every acknowledged event in geo-central")
    except TimeoutError:
        if last is None:
            raise TimeoutError("geo-central's audit never answered") from None
    assert last is not None  # the wait succeeded, or timed out after an audit that answered
    last.seconds_to_complete = time.monotonic() - started
    return last
