"""The exported log file round-trips every event byte for byte, for any state.

An auditor's replay recomputes each chain hash from the file; if writing the
file and reading it back changed one byte of a state (key order, escapes,
non-ASCII text), a genuine log would look tampered with.
"""

from __future__ import annotations

import io
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.audit.auditor import check_chain, read_log, write_log
from adapters.ledger.chain import GENESIS, row_hash
from adapters.ledger.transcoder import CanonicalJSONTranscoder
from application.ports import LogEntry
from tests.unit.test_chain import states


def chained(states_: list[dict[str, object]]) -> list[LogEntry]:
    entries, prev = [], GENESIS
    for position, state in enumerate(states_, start=1):
        raw = CanonicalJSONTranscoder().encode(state)
        oid = uuid4()
        digest = row_hash(position, str(oid), 1, "t.m:E", raw, prev)
        entries.append(LogEntry(position, oid, 1, "t.m:E", raw, prev, digest))
        prev = digest
    return entries


@settings(max_examples=200, deadline=None)
@given(batch=st.lists(states, min_size=1, max_size=5))
def test_a_written_log_reads_back_to_the_same_bytes_and_chain(
    batch: list[dict[str, object]],
) -> None:
    entries = chained(batch)
    out = io.StringIO()
    assert write_log(entries, out) == len(entries)

    records = list(read_log(out.getvalue().splitlines()))

    assert [r.state for r in records] == [e.state for e in entries]
    assert check_chain(records) == (len(entries), None)


def test_a_changed_state_in_the_file_is_named_by_position() -> None:
    entries = chained([{"a": 1}, {"b": "x"}, {"c": [1, 2]}])
    out = io.StringIO()
    write_log(entries, out)
    lines = out.getvalue().splitlines()
    lines[2] = lines[2].replace('"x"', '"y"')

    checked, broken = check_chain(read_log(lines))

    assert checked == 1
    assert broken == "position 2: content does not match its hash"


def test_a_file_that_is_not_a_log_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Conductor log file"):
        list(read_log(['{"hello": 1}']))
    with pytest.raises(ValueError, match="line 2: not a log record"):
        list(read_log(['{"format": "conductor-log/v1"}', '{"position": "x"}']))
