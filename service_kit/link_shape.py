"""The figures of a WAN link between an edge region and the centre (``regions.yaml``'s ``wan:``):
round trip, jitter, bandwidth and loss-like stalls. Pure data with validation; the local stack
emulates a link of this shape in user space (``harness/wan.py``), a real deployment has one."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

#: the keys of a ``wan:`` mapping, with what each must be
FIELDS = {
    "rtt_ms": "round trip in milliseconds, >= 0 (each direction is delayed rtt_ms / 2)",
    "jitter_ms": "each direction's delay varies by up to +-jitter_ms, >= 0 and <= rtt_ms / 2",
    "bandwidth_mbit": "megabits per second each way, shared by every connection of the link; "
                      "0 = no cap",
    "stall_per_mille": "of every 1000 chunks (one read of up to 64 KiB), this many are held "
                       "stall_ms, as a lost segment is until TCP retransmits it; 0..1000",
    "stall_ms": "how long a stall holds its connection's direction (TCP's minimum RTO: 200 ms), > 0",
}


@dataclass(frozen=True)
class LinkShape:
    """One link's figures (both directions alike)."""

    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth_mbit: float = 0.0
    stall_per_mille: float = 0.0
    stall_ms: float = 200.0

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"wan.{name} must be a number, not {value!r}: {FIELDS[name]}")
            if value != value or value < 0 or value == float("inf"):  # NaN, negative, infinite
                raise ValueError(f"wan.{name} = {value!r}: {FIELDS[name]}")
        if self.jitter_ms > self.rtt_ms / 2:
            raise ValueError(f"wan.jitter_ms = {self.jitter_ms!r} exceeds rtt_ms / 2 = {self.rtt_ms / 2!r}: "
                             f"{FIELDS['jitter_ms']}")
        if self.stall_per_mille > 1000:
            raise ValueError(f"wan.stall_per_mille = {self.stall_per_mille!r}: {FIELDS['stall_per_mille']}")
        if self.stall_ms <= 0:
            raise ValueError(f"wan.stall_ms = {self.stall_ms!r}: {FIELDS['stall_ms']}")

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], where: str = "wan") -> "LinkShape":
        """A ``wan:`` mapping of the regions file; unknown keys and bad values are a ValueError
        naming ``where``."""
        if not isinstance(doc, Mapping):
            raise ValueError(f"{where}: must be a mapping of {sorted(FIELDS)}, not {doc!r}")
        unknown = set(doc) - set(FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(FIELDS)})")
        try:
            return cls(**{k: doc[k] for k in FIELDS if k in doc})
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    @property
    def one_way_s(self) -> float:
        return self.rtt_ms / 2000.0

    @property
    def bytes_per_s(self) -> float:
        """The cap in bytes per second each way (0: none)."""
        return self.bandwidth_mbit * 1e6 / 8

    @property
    def is_loopback(self) -> bool:
        """Nothing to emulate: no delay, no cap, no stalls."""
        return self.rtt_ms == 0 and self.bandwidth_mbit == 0 and self.stall_per_mille == 0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)
