"""HTTP side of bench_core: the server as a real process, two load clients
(wrk + a Lua script, or a lean asyncio client over raw streams with HTTP/1.1
keep-alive), a sequential keep-alive GET client, and /metrics parsing.

Plain module for scripts/bench_core (put on sys.path by the script); product
code never imports it.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLACEHOLDER = "@@NAME@@"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1,
                   int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


# -- the server --------------------------------------------------------------------


class Server:
    """`python -m api.cli serve --port P` as a child process (own session)."""

    def __init__(self, *, root: Path, python: str, database_url: str, var: Path,
                 secret: str, log_path: Path, workers: int = 1,
                 extra_env: dict[str, str] | None = None) -> None:
        self.workers = workers
        self.extra_env = extra_env or {}
        self.root = root
        self.python = python
        self.database_url = database_url
        self.var = var
        self.secret = secret
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        self.var.mkdir(parents=True, exist_ok=True)
        (self.var / "data").mkdir(exist_ok=True)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
        env.update(
            CONDUCTOR_DATABASE_URL=self.database_url,
            CONDUCTOR_VAR=str(self.var),
            CONDUCTOR_JWT_SECRET=self.secret,
            CONDUCTOR_LOG_LEVEL="warning",
        )
        env.update(self.extra_env)
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603
            [self.python, "-m", "api.cli", "serve", "--init", "--port",
             str(self.port), "--workers", str(self.workers)],
            cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{tail}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:  # noqa: PLR2004
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz within {timeout:.0f}s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (uvicorn drains), then SIGKILL after ``grace`` seconds."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # The whole process group: with --workers there are API workers and a
        # projector besides the parent.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


# -- /metrics ----------------------------------------------------------------------

_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<v>\S+)$')


def scrape_histogram(text: str, name: str) -> dict[str, Any]:
    """Buckets (le -> cumulative count), sum and count of one histogram."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if not m:
            continue
        n, labels, v = m["name"], m["labels"] or "", float(m["v"])
        if n == f"{name}_bucket":
            le = re.search(r'le="([^"]+)"', labels)
            if le:
                buckets[float(le.group(1))] = buckets.get(float(le.group(1)), 0) + v
        elif n == f"{name}_sum":
            total += v
        elif n == f"{name}_count":
            count += v
    return {"buckets": buckets, "sum": total, "count": count}


