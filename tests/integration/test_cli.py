"""The `conductor` command, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import jwt
import pytest

from tests.conftest import REPO_ROOT, SECRET
from tests.integration.server import Server, cli, cli_env

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'conductor.db'}"


def test_token_issue_prints_only_a_token_with_the_claims(
    sqlite_url: str, tmp_path: Path
) -> None:
    """stdout is the bare JWT: sub, tenant, the repeated scopes and the ttl."""
    done = cli(
        sqlite_url,
        tmp_path,
        "token",
        "issue",
        "--tenant",
        "acme",
        "--scope",
        "catalog.read",
        "--scope",
        "catalog.write",
        "--ttl",
        "90m",
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert "\n" not in token
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["tenant"] == "acme"
    assert claims["scopes"] == ["catalog.read", "catalog.write"]
    assert claims["exp"] - claims["iat"] == 90 * 60


def test_token_issue_refuses_unknown_scopes(sqlite_url: str, tmp_path: Path) -> None:
    """A typo in a scope is an error (exit 2) that lists the known scopes."""
    done = cli(
        sqlite_url,
        tmp_path,
        "token",
        "issue",
        "--tenant",
        "acme",
        "--scope",
        "catalog.reed",
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "catalog.read" in done.stderr


def test_token_issue_grants_operator_scopes_only_with_the_flag(
    sqlite_url: str, tmp_path: Path
) -> None:
    """audit.platform reaches every tenant: without --operator it is exit 2."""
    args = ("token", "issue", "--tenant", "ops", "--scope", "audit.platform")
    refused = cli(sqlite_url, tmp_path, *args)
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "--operator" in refused.stderr
    granted = cli(sqlite_url, tmp_path, *args, "--operator")
    assert granted.returncode == 0, granted.stderr
    claims = jwt.decode(granted.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["scopes"] == ["audit.platform"]


@pytest.mark.parametrize("demo", [False, True])
def test_serve_prints_a_token_only_when_asked(
    sqlite_url: str, tmp_path: Path, demo: bool
) -> None:
    """A plain `conductor serve` writes no bearer token anywhere in its output;
    --demo-token (what scripts/run passes) prints one for tenant demo."""
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = Server(
            sqlite_url, tmp_path, log, args=("--demo-token",) if demo else ()
        )
        server.stop()
    # not a terminal: the banner comes as JSON lines, one per banner line
    output = "\n".join(
        json.loads(line).get("line", line) if line.startswith("{") else line
        for line in log_path.read_text().splitlines()
    )
    assert "Conductor on" in output
    tokens = [w for w in output.split() if w.startswith(("eyJ", "TOKEN=eyJ"))]
    if not demo:
        assert tokens == [], output
        return
    assert len(tokens) == 1, output
    claims = jwt.decode(tokens[0].removeprefix("TOKEN="), SECRET, algorithms=["HS256"])
    assert claims["tenant"] == "demo"
    assert "audit.platform" not in claims["scopes"]


def test_projections_status_and_rebuild_on_an_empty_log(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Status lists the catalog; rebuild of an unknown projection is exit 2."""
    status = cli(sqlite_url, tmp_path, "projections", "status")
    assert status.returncode == 0, status.stderr
    assert "catalog" in status.stdout
    unknown = cli(sqlite_url, tmp_path, "projections", "rebuild", "nope")
    assert unknown.returncode == 2
    known = unknown.stderr.split("known: ")[1].split(", ")
    assert "catalog" in [name.strip() for name in known]


def test_a_bad_setting_is_reported_not_raised(sqlite_url: str, tmp_path: Path) -> None:
    """CONDUCTOR_PORT=abc gives a one-line error and exit 2, not a traceback."""
    env = {**cli_env(sqlite_url, tmp_path), "CONDUCTOR_PORT": "abc"}
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "projections", "status"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "CONDUCTOR_" in done.stderr
    assert "Traceback" not in done.stderr
