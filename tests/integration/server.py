"""Run `conductor serve` as a real process for tests that need one (crash, CLI)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import IO, TYPE_CHECKING

import httpx

from tests.conftest import REPO_ROOT, SECRET

if TYPE_CHECKING:
    from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(database_url: str, var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    env.update(
        CONDUCTOR_DATABASE_URL=database_url,
        CONDUCTOR_VAR=str(var),
        CONDUCTOR_JWT_SECRET=SECRET,
        CONDUCTOR_LOG_LEVEL="warning",
        CONDUCTOR_PROJECTION_POLL_S="0.05",
        # every test starts on a fresh store: say so, as `conductor init`
        # would (test_wrong_paths.py drops it to see the refusals)
        CONDUCTOR_INIT="1",
    )
    return env


def cli(database_url: str, var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m api.cli ARGS` against a database; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=cli_env(database_url, var),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class Server:
    """A `conductor serve` process on a free port."""

    def __init__(
        self,
        database_url: str,
        var: Path,
        log: IO[str],
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                *args,
            ],
            env={**cli_env(database_url, var), **(env or {})},
            cwd=REPO_ROOT,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = f"server exited with {self.process.returncode}"
                raise RuntimeError(msg)
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        msg = "server did not become healthy"
        raise RuntimeError(msg)

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown hooks, no flushes."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """A graceful stop (SIGINT, as Ctrl-C would)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
