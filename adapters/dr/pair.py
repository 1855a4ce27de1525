"""Two PostgreSQL 15 regions on loopback: a primary and a streaming standby.

``RegionPair.up()`` creates a CA (adapters.dr.tls), initialises region A as the
primary (TLS only, ``hostssl ... cert``, ``wal_log_hints=on``), bootstraps the
DR tables, makes region B with ``pg_basebackup -R`` through the link relay and
starts it as a hot standby. Roles, ports and the epoch are kept in
``dr.json`` under the root so the CLI, a daemon and the API share one picture.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import structlog

from adapters.dr.tls import CertFiles, CertificateAuthority
from adapters.sql.pgcluster import PgCluster, find_bindir

if TYPE_CHECKING:
    from collections.abc import Iterator

log = structlog.get_logger("conductor.dr")

REGIONS = ("A", "B")
STANDBY_NAME = "dr_standby"
_STATE = "dr.json"
_HBA = (
    "# managed by adapters.dr.pair: TLS with client certificates, nothing else\n"
    "hostssl all all 127.0.0.1/32 cert\n"
    "hostssl replication all 127.0.0.1/32 cert\n"
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS dr_heartbeat (
    id int PRIMARY KEY, at timestamptz NOT NULL, beats bigint NOT NULL);
INSERT INTO dr_heartbeat VALUES (1, clock_timestamp(), 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS dr_epoch (id int PRIMARY KEY, epoch bigint NOT NULL);
INSERT INTO dr_epoch VALUES (1, 1) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS dr_commands (
    tenant text NOT NULL, key text NOT NULL, payload_sha256 text NOT NULL,
    epoch bigint NOT NULL, region text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (tenant, key));
"""


@dataclass
class PairState:
    """What dr.json records about a pair."""

    ports: dict[str, int]
    relay_port: int
    primary: str = "A"
    sync: bool = True
    link_delay_ms: int = 0
    daemon_pid: int | None = None
    sync_active: bool = True
    """False while the standby is gone: a primary waiting on it would hang."""
    epoch: int = 1

    @property
    def standby(self) -> str:
        return "B" if self.primary == "A" else "A"


