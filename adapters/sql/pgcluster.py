"""Throwaway PostgreSQL clusters for tests and drills (stdlib only, Linux only).

A :class:`PgCluster` owns one data directory: ``init()`` runs ``initdb``,
``start()``/``stop()`` drive ``pg_ctl``, ``kill()`` simulates a crash by
SIGKILLing the postmaster and every descendant, and ``destroy()`` removes it
all.  Several clusters can live side by side (e.g. a primary and a standby).

The server listens on TCP only (``unix_socket_directories = ''``) with
``trust`` authentication, so ``url()`` is all a client needs.  PostgreSQL
refuses to run as root; when ``os.geteuid() == 0`` every server-side command
is wrapped in ``runuser -u postgres --``, the data directory and log file are
chown'd to ``postgres`` and, where needed, the search (``o+x``) bit is added
to ancestor directories so that ``postgres`` can reach the data directory.

The module is also a command line tool used by ``scripts/test``::

    python -m adapters.sql.pgcluster start --dir D [--port P]   # prints the URL
    python -m adapters.sql.pgcluster stop --dir D               # stops, removes D
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Self

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

__all__ = ["DEFAULT_SETTINGS", "PgCluster", "find_bindir", "main"]

POSTGRES_USER: Final = "postgres"
START_TIMEOUT: Final = 30
STOP_TIMEOUT: Final = 30
KILL_TIMEOUT: Final = 10.0
DEFAULT_SETTINGS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "max_connections": "200",
        "shared_buffers": "128MB",
        "fsync": "on",
        "unix_socket_directories": "",
    }
)

_STOP_MODES: Final = frozenset({"smart", "fast", "immediate"})
_SETTING_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_CONF_BEGIN: Final = "# --- BEGIN adapters.sql.pgcluster managed settings ---"
_CONF_END: Final = "# --- END adapters.sql.pgcluster managed settings ---"
_ADDR_IN_USE: Final = "Address already in use"
_PORT_ATTEMPTS: Final = 3
_IPC_RMID: Final = 0
_STATE_FILE: Final = "pgcluster.json"
_DATA_SUBDIR: Final = "data"
_RESERVED_SETTINGS: Final = frozenset({"port", "listen_addresses"})


@functools.cache
def find_bindir() -> Path:
    """Return the directory holding initdb, pg_ctl and postgres."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    candidates.extend(
        sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=_version_key,
            reverse=True,
        )
    )
    for bindir in candidates:
        if all(
            os.access(bindir / b, os.X_OK) for b in ("postgres", "initdb", "pg_ctl")
        ):
            return bindir
    msg = (
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via "
        "`pg_config --bindir` or /usr/lib/postgresql/*/bin; install Debian's "
        "postgresql-15: apt-get install -y --no-install-recommends "
        "postgresql-15 postgresql-client-15"
    )
    raise RuntimeError(msg)


def _version_key(bindir: Path) -> tuple[int, ...]:
    """Sort key for /usr/lib/postgresql/<version>/bin by numeric version."""
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def _free_port(host: str) -> int:
    """Return a TCP port that was free on host a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _as_root() -> bool:
    """Return True when running as root (server commands need runuser)."""
    return os.geteuid() == 0


@functools.cache
def _postgres_ids() -> tuple[int, int, frozenset[int]]:
    """Return uid, gid and all group ids of the postgres OS user."""
    try:
        entry = pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        msg = (
            f"running as root but there is no {POSTGRES_USER!r} OS user for the server"
        )
        raise RuntimeError(msg) from None
    groups = set(os.getgrouplist(entry.pw_name, entry.pw_gid))
    groups.update(g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem)
    return entry.pw_uid, entry.pw_gid, frozenset(groups)


def _command_prefix() -> list[str]:
    """Return the argv prefix that runs a command as postgres when root."""
    if not _as_root():
        return []
    _postgres_ids()
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", POSTGRES_USER, "--"]


def _clean_env() -> dict[str, str]:
    """Return the environment for child commands without stray PG* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _chown_to_postgres(path: Path) -> None:
    """Give path to the postgres OS user when running as root."""
    if _as_root():
        uid, gid, _ = _postgres_ids()
        os.chown(path, uid, gid)


