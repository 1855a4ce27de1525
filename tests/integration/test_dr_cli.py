"""`conductor dr up|status|down|drill` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.dr.health import wait_fresh
from adapters.dr.pair import RegionPair
from adapters.dr.roles import promote, rewind_as_standby, switchover
from tests.conftest import REPO_ROOT
from tests.integration.dr_support import dr_cli

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _postgres_under(path: Path) -> list[int]:
    needle = str(path).encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (Path(entry.path) / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found


def test_up_status_down_leave_nothing_behind(tmp_path: Path) -> None:
    """up starts A (primary) and B (standby) with a daemon; down removes it all."""
    var = tmp_path / "var"
    var.mkdir()
    os.chmod(tmp_path, 0o755)  # noqa: PTH101 - postgres must traverse it
    os.chmod(var, 0o755)  # noqa: PTH101
    root = var / "dr"
    try:
        up = dr_cli(var, "up", "--async", "--link-delay-ms", "5")
        assert up.returncode == 0, up.stderr
        assert "A primary" in up.stdout
        pair = RegionPair.load(root)
        assert not pair.state.sync
        assert pair.state.daemon_pid
        status = dr_cli(var, "status", "--json")
        assert status.returncode == 0, status.stderr
        regions = json.loads(status.stdout)["regions"]
        assert [(r["region"], r["role"]) for r in regions] == [
            ("A", "primary"),
            ("B", "standby"),
        ]
        again = dr_cli(var, "up")
        assert again.returncode == 2
    finally:
        down = dr_cli(var, "down")
    assert down.returncode == 0, down.stderr
    assert not root.exists()
    assert _postgres_under(root) == []


def test_switchover_drill_prints_signed_evidence_as_json(tmp_path: Path) -> None:
    """--json prints the evidence with the issue's fields; the file verifies."""
    var = tmp_path / "var"
    var.mkdir()
    os.chmod(tmp_path, 0o755)  # noqa: PTH101 - postgres must traverse it
    os.chmod(var, 0o755)  # noqa: PTH101
    drill = dr_cli(
        var,
        "drill",
        "--mode",
        "switchover",
        "--json",
        "--baseline-s",
        "0.5",
        "--window-s",
        "0.5",
        "--write-rate",
        "20",
        "--read-rate",
        "40",
    )
    assert drill.returncode in {0, 1}, drill.stderr  # 1: a target missed
    evidence = json.loads(drill.stdout)
    for field in (
        "rto_ms",
        "rpo_commands",
        "rpo_ms",
        "read_p95_baseline_ms",
        "read_p95_window_ms",
        "evidence_path",
    ):
        assert field in evidence
    assert evidence["mode"] == "switchover"
    assert evidence["rpo_commands"] == 0
    # The load went over HTTP to a `conductor serve` process the drill started
    # and stopped: not this process, not the CLI's, and gone now.
    api = evidence["api"]
    assert api["mode"] == "server"
    assert not api["killed"]  # SIGTERM sufficed (uvicorn exits with -15 then)
    assert api["exit_code"] in {0, -15}
    assert not Path(f"/proc/{api['pid']}").exists()
    log = Path(api["log"]).read_text().splitlines()
    handled = [json.loads(line) for line in log if '"request_handled"' in line]
    assert len(handled) == api["requests_logged"] > evidence["writes_acknowledged"]
    assert {(line["method"], line["route"]) for line in handled} >= {
        ("POST", "/v1/dr/commands"),
        ("GET", "/v1/dr/commands/{key}"),
    }
    assert drill.returncode == (0 if all(evidence["met"].values()) else 1)
    verify = subprocess.run(
        [sys.executable, "-m", "api.cli", "verify", evidence["evidence_path"]],
        cwd=REPO_ROOT,
        env={**os.environ, "CONDUCTOR_VAR": str(var)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout
    assert not list(var.glob("dr-drill-*"))  # the drill's clusters are gone
    assert _postgres_under(var) == []


def _beats(pair: RegionPair, region: str) -> int:
    with pair.connect(region) as conn:
        row = conn.execute("SELECT beats FROM dr_heartbeat WHERE id = 1").fetchone()
    assert row is not None
    return int(row[0])


def _wait_beating(pair: RegionPair, region: str, log: Path) -> None:
    """Wait until someone (the daemon) advances the heartbeat on region."""
    first = _beats(pair, region)
    deadline = time.monotonic() + 10
    while _beats(pair, region) < first + 2:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_daemon_follows_a_failover_made_by_another_process(tmp_path: Path) -> None:
    """After this process promotes B, the daemon beats on B and relays B to A.

    Then the switchover back to A (also from here) moves the heartbeat again.
    """
    var = tmp_path / "var"
    var.mkdir()
    os.chmod(tmp_path, 0o755)  # noqa: PTH101 - postgres must traverse it
    os.chmod(var, 0o755)  # noqa: PTH101
    root = var / "dr"
    try:
        up = dr_cli(var, "up", "--sync")
        assert up.returncode == 0, up.stderr
        pair = RegionPair.load(root)
        _wait_beating(pair, "A", root / "daemon.log")
        pair.cluster("A").kill()
        assert promote(pair, "B", relay=None).epoch == 2  # not the daemon's relay
        _wait_beating(pair, "B", root / "daemon.log")
        # A rewound as B's standby replicates through the daemon's relay, so
        # the relay points at B now; A replays B's fresh heartbeats.
        rewind_as_standby(pair, "A")
        wait_fresh(pair, timeout=10)
        status = dr_cli(var, "status", "--json")
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert shown["epoch"] == 2
        assert [(r["region"], r["role"]) for r in shown["regions"]] == [
            ("A", "standby"),
            ("B", "primary"),
        ]
        assert shown["regions"][0]["lag_ms"] < 1000  # a late beat reads as a few ms
        switchover(pair, "A", relay=None)
        _wait_beating(pair, "A", root / "daemon.log")
        wait_fresh(pair, timeout=10)  # B, rewound, replicates from A again
        assert "dr_state_followed" in (root / "daemon.log").read_text()
    finally:
        down = dr_cli(var, "down")
    assert down.returncode == 0, down.stderr
    assert _postgres_under(root) == []
