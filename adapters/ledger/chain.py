"""The global hash chain over the event log.

``hash = SHA-256(RFC 8785 JSON of {position, originator_id, version, topic,
state, prev_hash})``. Stored states are already RFC 8785 canonical JSON (see
transcoder.py), so the canonical form is assembled by concatenation instead of
re-parsing each state; ``reference_hash`` is the slow, obviously-correct
definition the tests hold the fast path to.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING

import rfc8785

if TYPE_CHECKING:
    from uuid import UUID

GENESIS = "0" * 64
_SAFE = re.compile(r"[A-Za-z0-9_.:\-]+")


def check_topic(topic: str) -> str:
    """Topics are module:qualname paths; refuse anything needing JSON escapes."""
    if not _SAFE.fullmatch(topic):
        msg = f"topic {topic!r} is not a plain module:qualname path"
        raise ValueError(msg)
    return topic


_CANONICAL = (
    b'{"originator_id":"%s","position":%d,"prev_hash":"%s","state":%s,'
    b'"topic":"%s","version":%d}'
)


def event_hash(
    position: int,
    originator_id: UUID,
    version: int,
    topic: str,
    state: bytes,
    prev_hash: str,
) -> str:
    """The chain hash of one stored event (fast path)."""
    return row_hash(position, str(originator_id), version, topic, state, prev_hash)


def row_hash(
    position: int,
    originator_id: str,
    version: int,
    topic: str,
    state: bytes,
    prev_hash: str,
) -> str:
    """The chain hash from a raw row (``originator_id`` in 8-4-4-4-12 form)."""
    canonical = _CANONICAL % (
        originator_id.encode(),
        position,
        prev_hash.encode(),
        state,
        topic.encode(),
        version,
    )
    return hashlib.sha256(canonical).hexdigest()


def reference_hash(
    position: int,
    originator_id: UUID,
    version: int,
    topic: str,
    state: bytes,
    prev_hash: str,
) -> str:
    """The chain hash by the book: parse the state, canonicalise with rfc8785."""
    document = {
        "position": position,
        "originator_id": str(originator_id),
        "version": version,
        "topic": topic,
        "state": json.loads(state),
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(rfc8785.dumps(document)).hexdigest()