def _ensure_traversable(path: Path) -> None:
    """Add the search bit to ancestors of path that postgres cannot enter."""
    if not _as_root():
        return
    uid, _, gids = _postgres_ids()
    for ancestor in path.parents:
        st = ancestor.stat()
        if st.st_uid == uid:
            needed = stat.S_IXUSR
        elif st.st_gid in gids:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not st.st_mode & needed:
            ancestor.chmod(stat.S_IMODE(st.st_mode) | needed)


def _quote_conf(value: str) -> str:
    """Quote a postgresql.conf value."""
    escaped = value.replace("\\", "\\\\").replace("'", "''")
    return f"'{escaped}'"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Return (state, ppid) of pid from /proc, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    """Return True if pid exists and is not a zombie."""
    info = _proc_stat(pid)
    return info is not None and info[0] not in {"Z", "X"}


def _children_map() -> dict[int, list[int]]:
    """Return a ppid -> [pid] map of every live process in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        info = _proc_stat(int(entry.name))
        if info is not None and info[0] not in {"Z", "X"}:
            children.setdefault(info[1], []).append(int(entry.name))
    return children


def _descendants(pid: int) -> set[int]:
    """Return every live descendant of pid."""
    tree = _children_map()
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    """Send sig to pid, ignoring processes that are already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _remove_shm(shmid: int) -> None:
    """Best-effort IPC_RMID of a System V shared memory segment."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmctl(ctypes.c_int(shmid), ctypes.c_int(_IPC_RMID), None)


class PgCluster:
    """One throwaway PostgreSQL cluster rooted at a data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """Describe a cluster; nothing is created until init()."""
        # abspath normalizes without resolving symlinks (pg_ctl does the same).
        self._data_dir = Path(os.path.abspath(data_dir))  # noqa: PTH100
        self._host = host
        self._auto_port = port is None
        self._port = _free_port(host) if port is None else port
        self._settings: dict[str, str] = {**DEFAULT_SETTINGS, **(settings or {})}
        for name in self._settings:
            if not _SETTING_NAME.match(name):
                msg = f"invalid PostgreSQL setting name: {name!r}"
                raise ValueError(msg)
            if name in _RESERVED_SETTINGS:
                msg = f"set {name!r} through the port/host arguments, not settings"
                raise ValueError(msg)

    def __repr__(self) -> str:
        """Return a debugging representation."""
        data_dir = str(self._data_dir)
        return f"PgCluster({data_dir!r}, port={self._port}, host={self._host!r})"

    @property
    def data_dir(self) -> Path:
        """Absolute path of the cluster's data directory (PGDATA)."""
        return self._data_dir

    @property
    def port(self) -> int:
        """TCP port the server listens on."""
        return self._port

    @property
    def host(self) -> str:
        """Address the server listens on."""
        return self._host

    @property
    def log_file(self) -> Path:
        """Server log file, next to the data directory."""
        return self._data_dir.parent / f"{self._data_dir.name}.log"

    @property
    def bindir(self) -> Path:
        """Directory of the PostgreSQL binaries in use."""
        return find_bindir()

    def is_initialized(self) -> bool:
        """Return True if initdb has completed in the data directory."""
        return (self._data_dir / "PG_VERSION").is_file()

    def url(self, dbname: str = "postgres") -> str:
        """Return the libpq URL of dbname on this cluster."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        path = urllib.parse.quote(dbname, safe="")
        return f"postgresql://{POSTGRES_USER}@{host}:{self._port}/{path}"

    def init(self) -> None:
        """Run initdb (as postgres when root) unless done, then write settings."""
        bindir = find_bindir()
        if self.is_initialized():
            self._write_conf()
            return
        if self._data_dir.exists() and any(self._data_dir.iterdir()):
            msg = (
                f"{self._data_dir} exists, is not empty and holds no PostgreSQL cluster"
            )
            raise RuntimeError(msg)
        self._data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._data_dir.chmod(0o700)
        _chown_to_postgres(self._data_dir)
        _ensure_traversable(self._data_dir)
        result = self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self._data_dir),
                "-U",
                POSTGRES_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            timeout=120,
        )
        if result.returncode != 0:
            msg = (
                f"initdb failed for {self._data_dir} (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
            raise RuntimeError(msg)
        self._write_conf()

    def start(self) -> None:
        """Start the server with pg_ctl -w; no-op if it is already running."""
        if self.is_running():
            return
        if not self.is_initialized():
            msg = f"{self._data_dir} is not initialized; call init() first"
            raise RuntimeError(msg)
        _ensure_traversable(self._data_dir)
        self._prepare_log()
        self._drop_zombie_lock_file()
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            offset = self.log_file.stat().st_size
            error = self._try_start()
            if error is None:
                return
            new_log = self._read_log(offset)
            if self.is_running():
                self.kill()
            retry = (
                self._auto_port and _ADDR_IN_USE in new_log and attempt < _PORT_ATTEMPTS
            )
            if not retry:
                tail = "\n".join(new_log.splitlines()[-40:])
                msg = (
                    f"PostgreSQL failed to start in {self._data_dir} "
                    f"on port {self._port}: "
                    f"{error}\n--- tail of {self.log_file} ---\n{tail}"
                )
                raise RuntimeError(msg)
            self._port = _free_port(self._host)
            self._write_conf()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server with pg_ctl (smart, fast or immediate); no-op if stopped."""
        if mode not in _STOP_MODES:
            msg = f"stop mode must be one of {sorted(_STOP_MODES)}, not {mode!r}"
            raise ValueError(msg)
        if not self.is_running():
            return
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        argv = [
            str(find_bindir() / "pg_ctl"),
            "-D",
            str(self._data_dir),
            "-m",
            mode,
            "-w",
            "-t",
            str(STOP_TIMEOUT),
            "stop",
        ]
        try:
            result = self._run(argv, timeout=STOP_TIMEOUT + 15)
        except subprocess.TimeoutExpired:
            detail = "pg_ctl stop timed out"
        else:
            if result.returncode == 0 or not self.is_running():
                return
            detail = f"pg_ctl stop exited {result.returncode}: {result.stderr.strip()}"
        tail = "\n".join(self._read_log(offset).splitlines()[-40:])
        msg = (
            f"PostgreSQL in {self._data_dir} did not stop: {detail}\n"
            f"--- tail of {self.log_file} ---\n{tail}"
        )
        raise RuntimeError(msg)

    def kill(self) -> None:
        """SIGKILL the postmaster and all its descendants, like a power cut."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        # Freeze the whole tree first so nothing can fork or respawn children
        # (a postmaster that sees a child die would restart its workers).
        frozen: set[int] = set()
        todo = {pid}
        while todo:
            for victim in todo:
                _signal(victim, signal.SIGSTOP)
            frozen |= todo
            todo = set().union(*(_descendants(p) for p in frozen)) - frozen
        for victim in frozen:
            _signal(victim, signal.SIGKILL)
        deadline = time.monotonic() + KILL_TIMEOUT
        while any(_alive(p) for p in frozen):
            if time.monotonic() > deadline:
                survivors = sorted(p for p in frozen if _alive(p))
                msg = f"processes {survivors} of {self._data_dir} survived SIGKILL"
                raise RuntimeError(msg)
            time.sleep(0.01)
        self._clear_lock_file()

    def is_running(self) -> bool:
        """Return True if this cluster's postmaster is alive."""
        return self._postmaster_pid() is not None

    def create_database(self, name: str) -> str:
        """Create database name with psql and return its URL."""
        psql = find_bindir() / "psql"
        if not os.access(psql, os.X_OK):
            psql = Path(shutil.which("psql") or psql)
        ident = '"' + name.replace('"', '""') + '"'
        result = self._run(
            [
                str(psql),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.url(),
                "-c",
                f"CREATE DATABASE {ident}",
            ],
            timeout=60,
        )
        if result.returncode != 0:
            msg = f"CREATE DATABASE {ident} failed: {result.stderr.strip()}"
            raise RuntimeError(msg)
        return self.url(name)

    def run_tool(
        self, argv: Sequence[str], *, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool (pg_basebackup, pg_rewind) as the server's user."""
        _ensure_traversable(self._data_dir)
        return self._run(argv, timeout=timeout)

    @staticmethod
    def give_to_server(path: Path) -> None:
        """Hand a file or directory to the server's OS user (a no-op unless root)."""
        _chown_to_postgres(path)

    def destroy(self) -> None:
        """Stop the server (kill if stop fails) and remove the data dir and log."""
        if self.is_running():
            try:
                self.stop("fast")
            except RuntimeError:
                self.kill()
        shutil.rmtree(self._data_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)
        if self._data_dir.exists():
            msg = f"could not remove {self._data_dir}"
            raise RuntimeError(msg)

    def __enter__(self) -> Self:
        """Init and start the cluster; destroy it if that fails."""
        try:
            self.init()
            self.start()
        except BaseException:
            with contextlib.suppress(Exception):
                self.destroy()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop and destroy the cluster."""
        self.destroy()

    def _run(
        self, argv: Sequence[str], *, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL command (as postgres when root) and capture output."""
        return subprocess.run(  # noqa: S603 - fixed argv, no shell
            [*_command_prefix(), *argv],
            cwd="/",
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _try_start(self) -> str | None:
        """Run pg_ctl start once; return an error description or None."""
        argv = [
            str(find_bindir() / "pg_ctl"),
            "-D",
            str(self._data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(START_TIMEOUT),
            "start",
        ]
        try:
            result = self._run(argv, timeout=START_TIMEOUT + 15)
        except subprocess.TimeoutExpired:
            return f"pg_ctl start did not return within {START_TIMEOUT + 15}s"
        if result.returncode != 0 or not self.is_running():
            output = (result.stdout + result.stderr).strip()
            return f"pg_ctl start exited {result.returncode}: {output}"
        return None

    def _prepare_log(self) -> None:
        """Create the log file so that postgres may append to it."""
        self.log_file.touch(mode=0o640, exist_ok=True)
        _chown_to_postgres(self.log_file)

    def _read_log(self, offset: int = 0) -> str:
        """Return the server log from byte offset, or '' if unreadable."""
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _write_conf(self) -> None:
        """Replace the managed block at the end of postgresql.conf."""
        conf = self._data_dir / "postgresql.conf"
        text = conf.read_text(encoding="utf-8")
        start = text.find(_CONF_BEGIN)
        if start != -1:
            end = text.find(_CONF_END, start)
            tail = text[end + len(_CONF_END) :] if end != -1 else ""
            text = text[:start] + tail.lstrip("\n")
        values = {
            "listen_addresses": self._host,
            "port": str(self._port),
            **self._settings,
        }
        lines = [f"{name} = {_quote_conf(value)}" for name, value in values.items()]
        block = "\n".join([_CONF_BEGIN, *lines, _CONF_END])
        conf.write_text(f"{text.rstrip()}\n\n{block}\n", encoding="utf-8")

    def _lock_file_lines(self) -> list[str]:
        """Return the lines of postmaster.pid, or [] if it is absent."""
        try:
            return (
                (self._data_dir / "postmaster.pid")
                .read_text(encoding="utf-8")
                .splitlines()
            )
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _postmaster_pid(self) -> int | None:
        """Return the live postmaster pid of this cluster, if any."""
        lines = self._lock_file_lines()
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            return None
        if pid <= 0 or not _alive(pid) or not self._owns(pid):
            return None
        return pid

    def _owns(self, pid: int) -> bool:
        """Return True if pid is a postmaster serving this data directory."""
        paths = {str(self._data_dir), os.path.realpath(self._data_dir)}
        try:
            argv = (
                Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .decode(errors="replace")
                .split("\0")
            )
        except OSError:
            argv = []
        if paths & set(argv):
            return True
        with contextlib.suppress(OSError):
            return Path(f"/proc/{pid}/cwd").samefile(self._data_dir)
        return False

    def _drop_zombie_lock_file(self) -> None:
        """Remove postmaster.pid if it names a zombie, which blocks a restart."""
        lines = self._lock_file_lines()
        if lines and lines[0].strip().isdigit():
            info = _proc_stat(int(lines[0]))
            if info is not None and info[0] in {"Z", "X"}:
                (self._data_dir / "postmaster.pid").unlink(missing_ok=True)

    def _clear_lock_file(self) -> None:
        """Drop postmaster.pid and its shared memory once the server is dead."""
        lines = self._lock_file_lines()
        if len(lines) >= 7:  # line 7 is "shmem_key shmid"
            parts = lines[6].split()
            if len(parts) == 2 and parts[1].isdigit():
                _remove_shm(int(parts[1]))
        # A zombie postmaster (unreaped by pid 1) would block the next start.
        (self._data_dir / "postmaster.pid").unlink(missing_ok=True)


def _load_state(directory: Path) -> dict[str, object]:
    """Return the CLI state saved in directory, or {} if there is none."""
    try:
        loaded: object = json.loads(
            (directory / _STATE_FILE).read_text(encoding="utf-8")
        )
    except (FileNotFoundError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _save_state(directory: Path, cluster: PgCluster) -> None:
    """Atomically record the cluster's connection details in directory."""
    tmp = directory / f".{_STATE_FILE}.tmp"
    state = {
        "data_dir": str(cluster.data_dir),
        "host": cluster.host,
        "port": cluster.port,
    }
    tmp.write_text(json.dumps(state) + "\n", encoding="utf-8")
    tmp.replace(directory / _STATE_FILE)


def _cluster_from_state(directory: Path, port: int | None) -> PgCluster:
    """Build the PgCluster for a CLI directory, reusing saved state."""
    state = _load_state(directory)
    saved_port = state.get("port")
    saved_host = state.get("host")
    host = saved_host if isinstance(saved_host, str) else "127.0.0.1"
    if isinstance(saved_port, int):
        if port is not None and port != saved_port:
            msg = (
                f"{directory} already holds a cluster on port {saved_port}, not {port}"
            )
            raise RuntimeError(msg)
        port = saved_port
    return PgCluster(directory / _DATA_SUBDIR, port=port, host=host)


def _cli_start(directory: Path, port: int | None) -> str:
    """Start (or reuse) the cluster in directory and return its URL."""
    directory = Path(os.path.abspath(directory))  # noqa: PTH100
    directory.mkdir(parents=True, exist_ok=True)
    if _as_root():
        directory.chmod(stat.S_IMODE(directory.stat().st_mode) | 0o755)
    cluster = _cluster_from_state(directory, port)
    if cluster.is_running():
        return cluster.url()
    if not cluster.is_initialized() and cluster.data_dir.exists():
        shutil.rmtree(cluster.data_dir)  # left over from a failed initdb
    _save_state(directory, cluster)
    cluster.init()
    cluster.start()
    _save_state(directory, cluster)  # the port may have changed on retry
    return cluster.url()


def _cli_stop(directory: Path) -> None:
    """Stop the cluster in directory and remove the directory."""
    directory = Path(os.path.abspath(directory))  # noqa: PTH100
    if not directory.exists():
        return
    state = _load_state(directory)
    data_dir = directory / _DATA_SUBDIR
    if not state and any(
        p.name not in {_DATA_SUBDIR, f"{_DATA_SUBDIR}.log"} for p in directory.iterdir()
    ):
        msg = f"{directory} does not look like a pgcluster directory; not removing it"
        raise RuntimeError(msg)
    saved_port = state.get("port")
    cluster = PgCluster(data_dir, port=saved_port if isinstance(saved_port, int) else 0)
    cluster.destroy()
    for name in (_STATE_FILE, f".{_STATE_FILE}.tmp"):
        (directory / name).unlink(missing_ok=True)
    try:
        directory.rmdir()
    except OSError as exc:
        msg = f"stopped the cluster but left {directory} in place: {exc}"
        raise RuntimeError(msg) from exc


def _parser() -> argparse.ArgumentParser:
    """Build the command line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m adapters.sql.pgcluster",
        description="Manage a throwaway PostgreSQL cluster in a directory.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="init+start (or reuse) and print the URL")
    start.add_argument("--dir", required=True, type=Path, help="cluster directory")
    start.add_argument(
        "--port", type=int, default=None, help="TCP port (default: free)"
    )
    stop = sub.add_parser("stop", help="stop the cluster and remove the directory")
    stop.add_argument("--dir", required=True, type=Path, help="cluster directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line interface and return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "start":
            url = _cli_start(args.dir, args.port)
            sys.stdout.write(url + "\n")
            sys.stdout.flush()
        else:
            _cli_stop(args.dir)
    except RuntimeError as exc:
        sys.stderr.write(f"pgcluster {args.command}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
