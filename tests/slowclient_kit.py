"""Slow clients against a real listener: many raw connections that send part of a request and
stall, what the server does with them, normal clients served meanwhile, and open descriptors."""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service_kit.wait import wait_until

STALLED_HEAD = b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"   # the request
JSON = {"Content-Type": "application/json"}
STALLED_BODY = b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ev"


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's workers)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").iterdir():
            todo.extend(int(c) for c in (task / "children").read_text().split())
    return pids


def tree_fds(pid: int) -> int:
    return sum(open_fds(p) for p in process_tree(pid))


def stall(port: int, count: int, payload: bytes, tls: ssl.SSLContext | None = None) -> list[socket.socket]:
    """``count`` connections that each sent ``payload`` (possibly nothing) and then stall."""
    socks = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
        if payload:
            sock.sendall(payload)
        socks.append(sock)
    return socks


@dataclass
class Closed:
    """When and how the server ended each stalled connection."""

    after: list[float] = field(default_factory=list)
    first_lines: Counter[bytes] = field(default_factory=Counter)
    bodies: list[bytes] = field(default_factory=list)
    open_left: int = 0


def wait_closed(socks: list[socket.socket], since: float, timeout: float) -> Closed:
    """Read each socket until the server closes it (EOF or reset); what each got first."""
    result = Closed()
    received: dict[int, bytes] = {s.fileno(): b"" for s in socks}
    by_fd = {s.fileno(): s for s in socks}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    deadline = time.monotonic() + timeout
    while by_fd and time.monotonic() < deadline:
        for fd, _ in poller.poll(500):
            sock = by_fd[fd]
            try:
                chunk = sock.recv(65536)
            except ssl.SSLWantReadError:
                continue
            except (ConnectionResetError, ssl.SSLError, OSError):
                chunk = b""
            if chunk:
                received[fd] += chunk
                continue
            result.after.append(time.monotonic() - since)
            head, _, body = received[fd].partition(b"\r\n\r\n")
            result.first_lines[head.split(b"\r\n")[0]] += 1
            if body:
                result.bodies.append(body)
            poller.unregister(fd)
            del by_fd[fd]
            sock.close()
    result.open_left = len(by_fd)
    for sock in by_fd.values():
        sock.close()
    return result


class NormalClients:
    """One keep-alive client posting events in a loop on a thread: every answer and its time."""

    def __init__(self, url: str, verify: ssl.SSLContext | bool = True) -> None:
        self.url, self.verify = url, verify
        self.statuses: Counter[int | str] = Counter()
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "NormalClients":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(verify=self.verify, timeout=10) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status: int | str = client.post(self.url, content=b'{"event":"normal"}', headers=JSON).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.statuses[status] += 1
                self.slowest = max(self.slowest, time.monotonic() - started)
                self._stop.wait(0.02)  # not a wait for a condition: the client's pacing


@dataclass
class Storm:
    """What ``stall_storm`` saw: how long opening took, the process tree's descriptors at the
    peak, and how the stalled connections were closed."""

    opened: float
    peak_fds: int
    closed: Closed


def stall_storm(pid: int, port: int, count: int, baseline: int, normal: "NormalClients", timeout: float,
                tls: ssl.SSLContext | None = None, after_served: int = 10, what: str = "the server") -> Storm:
    """Open ``count`` connections that send ``STALLED_HEAD`` and stall, while ``normal`` clients
    run; wait until the server (process tree ``pid``, ``baseline`` descriptors before) holds them, until it has closed them
    (``timeout``: its header timeout), and until the normal clients were served ``after_served``
    more times after the storm."""
    started = time.monotonic()
    socks = stall(port, count, STALLED_HEAD, tls=tls)
    opened = time.monotonic() - started
    wait_until(lambda: tree_fds(pid) >= baseline + count * 0.9, 30,
               what=f"{what} holding the stalled connections")
    peak = tree_fds(pid)
    closed = wait_closed(socks, started, timeout=timeout + opened + 30)
    served = normal.statuses[200]
    wait_until(lambda: normal.statuses[200] > served + after_served, 10, what="normal clients after the storm")
    return Storm(opened, peak, closed)
