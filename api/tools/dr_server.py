"""The API the drill's load goes through: by default a separate server process.

`conductor serve` runs as a child of the drill on a free loopback port, with
its own CONDUCTOR_VAR (database, keys), a JWT secret made for the drill (the
load's token is minted with it), ``CONDUCTOR_DR_ROOT`` pointing at the drill's
pair and ``CONDUCTOR_DR_REGION`` naming the region it serves; the load talks
HTTP to it with keep-alive clients, one per thread. The drill itself records
its Failover events in the caller's log and signs with the caller's keys.
``api="in-process"`` builds the app here and uses litestar's TestClient.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
from litestar.testing import TestClient

from adapters.dr.site import free_port
from adapters.ledger.store import open_ledger
from adapters.signing.keystore import KeyStore
from api.app import create_app
from api.auth import issue_token
from api.settings import PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterator

    from adapters.ledger.store import Ledger
    from api.settings import Settings
    from api.tools.dr_load import DrillOptions

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0


class ApiServer:
    """`conductor serve` as a child process of the drill, on a free loopback port.

    Its stderr (structlog JSON, one ``request_handled`` line per request) goes
    to ``log_path``; stdout (the banner, with a demo token) is dropped. It runs
    in a session of its own, so a Ctrl-C reaches only the drill, which stops
    it: SIGTERM (uvicorn's graceful shutdown), SIGKILL after STOP_TIMEOUT_S.
    """

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed argv
                [
                    sys.executable,
                    "-m",
                    "api.cli",
                    "serve",
                    "--host=127.0.0.1",
                    f"--port={self.port}",
                    "--workers=1",
                    "--init",  # each drill runs its API on a fresh store
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        self.pid = self.process.pid
        self.killed = False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until /readyz answers 200; raise (with the log's tail) if not."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                self.check()
                with suppress(httpx.HTTPError):
                    if client.get("/readyz").status_code == 200:
                        return
                time.sleep(0.1)
        msg = f"the API server at {self.url} was not ready in {timeout}s{self._tail()}"
        raise RuntimeError(msg)

    def check(self) -> None:
        """Raise if the server process has exited."""
        code = self.process.poll()
        if code is not None:
            msg = f"the API server (pid {self.pid}) exited with {code}{self._tail()}"
            raise RuntimeError(msg)

    def stop(self) -> int:
        """Stop the server (idempotent) and return its exit code.

        After a graceful shutdown uvicorn re-raises the SIGTERM it caught, so
        -15 is the normal code; ``killed`` says whether SIGKILL was needed.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def requests_logged(self) -> int:
        """How many requests the server logged (its canonical line per request)."""
        with self.log_path.open(encoding="utf-8", errors="replace") as log:
            return sum('"request_handled"' in line for line in log)

    def _tail(self) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return f"; its log ends:\n{text[-2000:]}" if text else ""


@dataclass
class DrillApi:
    """The load's clients, and the log and keys the drill records and signs with."""

    writer: httpx.Client
    reader: httpx.Client
    jwt_secret: str
    ledger: Ledger
    keys: KeyStore
    server: ApiServer | None = None

    def bearer(self, *, tenant: str, scopes: list[str]) -> dict[str, str]:
        """Headers with a token the API accepts (one hour, subject "drill")."""
        token = issue_token(
            self.jwt_secret,
            tenant=tenant,
            scopes=scopes,
            sub="drill",
            ttl=timedelta(hours=1),
        )
        return {"Authorization": f"Bearer {token}"}

    def where(self) -> str:
        """A progress line naming the API the load goes through."""
        if self.server is None:
            return "load through the in-process client"
        return (
            f"load through the API server at {self.server.url} (pid {self.server.pid})"
        )

    def check(self) -> None:
        """Raise if the server process is gone."""
        if self.server is not None:
            self.server.check()

    def stop(self) -> None:
        """Stop the server, if there is one (the load is over)."""
        if self.server is not None:
            self.server.stop()

    def describe(self) -> dict[str, Any]:
        """What the evidence says about the API the load went through."""
        if self.server is None:
            return {"mode": "in-process", "pid": os.getpid()}
        return {
            "mode": "server",
            "pid": self.server.pid,
            "url": self.server.url,
            "exit_code": self.server.stop(),
            "killed": self.server.killed,
            "requests_logged": self.server.requests_logged(),
        }


@contextmanager
def open_api(
    settings: Settings, options: DrillOptions, *, pair_root: Path, region: str
) -> Iterator[DrillApi]:
    """The API in region, serving the pair at pair_root, for the drill's load."""
    if options.api == "in-process":
        # The database URL made explicit: with a DR root and no URL the app
        # would open its log on the drill's pair, not the caller's log.
        app = create_app(
            msgspec.structs.replace(
                settings,
                database_url=settings.resolved_database_url,
                dr_root=str(pair_root),
                dr_region=region,
            )
        )
        with TestClient(app, timeout=60) as client:
            services = app.state.conductor
            yield DrillApi(
                client,
                client,
                settings.resolved_jwt_secret(),
                services.core.ledger,
                services.core.keys,
            )
        return
    with _served(settings, pair_root=pair_root, region=region) as api:
        yield api


@contextmanager
def _served(settings: Settings, *, pair_root: Path, region: str) -> Iterator[DrillApi]:
    # Its own var (database, keys) and a secret made for this drill: the
    # server shares nothing with the caller's installation but the pair.
    workdir = Path(tempfile.mkdtemp(prefix="api-", dir=pair_root.parent))
    secret = secrets.token_urlsafe(48)
    env = server_env(
        settings,
        var=str(workdir),
        database_url=f"sqlite:///{workdir / 'conductor.db'}",
        data_root="",
        jwt_secret=secret,
        dr_root=str(pair_root),
        dr_region=region,
        log_level="info",
        log_format="json",
        workers="1",
        neo4j_uri="",
        neo4j_password="",
        issue_webhook_url="",
    )
    server = ApiServer(env, workdir / "api.log")
    ledger: Ledger | None = None
    try:
        server.wait_ready()
        ledger = open_ledger(settings.resolved_database_url, pool_size=2)
        keys = KeyStore(settings.var_path / "keys")
        with (
            httpx.Client(base_url=server.url, timeout=60) as writer,
            httpx.Client(base_url=server.url, timeout=60) as reader,
        ):
            yield DrillApi(writer, reader, secret, ledger, keys, server)
    finally:
        server.stop()
        if ledger is not None:
            ledger.close()
        shutil.rmtree(workdir, ignore_errors=True)


def server_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """This environment without CONDUCTOR_*, plus settings (and overrides) as them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    values: dict[str, object] = {**msgspec.structs.asdict(settings), **overrides}
    for name, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        env[f"{PREFIX}{name.upper()}"] = text
    return env
