"""The mirror worker: one :class:`~mirror.flow.RegionFlow` per region, the shared central side,
regions added and removed at run time with :meth:`MirrorWorker.set_regions`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping

from mirror.backoff import Backoff
from mirror.central import Central
from mirror.config import MirrorConfig
from mirror.flow import RegionFlow
from mirror.metrics import MirrorMetrics
from mirror.regions import RegionSource, check_region
from service_kit.kafka_security import explain

log = logging.getLogger(__name__)


class MirrorWorker:
    """Carries several regions in one process; each region copies independently."""

    def __init__(self, config: MirrorConfig, metrics: MirrorMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or MirrorMetrics()
        self.central = Central(config, self.metrics)
        self._flows: dict[str, tuple[RegionFlow, asyncio.Task[None]]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._started = False
        self.central_error: str | None = None

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Connect to the central cluster, retrying with backoff until it answers (or ``stop``)."""
        backoff = Backoff(1.0, 30.0)
        while not self._started:
            try:
                await self.central.start()
                self._started = True
                self.central_error = None
            except Exception as exc:  # noqa: BLE001 - central down at start: wait for it
                self.metrics.set_central_up(False)
                self.metrics.errors.labels("central", "central_unreachable").inc()
                self.central_error = await explain(exc, self.config.central_bootstrap,
                                                   self.config.central_security)
                log.warning("central cluster not answering", extra={"error": self.central_error})
                await self.central.stop()
                self.central = Central(self.config, self.metrics)
                if stop is not None and stop.is_set():
                    raise
                await asyncio.sleep(backoff.next())

    def flow(self, region: str) -> RegionFlow:
        """The copy loop of ``region`` (KeyError when the region is not mirrored)."""
        return self._flows[region][0]

    def regions(self) -> dict[str, str]:
        """The regions being mirrored: name -> bootstrap."""
        return {name: flow.bootstrap for name, (flow, _) in self._flows.items()}

    def set_regions(self, regions: Mapping[str, str]) -> None:
        """Start flows for new regions, stop those of removed ones, restart changed ones."""
        if not self._started:
            raise RuntimeError("start() the worker first")
        for name, bootstrap in regions.items():
            check_region(name, bootstrap)
        for name in [n for n, (flow, _) in self._flows.items()
                     if regions.get(n) != flow.bootstrap]:
            flow, task = self._flows.pop(name)
            log.info("region removed", extra={"region": name})
            task.cancel()
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        for name, bootstrap in regions.items():
            if name not in self._flows:
                flow = RegionFlow(name, bootstrap, self.config, self.central, self.metrics,
                                  known_regions=lambda: list(self._flows))
                task = asyncio.create_task(flow.run(), name=f"flow-{name}")
                self._flows[name] = (flow, task)
                log.info("region added", extra={"region": name, "bootstrap": bootstrap})

    async def follow(self, source: RegionSource, stop: asyncio.Event) -> None:
        """Poll ``source`` and apply its regions until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.set_regions(await source.regions())
            except Exception as exc:  # noqa: BLE001 - keep the last known regions
                log.warning("region source failed", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(stop.wait(), self.config.refresh_interval_s)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        """Stop every flow (no open transaction is left behind) and close the central side."""
        tasks = [task for _, task in self._flows.values()] + list(self._stopping)
        self._flows.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=self.config.operation_timeout_s + 20)
            if stuck:
                log.warning("region flows did not stop in time", extra={"flows": len(stuck)})
        await self.central.stop()
        self._started = False

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy when the central cluster answers; details per region."""
        central_up = self.metrics.central_is_up
        regions = {name: flow.status() for name, (flow, _) in self._flows.items()}
        return self._started and central_up, {
            "central": {"bootstrap": self.config.central_bootstrap, "up": central_up,
                        "error": self.central_error,
                        **self.config.central_security.describe()},
            "exactly_once": self.config.exactly_once,
            "regions": regions,
        }
