"""The record contract between edge, mirror and geo-central (ARCHITECTURE.md, "Data contract").

The one definition of the Kafka header names the edge writes, the provenance header names the
mirror adds, the event fields the contract reads and the message-key rule. The edge
(``edge/enrich.py``), the mirror (``mirror/policy.py``), geo-central (``central/records.py``) and
the stream audit (``geostack/stream_audit.py``) import them from here.

Header values are UTF-8 bytes; times are ms since the epoch as decimal digits.
"""

from __future__ import annotations

from typing import Any, Mapping

# Headers the edge adds to every event record (always).
EVENT_ID = "event-id"
RECEIVED_AT = "received-at"
REGION = "region"
EDGE = "edge"
# Headers the edge adds when it knows them.
CLIENT_IP = "client-ip"
COUNTRY = "country"
SENT_AT = "sent-at"
SOURCE = "source"

#: The headers every event record carries; geo-central quarantines a record missing one.
REQUIRED_EVENT_HEADERS: tuple[str, ...] = (EVENT_ID, RECEIVED_AT, REGION, EDGE)
#: Every header the edge may write on an event record.
EDGE_HEADERS: tuple[str, ...] = (*REQUIRED_EVENT_HEADERS, CLIENT_IP, COUNTRY, SENT_AT, SOURCE)

# Extra headers of a dead-letter record (with received-at, region, edge, client-ip).
DLQ_REASON = "reason"
DLQ_DETAIL = "detail"

# Provenance headers the mirror adds to every record it copies into the central cluster.
MIRROR_SOURCE_REGION = "mirror-source-region"
MIRROR_SOURCE_TOPIC = "mirror-source-topic"
MIRROR_SOURCE_PARTITION = "mirror-source-partition"
MIRROR_SOURCE_OFFSET = "mirror-source-offset"
MIRRORED_AT = "mirrored-at"
PROVENANCE_HEADERS: tuple[str, ...] = (MIRROR_SOURCE_REGION, MIRROR_SOURCE_TOPIC, MIRROR_SOURCE_PARTITION,
                                       MIRROR_SOURCE_OFFSET, MIRRORED_AT)

# Event (JSON) fields the contract gives a meaning to: the client's event id and send time (ms,
# the ``sent-at`` header), and the two user fields of the key rule.
FIELD_EVENT_ID = "event_id"
FIELD_SENT_AT = "sent_at"
FIELD_USER_ID = "user_id"
FIELD_ANONYMOUS_ID = "anonymous_id"


def user_key(doc: Mapping[str, Any]) -> str | None:
    """The user an event belongs to, which is its Kafka key: ``user_id`` when it is a non-empty
    string, else ``anonymous_id`` when it is a non-empty string, else None (the edge then keys
    the record by its event id and geo-central stores an empty ``user_id``)."""
    user = doc.get(FIELD_USER_ID)
    if type(user) is str and user:
        return user
    anon = doc.get(FIELD_ANONYMOUS_ID)
    if type(anon) is str and anon:
        return anon
    return None
