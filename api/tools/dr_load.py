"""The drill's load: a writer keeping a ledger of acknowledged commands, a reader.

Each thread has its own HTTP client: by default keep-alive connections to a
separate `conductor serve` process (api.tools.dr_server); with ``api="in-process"``
both share litestar's TestClient over the same application (no sockets).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class DrillOptions:
    mode: str = "failover"
    write_rate: int = 50
    read_rate: int = 100
    baseline_s: float = 2.0
    window_s: float = 2.0
    api: Literal["server", "in-process"] = "server"
    """Where the load goes: a `conductor serve` process, or an in-process client."""


@dataclass
class Load:
    """Writer and reader threads against the API, with their ledgers."""

    writer: httpx.Client
    reader: httpx.Client
    headers: dict[str, str]
    options: DrillOptions
    acks: list[tuple[str, float, str]] = field(default_factory=list)
    """(key, when acknowledged, region that acknowledged it), in time order."""
    reads: list[tuple[float, float, int]] = field(default_factory=list)
    """(when started, ms, status; 0 when no response came back)."""
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.threads = [
            threading.Thread(target=self._write, name="drill-writer", daemon=True),
            threading.Thread(target=self._read, name="drill-reader", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _write(self) -> None:
        pause, index = 1.0 / self.options.write_rate, 0
        while not self.stop.is_set():
            key = f"w-{index}"
            # The request id names the command, so the server's log lines can
            # be matched with the ledger (a retry reuses it: same command).
            got = _send(
                self.writer,
                "POST",
                "/v1/dr/commands",
                json={"key": key, "payload": {"n": index}},
                headers={**self.headers, "x-request-id": f"drill-{key}"},
            )
            if got is not None and got.status_code in {200, 201}:
                self.acks.append((key, time.monotonic(), got.json()["region"]))
                index += 1
                self.stop.wait(pause)
            else:
                self.stop.wait(0.01)  # the same key again: idempotent

    def _read(self) -> None:
        pause, count = 1.0 / self.options.read_rate, 0
        headers = {**self.headers, "x-ig-read-from": "nearest"}
        while not self.stop.is_set():
            key = self.acks[-20][0] if len(self.acks) >= 20 else "w-0"
            started = time.monotonic()
            got = _send(
                self.reader,
                "GET",
                f"/v1/dr/commands/{key}",
                headers={**headers, "x-request-id": f"drill-r-{count}"},
            )
            self.reads.append(
                (
                    started,
                    (time.monotonic() - started) * 1000,
                    0 if got is None else got.status_code,
                )
            )
            count += 1
            self.stop.wait(pause)

    def first_ack_after(
        self,
        moment: float,
        region: str,
        timeout: float = 60.0,
        check: Callable[[], None] = lambda: None,
    ) -> float:
        """When region first acknowledged a write after moment (waits for it;
        check raises if the API is gone)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            check()
            earliest = None
            for _key, at, by in reversed(self.acks):  # appended in time order
                if at <= moment:
                    break
                if by == region:
                    earliest = at
            if earliest is not None:
                return earliest
            time.sleep(0.005)
        msg = f"no write was acknowledged within {timeout}s of the loss"
        raise RuntimeError(msg)

    def latencies(self, start: float, end: float) -> list[float]:
        """Read latencies (ms) of the reads started in [start, end)."""
        return [ms for at, ms, _status in self.reads if start <= at < end]

    def failed_reads(self, start: float) -> int:
        return sum(
            1
            for at, _ms, status in self.reads
            if at >= start and (status >= 500 or status == 0)
        )


def _send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    json: dict[str, Any] | None = None,
) -> httpx.Response | None:
    """One request; None when no response came back (the server went away)."""
    try:
        return client.request(method, url, headers=headers, json=json)
    except httpx.TransportError:
        return None


def p95(samples: list[float]) -> Decimal:
    """The 95th percentile (nearest rank) in ms, to the microsecond."""
    if not samples:
        return Decimal(0)
    ordered = sorted(samples)
    value = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return Decimal(str(round(value, 3)))
