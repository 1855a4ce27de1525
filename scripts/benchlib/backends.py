"""Fresh databases for bench_core: SQLite temp files, or databases on one
throwaway PostgreSQL cluster (adapters.sql.pgcluster.PgCluster) per run.

Plain module for scripts/bench_core (put on sys.path by the script); product
code never imports it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class SQLiteBackend:
    name = "sqlite"

    def __init__(self, root: Path) -> None:
        self.root = root / "sqlite"
        self.root.mkdir(parents=True, exist_ok=True)
        self.version = sqlite3.sqlite_version

    def __enter__(self) -> SQLiteBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def path(self, db: str) -> Path:
        return self.root / f"{db}.db"

    def create(self, db: str) -> str:
        """URL of a new, empty database file."""
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path(db)}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{self.path(db)}"

    def copy(self, src: str, dst: str) -> str:
        """A copy of database ``src`` as ``dst`` (sqlite3 online backup)."""
        url = self.create(dst)
        with contextlib.closing(sqlite3.connect(self.path(src))) as a, \
                contextlib.closing(sqlite3.connect(self.path(dst))) as b:
            a.backup(b)
        return url

    def plain_env(self, db: str) -> dict[str, str]:
        """The stock eventsourcing library's settings for its own fresh database."""
        self.create(db)
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.path(db))}

    @staticmethod
    def cancel(view: Any, db: str) -> None:
        """Interrupt whatever the view's SQLite connections are running."""
        del db
        for conn in list(view.datastore.pool._in_use.values()):  # noqa: SLF001
            conn._sqlite_conn.interrupt()  # noqa: SLF001

    def size_mb(self, db: str) -> float:
        return sum(Path(f"{self.path(db)}{s}").stat().st_size
                   for s in ("", "-wal") if Path(f"{self.path(db)}{s}").exists()) / 1e6


class PostgresBackend:
    name = "postgres"

    def __init__(self, root: Path) -> None:
        from adapters.sql.pgcluster import PgCluster  # noqa: PLC0415

        self.dir = root / "pg"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.cluster = PgCluster(self.dir / "data")
        self.version = ""

    def __enter__(self) -> PostgresBackend:
        self.cluster.__enter__()
        with self._admin() as conn:
            self.version = str(conn.execute("SHOW server_version").fetchone()[0])
        return self

    def __exit__(self, *exc: object) -> None:
        self.cluster.__exit__(None, None, None)

    def _admin(self) -> Any:
        import psycopg  # noqa: PLC0415

        return psycopg.connect(self.cluster.url(), autocommit=True)

    def create(self, db: str) -> str:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db}"')
        return self.cluster.url(db)

    def copy(self, src: str, dst: str) -> str:
        """A copy of ``src`` (CREATE DATABASE ... TEMPLATE; needs src idle)."""
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dst}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{dst}" TEMPLATE "{src}"')
        return self.cluster.url(dst)

    def plain_env(self, db: str) -> dict[str, str]:
        url = urlsplit(self.create(db))
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": db,
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port),
            "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_PASSWORD": "",
        }

    def cancel(self, view: Any, db: str) -> None:
        """Cancel every running statement in database ``db`` (any client)."""
        del view
        with self._admin() as conn:
            conn.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname=%s "
                "AND state='active' AND pid<>pg_backend_pid()", (db,))

    def size_mb(self, db: str) -> float:
        with self._admin() as conn:
            return float(conn.execute("SELECT pg_database_size(%s)", (db,))
                         .fetchone()[0]) / 1e6

    def settings(self) -> dict[str, str]:
        with self._admin() as conn:
            rows = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('fsync','synchronous_commit','shared_buffers','wal_level',"
                "'max_connections')"
            ).fetchall()
        return {r[0]: r[1] for r in rows}