class RegionPair:
    """The two clusters of a DR pair rooted at one directory."""

    def __init__(self, root: Path, state: PairState) -> None:
        self.root = Path(os.path.abspath(root))  # noqa: PTH100
        self.state = state
        self.tls = self.root / "tls"

    # -- files and connections -------------------------------------------

    @classmethod
    def load(cls, root: Path) -> RegionPair:
        """The pair recorded in root/dr.json."""
        raw = json.loads((root / _STATE).read_text(encoding="utf-8"))
        return cls(root, PairState(**raw))

    def save(self) -> None:
        tmp = self.root / f".{_STATE}.tmp"
        tmp.write_text(json.dumps(asdict(self.state), indent=1), encoding="utf-8")
        tmp.replace(self.root / _STATE)

    def cluster(self, region: str) -> PgCluster:
        """The PgCluster of a region, with the settings its role needs."""
        return PgCluster(
            self.root / region / "data",
            port=self.state.ports[region],
            settings=self._settings(primary=region == self.state.primary),
        )

    def certs(self, who: str) -> CertFiles:
        """Certificate files of 'app' (this process) or 'replication' (postgres)."""
        return CertFiles(
            cert=self.tls / f"{who}.crt",
            key=self.tls / f"{who}.key",
            ca=self.tls / "ca.crt",
        )

    def conninfo(
        self, region: str, *, port: int | None = None, who: str = "app"
    ) -> str:
        """A libpq conninfo with verify-full TLS and the client certificate."""
        files = self.certs(who)
        return (
            f"host=127.0.0.1 port={port or self.state.ports[region]} user=postgres "
            f"dbname=postgres sslmode=verify-full sslrootcert={files.ca} "
            f"sslcert={files.cert} sslkey={files.key} connect_timeout=2"
        )

    def connect(self, region: str, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(region), autocommit=True, **kwargs)

    # -- lifecycle -------------------------------------------------------------

    def up(self) -> None:
        """Create the CA, the primary, the schema and the standby; start both."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self._make_certs()
        primary = self.cluster("A")
        primary.init()
        (primary.data_dir / "pg_hba.conf").write_text(_HBA, encoding="utf-8")
        primary.start()
        with self.connect("A") as conn:
            conn.execute("SET synchronous_commit = local")  # no standby yet
            conn.execute(SCHEMA)
        self.save()
        self._base_backup("B")
        self.cluster("B").start()
        self.wait_streaming()
        log.info(
            "dr_pair_up", primary="A", sync=self.state.sync, ports=self.state.ports
        )

    def down(self) -> None:
        """Stop and remove both regions (the second even if the first fails)."""
        failures: list[str] = []
        # The standby first: a primary's shutdown waits for its walsenders.
        for region in (self.state.standby, self.state.primary):
            try:
                self.cluster(region).destroy()
            except RuntimeError as error:
                failures.append(f"{region}: {error}")
        if failures:
            raise RuntimeError("; ".join(failures))

    def wait_streaming(self, timeout: float = 30.0) -> None:
        """Wait until the primary sees its standby streaming."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.connect(self.state.primary) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_replication "
                        "WHERE state = 'streaming'"
                    ).fetchone()
                if row and row[0]:
                    return
            except psycopg.OperationalError:
                pass
            time.sleep(0.05)
        msg = f"standby {self.state.standby} did not start streaming in {timeout}s"
        raise RuntimeError(msg)

    # -- internals -------------------------------------------------------------

    def _settings(self, *, primary: bool) -> dict[str, str]:
        files = self.certs("server")
        sync = self.state.sync and self.state.sync_active and primary
        upstream = self.conninfo(
            self.state.primary, port=self.state.relay_port, who="replication"
        )
        role = (
            {}
            if primary
            else {"primary_conninfo": f"{upstream} application_name={STANDBY_NAME}"}
        )
        return {
            **role,
            "wal_level": "replica",
            "max_wal_senders": "10",
            "wal_log_hints": "on",
            # pg_rewind reads the old primary's WAL back to the divergence:
            # its crash-recovery checkpoint must not recycle those segments.
            "wal_keep_size": "256MB",
            "hot_standby": "on",
            "wal_retrieve_retry_interval": "100ms",
            "wal_receiver_timeout": "5s",
            "wal_sender_timeout": "5s",
            "ssl": "on",
            "ssl_cert_file": str(files.cert),
            "ssl_key_file": str(files.key),
            "ssl_ca_file": str(files.ca),
            "synchronous_standby_names": STANDBY_NAME if sync else "",
            "synchronous_commit": "remote_apply" if sync else "local",
        }

    def _make_certs(self) -> None:
        ca = CertificateAuthority(self.tls)
        ca.issue("server", common_name="127.0.0.1", server=True)
        ca.issue("replication", common_name="postgres", server=False)
        ca.issue("app", common_name="postgres", server=False)
        for name in ("server.crt", "server.key", "replication.crt", "replication.key"):
            PgCluster.give_to_server(self.tls / name)

    def _base_backup(self, region: str) -> None:
        target = self.cluster(region)
        target.data_dir.parent.mkdir(parents=True, exist_ok=True)
        PgCluster.give_to_server(target.data_dir.parent)
        source = self.conninfo(
            self.state.primary, port=self.state.relay_port, who="replication"
        )
        result = target.run_tool(
            [
                str(find_bindir() / "pg_basebackup"),
                "-D",
                str(target.data_dir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
                "-d",
                f"{source} application_name={STANDBY_NAME}",
            ]
        )
        if result.returncode != 0:
            msg = f"pg_basebackup failed: {result.stderr.strip()}"
            raise RuntimeError(msg)
        target.init()  # rewrites the managed block: the standby's port and role

    def clusters(self) -> Iterator[PgCluster]:
        for region in REGIONS:
            yield self.cluster(region)
