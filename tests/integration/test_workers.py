"""`conductor serve --workers 2`: API processes plus one projection process."""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import bearer, dataset_body
from tests.integration.server import Server

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.slow]
H = bearer("acme")


def processes_of(group: int) -> list[int]:
    """Live (non-zombie) pids in a process group."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry.name}/stat").read()  # noqa: PTH123, SIM115
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] not in {"Z", "X"} and int(fields[2]) == group:
            found.append(int(entry.name))
    return found


def test_two_api_workers_and_a_projector_serve_and_stop_together(
    database_url: str, tmp_path: Path
) -> None:
    """Writes through either worker reach the catalog; Ctrl-C stops every process."""
    with (tmp_path / "server.log").open("w") as log:
        server = Server(database_url, tmp_path / "var", log, workers=2)
        try:
            assert (
                len(processes_of(server.process.pid)) >= 4
            )  # master, 2 workers, projector
            with httpx.Client(base_url=server.base, headers=H, timeout=10) as client:
                positions = [
                    client.post("/v1/datasets", json=dataset_body(f"d{i}")).json()[
                        "position"
                    ]
                    for i in range(20)
                ]
                page = client.get(
                    "/v1/datasets?limit=100",
                    headers={"x-ig-min-position": str(max(positions))},
                )
                assert page.status_code == 200
                assert page.json()["total"] == 20
                assert client.get("/readyz").status_code == 200
        finally:
            os.killpg(server.process.pid, signal.SIGINT)
            server.process.wait(timeout=30)
        deadline = time.monotonic() + 15
        while processes_of(server.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_of(server.process.pid) == []
