"""Dataset events as the catalog folds them: msgspec structs in the stored form.

The catalog's catch-up reads every Dataset event of the log. The library's
mapper decodes each state with a Python ``object_hook`` per JSON object and
then builds a domain event object; the fold needs neither. The stored states
are RFC 8785 JSON (adapters/ledger/transcoder.py): ``decode`` parses one
straight into a struct that keeps the list fields (purposes, tags, columns)
as the raw JSON they are, because the views store exactly that text, and the
boxed timestamp and upstream ids (``{"_data_": ..., "_type_": ...}``) as
small structs. The structs hold no containers that could form a cycle, so
they stay out of the garbage collector's sight (``gc=False``): a page of a
thousand events otherwise made each collection walk them all. ``from_event``
builds the same structs from the library's
domain event objects (its ProjectionRunner hands the projection those), so
the projection folds one kind of input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from eventsourcing.utils import get_topic

from domain.catalog.dataset import Dataset

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsourcing.persistence import Notification

_encode = msgspec.json.encode
EMPTY = msgspec.Raw(b"[]")


class Boxed(msgspec.Struct, frozen=True, gc=False):
    """A UUID (hex) or datetime (ISO text) as the transcoder boxes it."""

    data: str = msgspec.field(name="_data_")


_NO_TIME = Boxed("")


class _State(msgspec.Struct, gc=False):
    key: str = ""
    """The dataset's id as 32 hex digits: the views' key (not in the JSON)."""
    originator_version: int = 0
    """Not in the JSON either: set from the notification."""
    timestamp: Boxed = _NO_TIME


class RegisteredState(_State):
    tenant: str = ""
    name: str = ""
    description: str = ""
    license: str = ""
    purposes: msgspec.Raw = EMPTY
    retention: str = ""
    region: str = ""
    contract_version: str = ""
    contract_status: str = ""
    tags: msgspec.Raw = EMPTY
    owner: str = ""
    location: str = ""
    columns: msgspec.Raw = EMPTY
    """[[name, classification], ...]"""
    upstream: tuple[Boxed, ...] = ()


class AmendedState(_State):
    description: str = ""
    license: str = ""
    purposes: msgspec.Raw = EMPTY
    retention: str = ""
    region: str = ""
    contract_version: str = ""
    contract_status: str = ""
    tags: msgspec.Raw = EMPTY
    owner: str = ""
    location: str = ""
    columns: msgspec.Raw = EMPTY


class LineageLinkedState(_State):
    upstream: tuple[Boxed, ...] = ()


class RetiredState(_State):
    pass


_STATES: dict[type, type[_State]] = {
    Dataset.Registered: RegisteredState,
    Dataset.Amended: AmendedState,
    Dataset.LineageLinked: LineageLinkedState,
    Dataset.Retired: RetiredState,
}
_DECODERS: dict[str, Callable[[bytes], _State]] = {
    get_topic(event): msgspec.json.Decoder(state).decode
    for event, state in _STATES.items()
}


def decode(notification: Notification) -> _State | None:
    """The event a stored Dataset notification holds, or None for other topics."""
    decoder = _DECODERS.get(notification.topic)
    if decoder is None:
        return None
    state = decoder(notification.state)
    oid = notification.originator_id
    state.key = oid.hex if isinstance(oid, UUID) else UUID(oid).hex
    state.originator_version = notification.originator_version
    return state


def text(raw: msgspec.Raw) -> str:
    """Raw JSON as the text a view stores."""
    return str(raw, "utf-8")


def ids_text(boxes: Sequence[Boxed]) -> str:
    """Boxed UUIDs as a JSON list of hex ids (the views' ``upstream``)."""
    return _encode([box.data for box in boxes]).decode() if boxes else "[]"


_OWN = frozenset(_State.__struct_fields__)
"""Fields set from the event's envelope, not its attributes."""
_RAW_FIELDS = {
    state: frozenset(
        f.name for f in msgspec.structs.fields(state) if f.type is msgspec.Raw
    )
    for state in _STATES.values()
}
"""Per struct, the fields kept as raw JSON (the event holds them as tuples)."""


def from_event(event: Any) -> _State | None:
    """The struct for a domain event object (the library runner's input):
    each field is the event's attribute of that name, in its stored form."""
    state = _STATES.get(type(event))
    if state is None:
        return None
    fields: dict[str, Any] = {}
    for name in state.__struct_fields__:
        if name in _OWN:
            continue
        value = getattr(event, name)
        if name == "upstream":
            value = tuple(Boxed(i.hex) for i in value)
        elif name in _RAW_FIELDS[state]:  # purposes, tags, columns
            value = _raw(value)
        fields[name] = value
    return state(
        key=event.originator_id.hex,
        originator_version=event.originator_version,
        timestamp=Boxed(event.timestamp.isoformat()),
        **fields,
    )


def _raw(values: Sequence[Any]) -> msgspec.Raw:
    """A tuple (of strings, or of Column pairs) as the JSON array it is stored as."""
    return msgspec.Raw(_encode(values))
