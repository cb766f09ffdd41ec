"""Simulated clients in several countries, behaving as the client contract asks.

Each client binds a loopback source address that the geo router's CIDR table places in its
country, sends batches to ``/v1/events`` with its own ``event_id`` per event, and retries an
event that was not acknowledged (503, 429, 502 or a connection error) with the same id, honouring
``Retry-After``. The report keeps every acknowledged id and every error the clients saw, so that
the caller can check that each acknowledged event reached the central table exactly once.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import orjson
import uuid_utils

# country -> a loopback /16 that geostack.geoip.DEFAULT_CIDR_COUNTRIES places there
COUNTRY_SOURCES: dict[str, str] = {"DE": "127.10", "FR": "127.11", "RU": "127.12", "US": "127.20",
                                   "BR": "127.21", "JP": "127.22", "IN": "127.30"}
RETRYABLE = {429, 502, 503, 504}
_JSON = {"Content-Type": "application/json"}


@dataclass
class LoadReport:
    """What the simulated clients sent and saw."""

    run_id: str
    sent: int = 0
    acked: dict[str, str] = field(default_factory=dict)       # event_id -> pool that served it
    rejected: int = 0                                          # 4xx per-event rejections (a bug here)
    errors: Counter[str] = field(default_factory=Counter)      # what clients saw, retried
    gave_up: int = 0                                           # events never acknowledged
    latencies: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0

    @property
    def acked_by_pool(self) -> dict[str, int]:
        return dict(Counter(self.acked.values()))

    def summary(self) -> dict[str, object]:
        lat = sorted(self.latencies)
        pct = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2)) if lat else (lambda q: None)
        elapsed = (self.finished or time.monotonic()) - self.started
        return {"run_id": self.run_id, "sent": self.sent, "acknowledged": len(self.acked),
                "acknowledged_by_pool": self.acked_by_pool, "rejected": self.rejected,
                "client_errors_retried": dict(self.errors), "gave_up": self.gave_up,
                "events_per_s": round(len(self.acked) / elapsed, 1) if elapsed else None,
                "request_p50_ms": pct(0.5), "request_p99_ms": pct(0.99)}


def make_event(run_id: str, country: str, seq: int) -> dict[str, object]:
    """One synthetic event with a client-chosen id (so that retries are idempotent). The id is a
    UUIDv4 from ``uuid_utils`` (0.6 µs; the standard library's reads ``os.urandom`` per call, 6.5 µs,
    which made the simulated clients a tenth of a core at 10,000 events/s)."""
    return {"event": random.choice(("view", "click", "signup", "purchase")),
            "os": random.choice(("linux", "windows", "macos", "android", "ios")),
            "browser": random.choice(("chrome", "firefox", "safari", "edge")),
            "event_id": str(uuid_utils.uuid4()), "run_id": run_id, "client_country": country, "seq": seq,
            "sent_at": int(time.time() * 1000)}


async def run_clients(url: str, countries: list[str], *, events_per_country: int | None = None,
                      duration: float | None = None, rate: float = 1000.0, batch: int = 20,
                      clients_per_country: int = 2, run_id: str | None = None,
                      max_attempts: int = 60, report: LoadReport | None = None,
                      ssl_context: ssl.SSLContext | None = None) -> LoadReport:
    """Send events from ``countries`` to the router at ``url`` (``/v1/events``), at about
    ``rate`` events/s in all, until ``events_per_country`` each or ``duration`` seconds. An
    ``https`` URL is verified against ``ssl_context`` (the stack's ``client_ssl()``; default:
    the system's CAs)."""
    report = report or LoadReport(run_id=run_id or uuid.uuid4().hex[:12])
    n_clients = len(countries) * clients_per_country
    interval = batch * n_clients / rate
    deadline = time.monotonic() + duration if duration else None
    quota = (events_per_country // clients_per_country) if events_per_country else None

    async def client(country: str, index: int) -> None:
        source = f"{COUNTRY_SOURCES[country]}.0.{index + 1}"
        connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=1, ssl=ssl_context or True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30.0),
                                         skip_auto_headers=("User-Agent",)) as http:
            seq = 0
            next_at = time.monotonic() + random.random() * interval
            while True:
                if deadline and time.monotonic() >= deadline:
                    return
                if quota is not None and seq >= quota:
                    return
                size = batch if quota is None else min(batch, quota - seq)
                events = [make_event(report.run_id, country, seq + i) for i in range(size)]
                seq += size
                report.sent += size
                await _deliver(http, f"{url}/v1/events", events, report, max_attempts)
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # not a wait: the load generator's pacing (``rate``)
                else:
                    next_at = time.monotonic()

    await asyncio.gather(*(client(c, i) for c in countries for i in range(clients_per_country)))
    report.finished = time.monotonic()
    return report


async def _deliver(http: aiohttp.ClientSession, url: str, events: list[dict[str, object]],
                   report: LoadReport, max_attempts: int) -> None:
    pending = events
    for attempt in range(max_attempts):
        started = time.perf_counter()
        try:
            async with http.post(url, data=orjson.dumps(pending), headers=_JSON) as response:
                status, body = response.status, await response.read()
                retry_after_header = response.headers.get("retry-after")
                pool = response.headers.get("x-geo-pool", "?")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            report.errors[f"connection:{type(exc).__name__}"] += 1
            await asyncio.sleep(min(0.05 * 2 ** attempt, 1.0))  # not a wait: a client's retry backoff
            continue
        report.latencies.append(time.perf_counter() - started)
        if status in RETRYABLE:
            report.errors[f"http:{status}"] += 1
            retry_after = float(retry_after_header or 0.2)
            await asyncio.sleep(min(retry_after, 1.0) * (0.5 + random.random()))  # honours Retry-After
            continue
        if status >= 400 and status != 207:
            report.errors[f"http:{status}"] += 1
            report.rejected += len(pending)
            return
        doc = orjson.loads(body)
        retry = []
        for result, event in zip(doc["results"], pending):
            if result["status"] == "accepted":
                report.acked[str(event["event_id"])] = pool
            elif result["status"] == "rejected":
                report.rejected += 1
            else:
                retry.append(event)
        if not retry:
            return
        report.errors["event:failed"] += len(retry)
        pending = retry
        await asyncio.sleep(0.2)  # not a wait: a client's pause before resending the failed events
    report.gave_up += len(pending)
