"""No raw record value reaches the database, the index files or the logs.

A real `conductor serve` process (debug logging) resolves a batch and runs an
embedding job over a file of distinctive values; then every table of the
database, every file ER wrote and every log line is searched for them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest

from tests.conftest import REPO_ROOT, bearer
from tests.integration.server import cli_env, free_port

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

VALUES = {
    "given_name": "zqxjvortnam",
    "surname": "wybrqlesmith",
    "street_number": "sn4471qq",
    "address_1": "quolltrove street",
    "suburb": "plinkeroovale",
    "postcode": "pc9917zz",
    "date_of_birth": "18011231",
}


def variant(n: int) -> dict[str, str]:
    return {k: (v if k != "given_name" else v[: 8 + n % 3]) for k, v in VALUES.items()}


def database_text(database_url: str, var: Path) -> bytes:
    """Everything the database holds, as bytes to search."""
    if database_url.startswith("sqlite"):
        db = var / "conductor.db"
        return b"".join(
            p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file()
        )
    chunks: list[bytes] = []
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        for (table,) in tables:
            rows = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()
            chunks += [str(row[0]).encode() for row in rows]
    return b"\n".join(chunks)


def serve(
    database_url: str, var: Path, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**cli_env(database_url, var), "CONDUCTOR_LOG_LEVEL": "debug"}
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError("server did not start")


def test_values_never_reach_storage_or_logs(database_url: str, tmp_path: Path) -> None:
    """Resolve, a forced job, a refused batch: not one value is stored or logged."""
    var = tmp_path / "var"
    source = var / "data" / "acme"
    source.mkdir(parents=True)
    header = ",".join(["rec_id", *VALUES])
    rows = [",".join([f"f{n}", *variant(n).values()]) for n in range(40)]
    (source / "people.csv").write_text("\n".join([header, *rows]) + "\n")
    log = tmp_path / "server.log"
    process, base = serve(database_url, var, log)
    auth = bearer("acme", "er.write", "er.read")
    try:
        resolved = httpx.post(
            base + "/v1/er/resolve",
            json={
                "entitySet": "people",
                "records": [{"id": f"b{n}", "fields": variant(n)} for n in range(6)],
            },
            headers=auth,
        )
        assert resolved.status_code == 200, resolved.text
        assert any(p["merged"] for p in resolved.json()["pairs"])
        refused = httpx.post(
            base + "/v1/er/resolve",
            json={
                "entitySet": "people",
                "records": [{"id": "x", "fields": {"nickname": VALUES["surname"]}}],
            },
            headers=auth,
        )
        assert refused.status_code == 422
        job = httpx.post(
            base + "/v1/er/jobs",
            json={"entitySet": "people", "location": "people.csv", "force": True},
            headers=auth,
        ).json()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = httpx.get(f"{base}/v1/er/jobs/{job['id']}", headers=auth).json()
            if status["status"] == "completed":
                break
            time.sleep(0.05)
        assert status["status"] == "completed", status
        near = httpx.get(
            base + "/v1/er/candidates/f1", params={"entitySet": "people"}, headers=auth
        )
        assert near.status_code == 200
        responses = resolved.text + refused.text + near.text
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)

    stored = database_text(database_url, var)
    written = b"".join(p.read_bytes() for p in (var / "er").rglob("*") if p.is_file())
    logs = log.read_bytes()
    assert b"er_resolved" in logs  # the logs were captured at all
    assert b"er_job_finished" in logs
    assert b"b0" in stored  # record ids are kept; values are not
    for value in {v for n in range(40) for v in variant(n).values()}:
        needle = value.encode()
        assert needle not in stored, value
        assert needle not in written, value
        assert needle not in logs, value
        assert value not in responses, value
