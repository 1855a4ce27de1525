"""The hash chain's fast path equals the RFC 8785 definition, for any state."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID, uuid4

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.ledger.chain import GENESIS, check_topic, event_hash, reference_hash
from adapters.ledger.transcoder import CanonicalJSONTranscoder

# Values our events can hold: no floats (money and scores are ints/strings), and
# integers within I-JSON's safe range, which is RFC 8785's domain.
keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    min_size=1,
    max_size=12,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5)
    ),
    max_leaves=25,
)
states = st.dictionaries(keys, values, max_size=8)


@settings(max_examples=300, deadline=None)
@given(state=states)
def test_transcoder_output_is_rfc8785_canonical(state: dict[str, object]) -> None:
    """The stored bytes are exactly what RFC 8785 prescribes for the value."""
    encoded = CanonicalJSONTranscoder().encode(state)
    assert encoded == rfc8785.dumps(state)
    assert CanonicalJSONTranscoder().decode(encoded) == state


@settings(max_examples=300, deadline=None)
@given(
    state=states,
    position=st.integers(1, 2**53 - 1),
    version=st.integers(1, 2**53 - 1),
    prev=st.sampled_from([GENESIS, "ab" * 32]),
)
def test_fast_hash_equals_reference_hash(
    state: dict[str, object], position: int, version: int, prev: str
) -> None:
    """Concatenating canonical parts gives the same digest as canonicalising
    the whole."""
    raw = CanonicalJSONTranscoder().encode(state)
    oid = uuid4()
    topic = "domain.dataset:Dataset.Registered"
    assert event_hash(position, oid, version, topic, raw, prev) == reference_hash(
        position, oid, version, topic, raw, prev
    )


def test_transcoder_round_trips_uuids_and_datetimes() -> None:
    """Library transcodings still apply under canonical encoding."""
    transcoder = CanonicalJSONTranscoder()
    value = {"id": UUID(int=7), "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
    encoded = transcoder.encode(value)
    assert json.loads(encoded)["id"] == {
        "_data_": UUID(int=7).hex,
        "_type_": "uuid_hex",
    }
    assert transcoder.decode(encoded) == value


def test_any_byte_change_changes_the_hash() -> None:
    """One flipped byte of state gives a different hash."""
    raw = b'{"a":"hello"}'
    oid = uuid4()
    base = event_hash(1, oid, 1, "t:T", raw, GENESIS)
    for i in range(len(raw)):
        tampered = raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1 :]
        assert event_hash(1, oid, 1, "t:T", tampered, GENESIS) != base


def test_topics_that_would_need_escaping_are_refused() -> None:
    """The fast path assumes plain topics; anything else is an error, not a
    wrong hash."""
    assert check_topic("domain.dataset:Dataset.Registered")
    for bad in ['a"b', "a\\b", "é", "a b"]:
        try:
            check_topic(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
