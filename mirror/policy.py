"""Replication policy (how a mirrored topic is named) and topic filter (which topics are mirrored).

Kept apart from the copy loop, like MirrorMaker 2's ReplicationPolicy and TopicFilter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from service_kit.contract import (MIRROR_SOURCE_OFFSET, MIRROR_SOURCE_PARTITION, MIRROR_SOURCE_REGION,
                                  MIRROR_SOURCE_TOPIC, MIRRORED_AT)

#: Provenance headers added to every mirrored record (ARCHITECTURE.md, "Central topics"): the
#: names of :mod:`service_kit.contract` under the mirror's short names.
H_REGION = MIRROR_SOURCE_REGION
H_TOPIC = MIRROR_SOURCE_TOPIC
H_PARTITION = MIRROR_SOURCE_PARTITION
H_OFFSET = MIRROR_SOURCE_OFFSET
H_MIRRORED_AT = MIRRORED_AT

DEFAULT_EXCLUDE: tuple[str, ...] = (r"__.*", r".*[-.]internal")


@dataclass(frozen=True)
class ReplicationPolicy:
    """Names central topics ``<region><separator><topic>``, or keeps the name (``identity``).

    Identity naming cannot stop a cycle by name; the provenance header still does.
    """

    separator: str = "."
    identity: bool = False

    def __post_init__(self) -> None:
        if not self.separator:
            raise ValueError("separator must not be empty")

    def target_topic(self, region: str, topic: str) -> str:
        """The central topic that ``topic`` of ``region`` is copied into."""
        return topic if self.identity else f"{region}{self.separator}{topic}"

    def source_region(self, topic: str, regions: Iterable[str]) -> str | None:
        """The region whose prefix ``topic`` carries (a mirrored name), else None."""
        for region in regions:
            if topic.startswith(f"{region}{self.separator}"):
                return region
        return None


@dataclass(frozen=True)
class TopicFilter:
    """Selects source topics: matches one ``include`` regex, no ``exclude`` regex, and is not
    itself a mirror (a name carrying any known region's prefix). Regexes match the whole name."""

    include: Sequence[str] = (r".*",)
    exclude: Sequence[str] = DEFAULT_EXCLUDE
    policy: ReplicationPolicy = field(default_factory=ReplicationPolicy)
    _include: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _exclude: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_include", _compile(self.include, "include"))
        object.__setattr__(self, "_exclude", _compile(self.exclude, "exclude"))

    def selects(self, topic: str, known_regions: Iterable[str] = ()) -> bool:
        """Whether ``topic`` should be mirrored."""
        if not any(p.fullmatch(topic) for p in self._include):
            return False
        if any(p.fullmatch(topic) for p in self._exclude):
            return False
        return self.policy.source_region(topic, known_regions) is None


def is_mirrored_record(headers: Sequence[tuple[str, bytes]] | None) -> bool:
    """Whether a record already went through a mirror (carries the provenance region header)."""
    if headers:
        for key, _ in headers:
            if key == H_REGION:
                return True
    return False


def _compile(patterns: Sequence[str], what: str) -> tuple[re.Pattern[str], ...]:
    out = []
    for pattern in patterns:
        try:
            out.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"bad {what} regex {pattern!r}: {exc}") from exc
    return tuple(out)
