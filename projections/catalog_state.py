"""Stored Dataset event states decoded straight into msgspec structs.

The catalog's catch-up reads every Dataset event of the log. The library's
mapper decodes each state with a Python ``object_hook`` per JSON object and
then builds a domain event object; the fold needs neither. The stored states
are RFC 8785 JSON (adapters/ledger/transcoder.py) whose UUIDs and datetimes
are boxed as ``{"_data_": ..., "_type_": ...}``: these structs mirror that
form, and ``decode`` unboxes the few fields the catalog shows. The structs
carry the domain events' attribute names, so the projection's handlers take
either.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from eventsourcing.utils import get_topic

from domain.catalog.dataset import Dataset

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsourcing.persistence import Notification


class _State(msgspec.Struct):
    originator_id: Any = None
    originator_version: int = 0
    timestamp: Any = None
    """Boxed as stored ({"_data_": ISO text, ...}), a datetime once decoded."""


class RegisteredState(_State):
    tenant: str = ""
    name: str = ""
    description: str = ""
    license: str = ""
    purposes: tuple[str, ...] = ()
    retention: str = ""
    region: str = ""
    contract_version: str = ""
    contract_status: str = ""
    tags: tuple[str, ...] = ()
    owner: str = ""
    location: str = ""
    columns: tuple[tuple[str, str], ...] = ()
    upstream: tuple[Any, ...] = ()
    """Boxed as stored, UUIDs once decoded."""


class AmendedState(_State):
    description: str = ""
    license: str = ""
    purposes: tuple[str, ...] = ()
    retention: str = ""
    region: str = ""
    contract_version: str = ""
    contract_status: str = ""
    tags: tuple[str, ...] = ()
    owner: str = ""
    location: str = ""
    columns: tuple[tuple[str, str], ...] = ()


class LineageLinkedState(_State):
    upstream: tuple[Any, ...] = ()
    """Boxed as stored, UUIDs once decoded."""


class RetiredState(_State):
    pass


_DECODERS: dict[str, Callable[[bytes], _State]] = {
    get_topic(event): msgspec.json.Decoder(state).decode
    for event, state in (
        (Dataset.Registered, RegisteredState),
        (Dataset.Amended, AmendedState),
        (Dataset.LineageLinked, LineageLinkedState),
        (Dataset.Retired, RetiredState),
    )
}


def decode(notification: Notification) -> _State | None:
    """The event a stored Dataset notification holds, or None for other topics."""
    decoder = _DECODERS.get(notification.topic)
    if decoder is None:
        return None
    state = decoder(notification.state)
    state.originator_id = notification.originator_id
    state.originator_version = notification.originator_version
    state.timestamp = datetime.fromisoformat(state.timestamp["_data_"])
    if isinstance(state, RegisteredState | LineageLinkedState) and state.upstream:
        state.upstream = tuple(UUID(u["_data_"]) for u in state.upstream)
    return state