def histogram_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What happened between two scrapes: mean, approximate p50/p90 and max bucket."""
    count = after["count"] - before["count"]
    total = after["sum"] - before["sum"]
    les = sorted(after["buckets"])
    cum = [after["buckets"][le] - before["buckets"].get(le, 0) for le in les]
    out: dict[str, Any] = {"commits": int(count), "events": int(total),
                           "mean": (total / count) if count else None,
                           "distribution": {}}
    prev = 0.0
    for le, c in zip(les, cum, strict=True):
        label = "+Inf" if le == float("inf") else f"<={le:g}"
        if c - prev:
            out["distribution"][label] = int(c - prev)
        prev = c
    for q in (50, 90):
        out[f"p{q}_bucket"] = next(
            ("+Inf" if le == float("inf") else f"<={le:g}"
             for le, c in zip(les, cum, strict=True) if count and c >= count * q / 100),
            None,
        )
    top = [le for le, c in zip(les, cum, strict=True) if c < count]
    out["max_bucket"] = None
    if count:
        idx = len(top)
        out["max_bucket"] = ("+Inf" if les[idx] == float("inf") else f"<={les[idx]:g}")
    return out


# -- load: wrk ---------------------------------------------------------------------

_LUA = r"""
-- generated by scripts/bench_core: unique dataset names, status counts, JSON summary
local bodies = {
%(bodies)s
}
local token = %(token)s
local tag = %(tag)s
local counter = 0
n201 = 0
nother = 0
firstbad = 0
tid = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local parts = bodies[(counter %% #bodies) + 1]
  local name = tag .. "-" .. tid .. "-" .. counter
  local body = table.concat(parts, name)
  return wrk.format("POST", %(path)s, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function response(status, headers, body)
  if status == %(ok)d then
    n201 = n201 + 1
  else
    nother = nother + 1
    if firstbad == 0 then firstbad = status end
  end
end

function done(summary, latency, requests)
  local c201, cother, bad = 0, 0, 0
  for _, t in ipairs(threads) do
    c201 = c201 + t:get("n201")
    cother = cother + t:get("nother")
    if bad == 0 then bad = t:get("firstbad") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%%d,"duration_us":%%d,"connect_errors":%%d,' ..
    '"read_errors":%%d,"write_errors":%%d,"status_errors":%%d,"timeouts":%%d,' ..
    '"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d,"mean_us":%%.1f,' ..
    '"n201":%%d,"nother":%%d,"first_bad_status":%%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, c201, cother, bad))
end
"""


def _lua_str(s: str) -> str:
    level = 1
    while f"]{'=' * level}]" in s:
        level += 1
    eq = "=" * level
    return f"[{eq}[{s}]{eq}]"


def body_parts(bodies: list[dict[str, Any]]) -> list[list[str]]:
    """JSON bodies split around the name placeholder (it may occur more than once)."""
    return [json.dumps(b, separators=(",", ":")).split(PLACEHOLDER) for b in bodies]


@dataclass
class LoadResult:
    client: str
    seconds: float
    requests: int
    created: int
    other: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    first_bad_status: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.created / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(*, port: int, token: str, tag: str, parts: list[list[str]],
            connections: int, seconds: float, threads: int, workdir: Path,
            path: str = "/v1/datasets", ok: int = 201) -> LoadResult:
    """POST the bodies for ``seconds``; ``created`` counts responses with ``ok``."""
    script = workdir / f"post_{tag}.lua"
    script.write_text(_LUA % {
        "bodies": ",\n".join("  {" + ", ".join(_lua_str(p) for p in ps) + "}"
                             for ps in parts),
        "token": _lua_str(token),
        "tag": _lua_str(tag),
        "path": _lua_str(path),
        "ok": ok,
    })
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,  # noqa: S603
                         timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    d = json.loads(line[len("BENCHJSON "):])
    errors = sum(d[k] for k in ("connect_errors", "read_errors", "write_errors",
                                "timeouts"))
    return LoadResult(
        client=f"wrk -t{threads} -c{connections} (Lua: unique names, status counts)",
        seconds=d["duration_us"] / 1e6, requests=d["requests"], created=d["n201"],
        other=d["nother"], errors=errors, p50_ms=d["p50_us"] / 1000,
        p90_ms=d["p90_us"] / 1000, p99_ms=d["p99_us"] / 1000,
        max_ms=d["max_us"] / 1000, first_bad_status=d["first_bad_status"],
    )


# -- load: asyncio over raw streams --------------------------------------------------


async def _post_loop(host: str, port: int, head: bytes, parts: list[list[bytes]],
                     tag: bytes, wid: int, deadline: float, lat: list[float],
                     status: dict[int, int], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter
    try:
        for n in itertools.count():
            if clock() >= deadline:
                break
            name = b"%s-%d-%d" % (tag, wid, n)
            body = name.join(parts[n % len(parts)])
            t0 = clock()
            writer.write(head % len(body) + body)
            try:
                header = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                errors[0] += 1
                break
            code = int(header[9:12])
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", header)
            if m:
                await reader.readexactly(int(m.group(1)))
            lat.append(clock() - t0)
            status[code] = status.get(code, 0) + 1
    finally:
        writer.close()


def run_asyncio(*, port: int, token: str, tag: str, parts: list[list[str]],
                connections: int, seconds: float, path: str = "/v1/datasets",
                ok: int = 201) -> LoadResult:
    head = (
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:" + str(port).encode()
        + b"\r\nAuthorization: Bearer " + token.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    )
    bparts = [[p.encode() for p in ps] for ps in parts]
    lat: list[float] = []
    status: dict[int, int] = {}
    errors = [0]

    async def main() -> float:
        t0 = time.perf_counter()
        deadline = t0 + seconds
        await asyncio.gather(*(
            _post_loop("127.0.0.1", port, head, bparts, tag.encode(), i, deadline,
                       lat, status, errors)
            for i in range(connections)
        ))
        return time.perf_counter() - t0

    loop_name = "asyncio"
    try:
        import uvloop  # noqa: PLC0415

        elapsed = uvloop.run(main())
        loop_name = "asyncio+uvloop"
    except ImportError:
        elapsed = asyncio.run(main())
    lat.sort()
    created = status.get(ok, 0)
    bad = next((c for c in sorted(status) if c != ok), 0)
    return LoadResult(
        client=f"{loop_name} raw-stream client, {connections} keep-alive connections",
        seconds=elapsed, requests=len(lat), created=created,
        other=len(lat) - created, errors=errors[0],
        p50_ms=percentile(lat, 50) * 1000, p90_ms=percentile(lat, 90) * 1000,
        p99_ms=percentile(lat, 99) * 1000, max_ms=(lat[-1] * 1000 if lat else 0.0),
        first_bad_status=bad,
    )


# -- sequential GETs ------------------------------------------------------------------


class KeepAliveClient:
    """One persistent HTTP/1.1 connection for sequential latency measurements."""

    def __init__(self, port: int, token: str, timeout: float = 60.0) -> None:
        self.port = port
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {token}"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def get(self, path: str) -> tuple[int, bytes, float]:
        """(status, body, seconds); status 0 and seconds=inf on a timeout."""
        t0 = time.perf_counter()
        try:
            try:
                self.conn.request("GET", path, headers=self.headers)
                resp = self.conn.getresponse()
                body = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError):
                # A keep-alive connection the server closed: once more, fresh.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
                self.conn.request("GET", path, headers=self.headers)
                resp = self.conn.getresponse()
                body = resp.read()
        except TimeoutError:
            self.conn.close()
            return 0, b"", float("inf")
        return resp.status, body, time.perf_counter() - t0

    def close(self) -> None:
        self.conn.close()
