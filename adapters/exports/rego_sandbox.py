"""Tenant policies evaluated in a pool of confined worker processes.

regopy evaluates in the calling process with no bound on time or memory (an
expensive comprehension grew one API process to 24 GB here before the kernel
killed it). So a tenant's Rego runs in `adapters.exports.rego_worker` processes: each
request gets a CPU-time budget (enforced by the kernel inside the worker), a
wall-clock deadline and a resident-memory ceiling (both watched from here
while the answer is awaited), and an answer-size ceiling. A worker past any
of them is killed and replaced in the background; the caller gets
`PolicyLimitExceededError` naming the limit. One tenant may hold at most
``per_tenant`` workers at once, so a runaway policy can slow only its owner.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import structlog

from adapters.exports.rego_worker import COMPILED_CACHE, write_frame
from application.ports import PolicyBusyError, PolicyLimitExceededError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

log = structlog.get_logger("conductor.policy")
_POLL_S = 0.005
_PAGE = os.sysconf("SC_PAGE_SIZE")
_CPU_SIGNALS = {signal.SIGPROF, signal.SIGXCPU}


@dataclass(frozen=True, slots=True)
class Limits:
    """What one evaluation (or one publication probe) may use."""

    cpu_s: float = 1.0
    wall_s: float = 2.0
    memory_bytes: int = 256 * 1024 * 1024
    output_bytes: int = 1024 * 1024

    def describe(self, limit: str) -> str:
        return {
            "cpu_time": f"{self.cpu_s:g} s of CPU time",
            "wall_clock": f"{self.wall_s:g} s of wall-clock time",
            "memory": f"{self.memory_bytes // (1024 * 1024)} MiB of memory",
            "output_size": f"{self.output_bytes // 1024} KiB of output",
        }.get(limit, limit)


class _DiedError(Exception):
    def __init__(self, limit: str) -> None:
        super().__init__(limit)
        self.limit = limit


class _Process:
    """One worker and what it has compiled (mirrors its LRU cache)."""

    def __init__(self) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - kept while alive
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "adapters.exports.rego_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=_worker_env(),
            close_fds=True,
        )
        self.known: OrderedDict[str, None] = OrderedDict()

    @property
    def stdin(self) -> IO[bytes]:
        assert self.popen.stdin is not None
        return self.popen.stdin

    @property
    def stdout(self) -> IO[bytes]:
        assert self.popen.stdout is not None
        return self.popen.stdout

    def rss(self) -> int:
        try:
            with open(f"/proc/{self.popen.pid}/statm", "rb") as statm:  # noqa: PTH123
                return int(statm.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            return 0

    def call(self, request: dict[str, Any], limits: Limits) -> dict[str, Any]:
        """Send one request and await its answer within the limits."""
        request["cpuS"] = limits.cpu_s
        try:
            write_frame(self.stdin, json.dumps(request).encode())
        except OSError:
            raise _DiedError(self._death()) from None
        deadline = time.monotonic() + limits.wall_s
        while not select.select([self.stdout], [], [], _POLL_S)[0]:
            if time.monotonic() > deadline:
                self.kill()
                raise _DiedError("wall_clock")
            if self.rss() > limits.memory_bytes:
                self.kill()
                raise _DiedError("memory")
        return self._answer(limits)

    def _answer(self, limits: Limits) -> dict[str, Any]:
        header = self.stdout.read(4)
        if len(header) < 4:
            raise _DiedError(self._death())
        size = int.from_bytes(header, "big")
        if size > limits.output_bytes:
            self.kill()
            raise _DiedError("output_size")
        payload = self.stdout.read(size)
        if len(payload) < size:
            raise _DiedError(self._death())
        answer: dict[str, Any] = json.loads(payload)
        return answer

    def _death(self) -> str:
        """Which limit ended the worker, from how it ended."""
        code = self.popen.wait(timeout=5)
        if -code in _CPU_SIGNALS:
            return "cpu_time"
        self.stderr.seek(0)
        tail = self.stderr.read()[-4000:]
        if b"MemoryError" in tail or b"bad_alloc" in tail:
            return "memory"
        log.warning("policy_worker_crashed", returncode=code)
        return "crashed"

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        self.popen.wait(timeout=5)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.popen.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
        self.stdout.close()
        self.stderr.close()


def _worker_env() -> dict[str, str]:
    """Nothing of the server's environment (secrets, URLs) reaches a worker."""
    keep = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "HOME", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class RegoSandbox:
    """A small pool of policy workers shared fairly between tenants."""

    def __init__(
        self, *, workers: int = 2, limits: Limits | None = None, per_tenant: int = 1
    ) -> None:
        self.limits = limits or Limits()
        self.size = max(1, workers)
        self.per_tenant = max(1, min(per_tenant, self.size))
        self._idle: queue.Queue[_Process | None] = queue.Queue()
        for _ in range(self.size):
            self._idle.put(None)  # started on first use
        self._tenants: defaultdict[str, int] = defaultdict(int)
        self._tenant_lock = threading.Condition()
        self._closed = False
        self.kills: defaultdict[str, int] = defaultdict(int)
        """Workers ended by each limit, since start (for metrics and tests)."""

    def evaluate(
        self,
        digest: str,
        sources: Sequence[tuple[str, str]],
        document: Mapping[str, Any],
        *,
        tenant: str = "",
    ) -> str:
        """The engine's raw output for ``document`` (JSON text)."""
        request: dict[str, Any] = {
            "op": "evaluate",
            "digest": digest,
            "input": document,
        }
        with self._worker(tenant) as worker:
            if digest not in worker.known:
                request["sources"] = [list(pair) for pair in sources]
            answer = self._call(worker, request)
            if answer.get("kind") == "unknown_policy":  # evicted over there
                request["sources"] = [list(pair) for pair in sources]
                answer = self._call(worker, request)
            if answer["ok"]:
                worker.known[digest] = None
                worker.known.move_to_end(digest)
                while len(worker.known) > COMPILED_CACHE:
                    worker.known.popitem(last=False)
                return str(answer["result"])
        raise ValueError(answer.get("error", "the policy could not be evaluated"))

    def builtins(
        self, sources: Sequence[tuple[str, str]], *, tenant: str = ""
    ) -> list[str]:
        """Compile the modules there; every builtin the compiled plan calls."""
        request: dict[str, Any] = {"op": "check", "sources": [list(p) for p in sources]}
        with self._worker(tenant) as worker:
            answer = self._call(worker, request)
        if not answer["ok"]:
            raise ValueError(answer.get("error", "the modules do not compile"))
        return list(answer["builtins"])

    def _call(self, worker: _Process, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return worker.call(request, self.limits)
        except _DiedError as died:
            self.kills[died.limit] += 1
            log.warning("policy_worker_killed", limit=died.limit)
            worker.close()
            raise PolicyLimitExceededError(
                died.limit, self.limits.describe(died.limit)
            ) from None

    @contextlib.contextmanager
    def _worker(self, tenant: str) -> Iterator[_Process]:
        self._enter(tenant)
        try:
            try:
                slot = self._idle.get(timeout=2 * self.limits.wall_s)
            except queue.Empty:
                raise PolicyBusyError(2 * self.limits.wall_s) from None
            try:
                worker = slot if slot is not None and _alive(slot) else _Process()
            except OSError:
                self._idle.put(None)  # keep the slot; the next caller retries
                raise
            try:
                yield worker
            finally:
                self._release(worker)
        finally:
            self._leave(tenant)

    def _release(self, worker: _Process) -> None:
        if self._closed:
            worker.close()
        elif _alive(worker) and worker.rss() < self.limits.memory_bytes // 2:
            self._idle.put(worker)
        elif _alive(worker):  # grown (caches, a big policy): start afresh, so
            worker.close()  # the next tenant's evaluation gets its whole budget
            self._replace()
        else:
            self._replace()

    def _replace(self) -> None:
        """A new worker for a lost one, started off the request's path."""

        def start() -> None:
            try:
                self._idle.put(_Process())
            except OSError:
                self._idle.put(None)  # the next caller tries again

        threading.Thread(target=start, daemon=True).start()

    def _enter(self, tenant: str) -> None:
        deadline = time.monotonic() + 2 * self.limits.wall_s
        with self._tenant_lock:
            while self._tenants[tenant] >= self.per_tenant:
                left = deadline - time.monotonic()
                if left <= 0 or not self._tenant_lock.wait(left):
                    raise PolicyBusyError(self.limits.wall_s)
            self._tenants[tenant] += 1

    def _leave(self, tenant: str) -> None:
        with self._tenant_lock:
            self._tenants[tenant] -= 1
            self._tenant_lock.notify_all()

    def worker_pids(self) -> set[int]:
        """Process ids of the idle, live workers (for operators and tests)."""
        with self._idle.mutex:
            waiting = list(self._idle.queue)
        return {w.popen.pid for w in waiting if w is not None and _alive(w)}

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            if worker is not None:
                worker.close()


def _alive(worker: _Process | None) -> bool:
    return worker is not None and worker.popen.poll() is None
