"""Integration tests for adapters.sql.pgcluster against real PostgreSQL binaries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from adapters.sql.pgcluster import PgCluster

if TYPE_CHECKING:
    from collections.abc import Iterator

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _pids_mentioning(path: Path) -> list[int]:
    """Pids of live processes whose command line contains path."""
    needle = str(path).encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found


def _live(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def _children(pid: int) -> list[int]:
    """Live direct children of pid."""
    kids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in {"Z", "X"}:
            kids.append(int(entry.name))
    return kids


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PgCluster]:
    pg = PgCluster(tmp_path / "pg")
    try:
        yield pg
    finally:
        pg.destroy()


def test_start_query_create_database_stop(cluster: PgCluster) -> None:
    cluster.init()
    cluster.start()
    assert cluster.is_running()
    assert cluster.url() == f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"

    with psycopg.connect(cluster.url()) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO t VALUES (%s, %s)", (1, "héllo"))
        conn.commit()
        assert conn.execute("SELECT id, name FROM t").fetchall() == [(1, "héllo")]
        assert conn.execute("SHOW max_connections").fetchone() == ("200",)
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)

    url = cluster.create_database("x")
    assert url == cluster.url("x")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("x",)

    cluster.stop()
    assert not cluster.is_running()
    assert _pids_mentioning(cluster.data_dir) == []


def test_kill_leaves_no_process_and_cluster_recovers(cluster: PgCluster) -> None:
    cluster.init()
    cluster.start()
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE survivors (v text)")
        conn.execute("INSERT INTO survivors VALUES ('committed before the crash')")
    holder = psycopg.connect(cluster.url())  # a live backend that must die too
    try:
        postmasters = _pids_mentioning(cluster.data_dir)
        assert len(postmasters) == 1
        children = _children(postmasters[0])
        assert children, "expected background workers and a backend"

        cluster.kill()

        assert _pids_mentioning(cluster.data_dir) == []
        assert [pid for pid in [*postmasters, *children] if _live(pid)] == []
        assert not cluster.is_running()
    finally:
        holder.close()

    log_before = cluster.log_file.read_text()
    cluster.start()
    assert cluster.is_running()
    recovered = cluster.log_file.read_text()[len(log_before) :]
    assert "not properly shut down" in recovered
    with psycopg.connect(cluster.url()) as conn:
        assert conn.execute("SELECT v FROM survivors").fetchall() == [
            ("committed before the crash",)
        ]


def test_context_manager_cleans_up(tmp_path: Path) -> None:
    with PgCluster(tmp_path / "cm", settings={"work_mem": "8MB"}) as pg:
        with psycopg.connect(pg.url()) as conn:
            assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
        data_dir = pg.data_dir
    assert not data_dir.exists()
    assert _pids_mentioning(data_dir) == []


def test_cli_start_is_idempotent_and_stop_removes_dir(tmp_path: Path) -> None:
    directory = tmp_path / "cli"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "adapters.sql.pgcluster",
                *args,
                "--dir",
                str(directory),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    try:
        first = cli("start")
        assert first.returncode == 0, first.stderr
        url = first.stdout.strip()
        assert first.stdout == url + "\n"
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        again = cli("start")
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        stopped = cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not directory.exists()
    assert _pids_mentioning(directory) == []
    assert cli("stop").returncode == 0
