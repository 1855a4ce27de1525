"""One log format: a real `conductor serve`, its scheduler kept busy, writes
nothing but JSON lines; apscheduler's and uvicorn's lines among them, and the
background jobs' lines carry the job, a run id and the position they act on."""

from __future__ import annotations

import json
import socket
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import bearer, dataset_body
from tests.integration.server import Server

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

BUSY = {
    # a tick every 50 ms cannot keep up: apscheduler skips runs and says so
    "CONDUCTOR_AUTOPILOT_INTERVAL_S": "0.05",
    "CONDUCTOR_METER_FLUSH_S": "0.1",
    "CONDUCTOR_COVERAGE_INTERVAL_S": "0.1",
    "CONDUCTOR_CHECKPOINT_INTERVAL_S": "0.2",
    "CONDUCTOR_CHECKPOINT_EVERY_EVENTS": "1",
    "CONDUCTOR_LOG_LEVEL": "debug",  # apscheduler's INFO lines too
}


def records(path: Path) -> list[dict[str, Any]]:
    """Every line of the output, each parsed as one JSON object."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    return parsed


def test_every_line_is_json_while_the_scheduler_is_busy(tmp_path: Path) -> None:
    """stdout and stderr of a serve with jobs every 50-200 ms, requests, a
    broken HTTP request for uvicorn to complain about, and a clean stop."""
    out = tmp_path / "serve.log"
    database_url = f"sqlite:///{tmp_path / 'var' / 'conductor.db'}"
    (tmp_path / "var" / "data").mkdir(parents=True)
    with out.open("w") as log:
        server = Server(database_url, tmp_path / "var", log, env=BUSY)
        try:
            for name in ("orders", "invoices"):
                created = httpx.post(
                    server.base + "/v1/datasets",
                    json=dataset_body(name),
                    headers=bearer(),
                    timeout=10,
                )
                assert created.status_code == 201, created.text
            with socket.create_connection(("127.0.0.1", server.port)) as raw:
                raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                raw.recv(1024)
            time.sleep(2.0)  # let the jobs run (and be skipped) a while
        finally:
            server.stop()
    parsed = records(out)
    assert len(parsed) > 10
    assert all({"event", "level", "timestamp"} <= set(r) for r in parsed), parsed[:3]
    loggers = {r.get("logger", "") for r in parsed}
    assert any(name.startswith("apscheduler") for name in loggers), loggers
    assert any(name.startswith("uvicorn") for name in loggers), loggers
    signed = [r for r in parsed if r["event"] == "checkpoint_signed"]
    assert signed, {r["event"] for r in parsed}
    for line in signed:
        assert line["job"] == "checkpoint"
        assert isinstance(line["position"], int)
        assert len(line["job_run"]) == 16
    requests = [r for r in parsed if r["event"] == "request_handled"]
    assert [r["status"] for r in requests if r["method"] == "POST"] == [201, 201]
