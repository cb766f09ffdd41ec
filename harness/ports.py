"""Free loopback ports for real processes started by the harness."""

from __future__ import annotations

import random
import socket

_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on and this process has not handed out.

    Ports come from below the kernel's ephemeral range (``ip_local_port_range``): a port the kernel
    gives out (port 0) may be taken again by any outgoing connection before our server binds it.
    """
    low, high = _PORT_RANGE
    for _ in range(10_000):
        port = random.randrange(low, high)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {low}..{high}")


def _port_range() -> tuple[int, int]:
    try:
        ephemeral_low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    return 10_000, max(12_000, ephemeral_low)


_PORT_RANGE = _port_range()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
