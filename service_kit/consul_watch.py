"""Healthy instances of a Consul service in several datacenters, kept current by blocking queries.

Each datacenter is watched by one daemon thread (py-consul is synchronous); readers get the last
known set, which is kept while Consul is unreachable. Used by the geo router (service ``edge``)
and the mirror (service ``kafka``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping
from urllib.parse import urlsplit

import consul

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Instance:
    """One passing service instance."""

    id: str
    address: str
    port: int
    meta: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    @property
    def hostport(self) -> str:
        return f"{self.address}:{self.port}"


def consul_client(url: str, token: str | None = None, dc: str | None = None,
                  timeout: float = 30.0) -> consul.Consul:
    """A py-consul client for ``http://host:port`` whose requests give up after ``timeout`` s."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return consul.Consul(host=parts.hostname, port=parts.port or 8500, scheme=parts.scheme,
                         token=token, dc=dc, connections_timeout=timeout)


@contextlib.contextmanager
def consul_session(url: str, token: str | None = None, timeout: float = 30.0) -> Iterator[consul.Consul]:
    """A client for one exchange whose HTTP connections are closed when the block ends.
    py-consul's own ``close()`` (and its ``with``) does nothing for the requests-based client, and a
    client is a reference cycle, so an unclosed one keeps its connection until the cyclic garbage
    collector runs. Relies on ``client.http.session`` being a ``requests.Session`` (pinned by
    ``tests/test_library_internals.py``)."""
    client = consul_client(url, token, timeout=timeout)
    try:
        yield client
    finally:
        client.http.session.close()


class ServiceWatch:
    """Watch service ``service`` in each of ``datacenters``; ``on_change(dc, instances)`` is called
    from the watcher thread whenever a datacenter's set changes. ``passing_only=False`` keeps
    instances whose checks fail (registered is what counts, not healthy)."""

    def __init__(self, url: str, service: str, datacenters: list[str], token: str | None = None,
                 wait: str = "5s", on_change: Callable[[str, tuple[Instance, ...]], None] | None = None,
                 passing_only: bool = True) -> None:
        self.url, self.service, self.token, self.wait = url, service, token, wait
        self.passing_only = passing_only
        self.datacenters = list(datacenters)
        self.on_change = on_change
        self._instances: dict[str, tuple[Instance, ...]] = {}
        self._last_ok: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ready = {dc: threading.Event() for dc in self.datacenters}

    def start(self) -> "ServiceWatch":
        for dc in self.datacenters:
            thread = threading.Thread(target=self._watch, args=(dc,), daemon=True,
                                      name=f"consul-watch-{self.service}-{dc}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait_ready(self, timeout: float) -> bool:
        """True once every datacenter answered at least once within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        return all(ev.wait(max(0.0, deadline - time.monotonic())) for ev in self._ready.values())

    def instances(self, dc: str) -> tuple[Instance, ...]:
        """The last known passing instances in ``dc`` (empty before the first answer)."""
        return self._instances.get(dc, ())

    def snapshot(self) -> dict[str, tuple[Instance, ...]]:
        return dict(self._instances)

    def seconds_since_answer(self, dc: str) -> float | None:
        last = self._last_ok.get(dc)
        return None if last is None else time.monotonic() - last

    def _watch(self, dc: str) -> None:
        client = consul_client(self.url, self.token, dc)
        index = None
        backoff = 0.2
        while not self._stop.is_set():
            try:
                index, entries = client.health.service(self.service, passing=self.passing_only, index=index,
                                                       wait=self.wait, dc=dc)
                backoff = 0.2
            except Exception as exc:  # Consul down or slow: keep the last known set
                log.warning("consul watch failed", extra={"service": self.service, "dc": dc,
                                                          "error": repr(exc)})
                index = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            found = tuple(sorted((_instance(e) for e in entries), key=lambda i: i.id))
            self._last_ok[dc] = time.monotonic()
            changed = found != self._instances.get(dc)
            self._instances[dc] = found
            self._ready[dc].set()
            if changed:
                log.info("service set changed", extra={"service": self.service, "dc": dc,
                                                       "instances": [i.id for i in found]})
                if self.on_change is not None:
                    self.on_change(dc, found)


def _instance(entry: Mapping) -> Instance:
    svc = entry["Service"]
    return Instance(id=svc["ID"], address=svc.get("Address") or entry["Node"]["Address"],
                    port=int(svc["Port"]), meta=dict(svc.get("Meta") or {}),
                    tags=tuple(svc.get("Tags") or ()))
