"""One sandboxed policy worker: `python -m adapters.exports.rego_worker`.


A tenant's Rego runs here, never in the API process. For every request the
worker arms a CPU-time timer (ITIMER_PROF with SIGPROF left at its default
action, so the kernel ends the process even while rego-cpp's C++ code runs and
Python's signal handlers cannot) and answers one request at a time on
stdin/stdout. The parent adds the wall-clock deadline and the memory bound (it
watches the worker's resident set: rego-cpp's allocator, snmalloc, reserves
256 GiB of address space at start, so RLIMIT_AS and RLIMIT_DATA cannot bound
what it really uses) and replaces a worker that dies.

Frames are a 4-byte big-endian length and a JSON object. Requests:
``{"op": "evaluate", "digest", "sources"?, "input", "cpuS"}`` and
``{"op": "check", "sources", "cpuS"}``; answers ``{"ok": true, ...}`` or
``{"ok": false, "error": "...", "kind": "..."}``.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import struct
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

ENTRYPOINT = "conductor/export/decision"
_HEADER = struct.Struct(">I")
COMPILED_CACHE = 32
PR_SET_PDEATHSIG = 1
OPEN_FILES = 64


def read_frame(stream: IO[bytes]) -> bytes | None:
    """One frame's payload, or None at end of stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _confine() -> None:
    """Limits that hold whatever the policy does (set before regopy loads)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))
    signal.signal(signal.SIGPROF, signal.SIG_DFL)  # CPU timer expiry ends us
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when
    try:  # die with the parent (Linux); stdin EOF covers the rest
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class _Worker:
    def __init__(self) -> None:
        import regopy  # noqa: PLC0415 - only after the limits are in place

        self.regopy = regopy
        self.compiled: OrderedDict[str, tuple[Any, Any]] = OrderedDict()

    def _compile(self, sources: list[list[str]]) -> tuple[Any, Any]:
        interpreter = self.regopy.Interpreter()
        for name, source in sources:
            interpreter.add_module(name, source)
        return interpreter, interpreter.build(None, [ENTRYPOINT])

    def evaluate(self, request: dict[str, Any]) -> dict[str, Any]:
        digest = request["digest"]
        entry = self.compiled.get(digest)
        if entry is None:
            if "sources" not in request:
                return {"ok": False, "kind": "unknown_policy", "error": digest}
            entry = self._compile(request["sources"])
            self.compiled[digest] = entry
            while len(self.compiled) > COMPILED_CACHE:
                self.compiled.popitem(last=False)
        self.compiled.move_to_end(digest)
        interpreter, bundle = entry
        interpreter.set_input(self.regopy.Input(request["input"]))
        try:
            output = interpreter.query_bundle_entrypoint(bundle, ENTRYPOINT)
        except ValueError:  # regopy parses the output as JSON; an error is not
            return {"ok": False, "kind": "rego", "error": self._raw(entry)}
        return {"ok": True, "result": str(output)}  # read while output lives

    def _raw(self, entry: tuple[Any, Any]) -> str:
        """The engine's own text for a query regopy could not read (an error)."""
        from regopy import rego_shared as raw  # noqa: PLC0415

        interpreter, bundle = entry
        impl = raw.rego_bundle_query_entrypoint(
            interpreter._impl,  # noqa: SLF001
            bundle._impl,  # noqa: SLF001
            ENTRYPOINT,
        )
        try:
            return str(raw.rego_output_string(impl))[:4000]
        finally:
            raw.rego_free_output(impl)

    def check(self, request: dict[str, Any]) -> dict[str, Any]:
        """Compile, and name every builtin the compiled plan calls."""
        interpreter, bundle = self._compile(request["sources"])
        with tempfile.TemporaryDirectory(prefix="rego-plan-") as folder:
            interpreter.save_bundle(folder, bundle)
            plan = json.loads((Path(folder) / "plan.json").read_text())
        builtins = plan.get("static", {}).get("builtin_funcs") or []
        return {"ok": True, "builtins": sorted({b["name"] for b in builtins})}


def _serve(worker: _Worker, stdin: IO[bytes], stdout: IO[bytes]) -> None:
    while (payload := read_frame(stdin)) is not None:
        request = json.loads(payload)
        cpu = float(request.get("cpuS", 1.0))
        signal.setitimer(signal.ITIMER_PROF, cpu)
        try:
            if request["op"] == "check":
                answer = worker.check(request)
            else:
                answer = worker.evaluate(request)
        except MemoryError:
            answer = {"ok": False, "kind": "memory", "error": "out of memory"}
        except Exception as error:
            # RegoError for a bad module; regopy's own ValueError when the
            # engine's output is not JSON (a policy the engine cannot run).
            answer = {"ok": False, "kind": "rego", "error": str(error)[:4000]}
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        try:
            write_frame(stdout, json.dumps(answer).encode())
        except MemoryError:
            write_frame(stdout, b'{"ok": false, "kind": "memory", "error": "output"}')


def main() -> int:
    _confine()
    os.chdir(tempfile.gettempdir())
    # Frames get a private copy of stdout; fd 1 itself goes to stderr, so
    # whatever the engine prints (rego-cpp writes some errors to stdout)
    # cannot corrupt the stream of frames.
    frames = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(_Worker(), sys.stdin.buffer, frames)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
