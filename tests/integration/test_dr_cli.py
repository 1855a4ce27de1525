"""`conductor dr up|status|down|drill` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.dr.pair import RegionPair
from tests.conftest import REPO_ROOT, SECRET

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _conductor(var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "dr", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "CONDUCTOR_VAR": str(var), "CONDUCTOR_JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


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
        up = _conductor(var, "up", "--async", "--link-delay-ms", "5")
        assert up.returncode == 0, up.stderr
        assert "A primary" in up.stdout
        pair = RegionPair.load(root)
        assert not pair.state.sync
        assert pair.state.daemon_pid
        status = _conductor(var, "status", "--json")
        assert status.returncode == 0, status.stderr
        regions = json.loads(status.stdout)["regions"]
        assert [(r["region"], r["role"]) for r in regions] == [
            ("A", "primary"),
            ("B", "standby"),
        ]
        again = _conductor(var, "up")
        assert again.returncode == 2
    finally:
        down = _conductor(var, "down")
    assert down.returncode == 0, down.stderr
    assert not root.exists()
    assert _postgres_under(root) == []


def test_switchover_drill_prints_signed_evidence_as_json(tmp_path: Path) -> None:
    """--json prints the evidence with the issue's fields; the file verifies."""
    var = tmp_path / "var"
    var.mkdir()
    os.chmod(tmp_path, 0o755)  # noqa: PTH101 - postgres must traverse it
    os.chmod(var, 0o755)  # noqa: PTH101
    drill = _conductor(
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
