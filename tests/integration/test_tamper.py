"""Tampering with stored events is caught by `conductor log verify`, run for real.

The log is written through the app; then rows are changed behind its back with
plain sqlite3 / psycopg, and the CLI runs as a subprocess with only
CONDUCTOR_DATABASE_URL and CONDUCTOR_VAR to go on.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from tests.conftest import REPO_ROOT, bearer, dataset_body

if TYPE_CHECKING:
    from pathlib import Path

    from litestar.testing import TestClient

pytestmark = pytest.mark.integration

BROKEN = re.compile(
    r"broken at position (\d+): (.+) \(([\d,]+) events verified before it\)"
)
OK = re.compile(
    r"ok: ([\d,]+) events checked in [\d.]+s \(([\d,]+|inf) events/s\); "
    r"head position (\d+) hash ([0-9a-f]{64})"
)
RETIRED_TOPIC = "domain.dataset:Dataset.Retired"
TAMPERED = 3
"""The position tampered with: neither the first nor the last event."""


def build_log(client: TestClient[Any]) -> int:
    """Register, amend and retire through the app; returns the event count (6)."""
    auth = bearer("acme")
    ids = []
    for name in ("orders", "customers", "invoices", "refunds"):
        response = client.post("/v1/datasets", json=dataset_body(name), headers=auth)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    amended = client.patch(
        f"/v1/datasets/{ids[0]}",
        json={"description": "Orders v2"},
        headers={**auth, "If-Match": '"1"'},
    )
    assert amended.status_code == 200, amended.text
    retired = client.delete(f"/v1/datasets/{ids[1]}", headers=auth)
    assert retired.status_code == 200, retired.text
    operator = bearer("acme", "audit.platform")  # a read that signs nothing
    head = client.get("/v1/log", headers=operator).json()["head"]
    assert head["position"] == head["events"] == 6
    return 6


def verify(
    database_url: str, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`python -m api.cli log verify ...` on the database, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    env["CONDUCTOR_DATABASE_URL"] = database_url
    env["CONDUCTOR_VAR"] = str(tmp_path / "cli-var")
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "log", "verify", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")


def execute(database_url: str, sqlite_sql: str, postgres_sql: str, *params: Any) -> Any:
    """Run one statement directly on the database; returns the first row, if any."""
    if database_url.startswith("sqlite"):
        db = sqlite3.connect(_sqlite_path(database_url), timeout=30)
        try:
            with db:
                found = db.execute(sqlite_sql, params)
                row = found.fetchone()
                assert found.rowcount != 0 or row is not None
            return row
        finally:
            db.close()
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(postgres_sql, params)
        row = cursor.fetchone() if cursor.description else None
        assert cursor.rowcount != 0
        return row


def state_of(database_url: str, position: int) -> bytes:
    row = execute(
        database_url,
        "SELECT state FROM stored_events WHERE rowid=?",
        "SELECT state FROM stored_events WHERE notification_id=%s",
        position,
    )
    return bytes(row[0])


def assert_broken_at(
    result: subprocess.CompletedProcess[str], position: int, reason: str
) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    match = BROKEN.fullmatch(result.stdout.strip())
    assert match, result.stdout
    assert int(match.group(1)) == position
    assert match.group(2) == reason
    assert int(match.group(3).replace(",", "")) == position - 1


def test_one_changed_byte_in_one_events_state_is_named_by_its_position(
    client: TestClient[Any], database_url: str, tmp_path: Path
) -> None:
    """Flipping one byte of one state makes verify exit 1 naming that position."""
    build_log(client)
    state = state_of(database_url, TAMPERED)
    marker = b'"description":"'
    at = state.index(marker) + len(marker)
    tampered = state[:at] + bytes([state[at] ^ 0x20]) + state[at + 1 :]  # flip case
    assert len(tampered) == len(state)
    assert sum(a != b for a, b in zip(state, tampered, strict=True)) == 1
    json.loads(tampered)  # still a plausible event, just not the one recorded
    execute(
        database_url,
        "UPDATE stored_events SET state=? WHERE rowid=?",
        "UPDATE stored_events SET state=%s WHERE notification_id=%s",
        tampered,
        TAMPERED,
    )

    result = verify(database_url, tmp_path)

    assert_broken_at(result, TAMPERED, "event content does not match its hash")


def test_a_deleted_event_row_is_named_by_its_position(
    client: TestClient[Any], database_url: str, tmp_path: Path
) -> None:
    """Deleting an event (not the last) makes verify exit 1 naming the gap."""
    build_log(client)
    execute(
        database_url,
        "DELETE FROM stored_events WHERE rowid=?",
        "DELETE FROM stored_events WHERE notification_id=%s",
        TAMPERED,
    )

    result = verify(database_url, tmp_path)

    assert_broken_at(result, TAMPERED, "event is missing from the log")


def test_a_swapped_topic_is_named_by_its_position(
    client: TestClient[Any], database_url: str, tmp_path: Path
) -> None:
    """Giving one event another event's topic makes verify exit 1 naming it."""
    build_log(client)
    execute(
        database_url,
        "UPDATE stored_events SET topic=? WHERE rowid=?",
        "UPDATE stored_events SET topic=%s WHERE notification_id=%s",
        RETIRED_TOPIC,
        TAMPERED,
    )

    result = verify(database_url, tmp_path)

    assert_broken_at(result, TAMPERED, "event content does not match its hash")


