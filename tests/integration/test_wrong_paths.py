"""Wrong paths fail loudly, and every user error is one line and an exit code.

Each case runs the real `conductor` in a fresh folder without CONDUCTOR_INIT
(the tests' usual environment says it, as `conductor init` would): nothing
is created where the command looked, stderr is one line naming what it
looked at, and no traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.server import free_port

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m api.cli ARGS` from ``cwd`` with no CONDUCTOR_* set but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The whole of stderr, which must be a single line and no traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("log", "verify"),
        ("projections", "status"),
        ("serve", "--port", "0"),
        ("switch", "list"),
    ],
    ids=" ".join,
)
def test_a_command_in_the_wrong_folder_names_the_store_it_did_not_find(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """No ./var/conductor.db here: exit 2, the absolute path and `conductor
    init` named, and nothing created."""
    done = run(tmp_path, *args)
    assert done.returncode == 2
    line = one_line(done)
    assert str(tmp_path / "var" / "conductor.db") in line
    assert "conductor init" in line
    assert not (tmp_path / "var").exists()
    assert "Demo token" not in done.stdout


def test_a_mistyped_database_url_is_not_created(tmp_path: Path) -> None:
    """CONDUCTOR_DATABASE_URL at a file that does not exist: refused, named."""
    url = f"sqlite:///{tmp_path / 'cnoductor.db'}"
    done = run(tmp_path, "log", "verify", env={"CONDUCTOR_DATABASE_URL": url})
    assert done.returncode == 2
    assert str(tmp_path / "cnoductor.db") in one_line(done)
    assert not (tmp_path / "cnoductor.db").exists()


def test_token_issue_never_invents_a_secret(tmp_path: Path) -> None:
    """No CONDUCTOR_JWT_SECRET and no var/jwt-secret: no token, no new secret."""
    done = run(tmp_path, "token", "issue", "--tenant", "acme", "--scope", "audit.read")
    assert done.returncode == 2
    assert done.stdout == ""
    assert str(tmp_path / "var" / "jwt-secret") in one_line(done)
    assert not (tmp_path / "var").exists()


def test_init_creates_the_store_and_an_empty_log_fails_verify(tmp_path: Path) -> None:
    """After `conductor init` the commands find the store; `log verify` on
    its empty log says so and exits 1 unless --allow-empty."""
    made = run(tmp_path, "init")
    assert made.returncode == 0, made.stderr
    assert "initialised a new store" in made.stdout
    assert (tmp_path / "var" / "conductor.db").is_file()
    assert (tmp_path / "var" / "jwt-secret").is_file()
    again = run(tmp_path, "init")
    assert "already initialised" in again.stdout
    empty = run(tmp_path, "log", "verify")
    assert empty.returncode == 1
    assert "empty" in one_line(empty)
    assert "--allow-empty" in empty.stderr
    allowed = run(tmp_path, "log", "verify", "--allow-empty")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("ok: 0 events")
    token = run(tmp_path, "token", "issue", "--tenant", "acme", "--scope", "audit.read")
    assert token.returncode == 0, token.stderr
    assert token.stdout.count(".") == 2  # a JWT signed with the store's secret


def test_an_unreachable_postgres_names_host_and_port_quickly(tmp_path: Path) -> None:
    """A port nothing listens on: one line with host:port, well under 10 s."""
    port = free_port()
    url = f"postgresql://conductor:secret@127.0.0.1:{port}/conductor"
    started = time.monotonic()
    done = run(tmp_path, "projections", "status", env={"CONDUCTOR_DATABASE_URL": url})
    assert time.monotonic() - started < 9
    assert done.returncode == 2
    line = one_line(done)
    assert f"127.0.0.1:{port}" in line
    assert "secret" not in line


def test_a_missing_log_file_is_named(tmp_path: Path) -> None:
    """`audit replay --log /missing`: the path, exit 2, no traceback."""
    missing = tmp_path / "missing.jsonl"
    done = run(tmp_path, "audit", "replay", "--log", str(missing), "--all")
    assert done.returncode == 2
    assert str(missing) in one_line(done)


def test_a_busy_port_suggests_another_before_any_banner(tmp_path: Path) -> None:
    """A second server on a taken port prints no banner or token: one line
    suggesting --port, exit 2."""
    assert run(tmp_path, "init").returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(tmp_path, "serve", "--port", str(port), "--demo-token")
    assert done.returncode == 2
    assert done.stdout == ""
    line = one_line(done)
    assert f"port {port}" in line
    assert "--port" in line


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    """`conductor --version` works anywhere (it needs no store)."""
    done = run(tmp_path, "--version")
    assert done.returncode == 0
    assert done.stdout.startswith("conductor 0.")