def test_an_untampered_log_verifies_and_reports_its_rate(
    client: TestClient[Any], database_url: str, tmp_path: Path
) -> None:
    """An untouched log exits 0 with every event checked and an events/s figure."""
    events = build_log(client)
    head_hash = client.get("/v1/log", headers=bearer("acme", "audit.platform")).json()[
        "head"
    ]["hash"]

    result = verify(database_url, tmp_path)

    assert result.returncode == 0, (result.stdout, result.stderr)
    match = OK.fullmatch(result.stdout.strip())
    assert match, result.stdout
    assert int(match.group(1)) == events
    assert "events/s" in result.stdout
    assert int(match.group(3)) == events
    assert match.group(4) == head_hash


def test_verify_from_a_position_checks_only_the_events_from_there_on(
    client: TestClient[Any], database_url: str, tmp_path: Path
) -> None:
    """`--from N` exits 0 and checks head - N + 1 events."""
    head = build_log(client)
    start = 4

    result = verify(database_url, tmp_path, "--from", str(start))

    assert result.returncode == 0, (result.stdout, result.stderr)
    match = OK.fullmatch(result.stdout.strip())
    assert match, result.stdout
    assert int(match.group(1)) == head - start + 1
    assert int(match.group(3)) == head


def test_json_output_reports_ok_checked_and_broken_at(
    client: TestClient[Any], database_url: str, tmp_path: Path
) -> None:
    """`--json` parses, with ok/checked/brokenAt, before and after tampering."""
    events = build_log(client)

    clean = verify(database_url, tmp_path, "--json")

    assert clean.returncode == 0, (clean.stdout, clean.stderr)
    report = json.loads(clean.stdout)
    assert report["ok"] is True
    assert report["checked"] == events
    assert report["brokenAt"] is None
    assert report["headPosition"] == events

    execute(
        database_url,
        "UPDATE stored_events SET topic=? WHERE rowid=?",
        "UPDATE stored_events SET topic=%s WHERE notification_id=%s",
        RETIRED_TOPIC,
        TAMPERED,
    )
    broken = verify(database_url, tmp_path, "--json")

    assert broken.returncode == 1, (broken.stdout, broken.stderr)
    report = json.loads(broken.stdout)
    assert report["ok"] is False
    assert report["brokenAt"] == TAMPERED
    assert report["checked"] == TAMPERED - 1
    assert report["reason"] == "event content does not match its hash"
