"""The export gate's engine: Rego v1 by regopy (rego-cpp), in two tiers.

`RegoEngine` evaluates in this process and is only for the policies Conductor
ships (the platform floor, the tenants' default): their cost is known. Facts
measured here (see NOTES): compile once per digest into a bundle with the
decision as its entrypoint, and query that (the default gate: ~2.4k
queries/s, against ~1k re-parsing each time); pass the input as a
regopy.Input built from the dict; query a decision object, because a false
boolean comes back as undefined; read the output while the Output object is
alive. An interpreter is not thread-safe, so each compiled policy has a lock.
regopy binds librego through ctypes.CDLL, which drops the GIL around every
call; building one input is dozens of calls, and under load each drop hands
the GIL to another thread and back (see hold_gil_during_rego).

`SandboxedRegoEngine` evaluates tenants' own policies in confined worker
processes (adapters.exports.rego_sandbox), refuses at publication any builtin whose
result is not a function of its arguments (decisions are replayed by
auditors), and runs the modules on probe inputs under the same limits.
`TieredRegoEngine` sends each digest to the right one.
"""

from __future__ import annotations

import ctypes
import json
import re
import threading
from typing import TYPE_CHECKING, Any

# hnswlib must be loaded before regopy: librego_shared.so (loaded by regopy
# through ctypes) exports its own operator new/delete, and an hnswlib loaded
# after it frees memory with the wrong allocator ("free(): invalid pointer",
# abort in knn_query). Loaded first, hnswlib binds to libstdc++'s.
import hnswlib  # noqa: F401  # isort: skip
import regopy

from application.exports.gate import default_policy_sources, platform_policy_sources
from application.ports import (
    LIMIT_REASON,
    PolicyLimitExceededError,
    PolicyRefusedError,
    Verdict,
)
from domain.exports.policy import policy_digest

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from adapters.exports.rego_sandbox import RegoSandbox


def hold_gil_during_rego() -> None:
    """Rebind regopy's functions to keep the GIL while librego runs.

    A call into librego is microseconds of CPU (evaluating a shipped policy
    ~0.3 ms in all), so releasing the GIL around each gains no parallelism:
    it costs a hand-off per call (futex wake, context switch) whenever other
    threads wait for the GIL, as the request handlers do. ctypes.PyDLL is
    CDLL without the release. Only shipped, bounded policies run in this
    process; tenants' own run in the sandbox's worker processes.
    """
    library = regopy.rego_shared
    loaded = library.rego
    if isinstance(loaded, ctypes.PyDLL):
        return
    holding = ctypes.PyDLL(library.path)  # dlopen again: the same handle
    # The functions regopy has typed so far are cached on the CDLL by name.
    for name, function in list(vars(loaded).items()):
        if hasattr(function, "argtypes"):
            rebound = getattr(holding, name)
            rebound.argtypes, rebound.restype = function.argtypes, function.restype
    library.rego = holding


hold_gil_during_rego()

ENTRYPOINT = "conductor/export/decision"
UNDEFINED = "policy_decision_undefined"
ENGINE_ERROR = "policy_evaluation_error"
DECISION_SHAPE = (
    "the modules must define data.conductor.export.decision as "
    '{"allow": bool, "deny": [reasons]}'
)

NONDETERMINISTIC = {
    "http.send": "does network I/O",
    "net.lookup_ip_addr": "does network I/O (DNS)",
    "opa.runtime": "reads the engine's runtime (environment, configuration)",
    "time.now_ns": "reads the clock",
    "rand.intn": "is random",
    "uuid.rfc4122": "is random",
    "io.jwt.encode_sign": "signs with a random nonce",
    "io.jwt.encode_sign_raw": "signs with a random nonce",
    "io.jwt.decode_verify": "checks expiry against the clock",
    "crypto.x509.parse_and_verify_certificates": "checks validity against the clock",
    "internal.print": "writes to the engine's output",
}
"""Builtins a published policy may not call, and why: an auditor replaying a
decision must get the same answer from the same input. Each name is checked
against the engine in the tests; the names come from the compiled plan, so
aliases and imports cannot hide a call."""


class _Compiled:
    def __init__(self, sources: Sequence[tuple[str, str]]) -> None:
        self.interpreter = regopy.Interpreter()
        for name, source in sources:
            self.interpreter.add_module(name, source)
        self.bundle = self.interpreter.build(None, [ENTRYPOINT])
        self.lock = threading.Lock()

    def decide(self, document: Mapping[str, Any]) -> str:
        given = regopy.Input(document)
        with self.lock:
            self.interpreter.set_input(given)
            output = self.interpreter.query_bundle_entrypoint(self.bundle, ENTRYPOINT)
            return str(output)  # read while `output` is alive


class RegoEngine:
    """In-process evaluation of trusted (shipped) policies, by digest."""

    def __init__(self) -> None:
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    @property
    def engine(self) -> str:
        return f"regopy/{regopy.__version__}"

    def check(
        self,
        sources: Sequence[tuple[str, str]],
        probes: Sequence[Mapping[str, Any]] = (),
        *,
        tenant: str = "",
    ) -> None:
        """Compile without keeping, and require a decision on every probe."""
        del tenant
        try:
            compiled = _Compiled(sources)
            outputs = [compiled.decide(p) for p in (*probes, {})]
        except (regopy.RegoError, ValueError) as error:
            raise PolicyRefusedError("rego-compile", _first_line(error)) from None
        if any(_decision(o) is None for o in outputs):
            raise PolicyRefusedError("decision-shape", DECISION_SHAPE)

    def evaluate(
        self,
        digest: str,
        sources: Sequence[tuple[str, str]],
        document: Mapping[str, Any],
        *,
        tenant: str = "",
    ) -> Verdict:
        del tenant
        compiled = self._compiled.get(digest)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(digest)
                if compiled is None:
                    compiled = self._compiled[digest] = _Compiled(sources)
        try:
            text = compiled.decide(document)
        except ValueError:  # regopy could not read the engine's output
            return Verdict(allow=False, reasons=(ENGINE_ERROR,))
        return verdict(text)


class SandboxedRegoEngine:
    """Tenants' policies, evaluated in the confined worker pool."""

    def __init__(self, sandbox: RegoSandbox) -> None:
        self.sandbox = sandbox

    @property
    def engine(self) -> str:
        return f"regopy/{regopy.__version__}"

    def check(
        self,
        sources: Sequence[tuple[str, str]],
        probes: Sequence[Mapping[str, Any]] = (),
        *,
        tenant: str = "",
    ) -> None:
        """Compile there, refuse nondeterministic builtins, run every probe."""
        try:
            called = self.sandbox.builtins(sources, tenant=tenant)
        except PolicyLimitExceededError as error:
            raise _over_limit(error, "compiling the modules") from None
        except ValueError as error:
            raise PolicyRefusedError("rego-compile", _first_line(error)) from None
        refused = [
            f"{n} ({NONDETERMINISTIC[n]})" for n in called if n in NONDETERMINISTIC
        ]
        if refused:
            raise PolicyRefusedError(
                "nondeterministic-builtin",
                "decisions must replay the same, so a policy may not call "
                + "; ".join(refused),
            )
        digest = policy_digest(sources)  # compiled once there, kept for use
        for number, probe in enumerate((*probes, {}), start=1):
            try:
                text = self.sandbox.evaluate(digest, sources, probe, tenant=tenant)
            except PolicyLimitExceededError as error:
                raise _over_limit(error, f"probe input {number}") from None
            except ValueError as error:
                raise PolicyRefusedError(
                    "evaluation-error", f"probe input {number}: {_first_line(error)}"
                ) from None
            if _decision(text) is None:
                raise PolicyRefusedError("decision-shape", DECISION_SHAPE)

    def evaluate(
        self,
        digest: str,
        sources: Sequence[tuple[str, str]],
        document: Mapping[str, Any],
        *,
        tenant: str = "",
    ) -> Verdict:
        try:
            text = self.sandbox.evaluate(digest, sources, document, tenant=tenant)
        except PolicyLimitExceededError as error:
            return Verdict(allow=False, reasons=(LIMIT_REASON,), limit=error.limit)
        except ValueError:
            return Verdict(allow=False, reasons=(ENGINE_ERROR,))
        return verdict(text)


class TieredRegoEngine:
    """Shipped policies in process; every other digest in the sandbox."""

    def __init__(
        self,
        sandbox: RegoSandbox,
        *,
        trusted: Collection[str] | None = None,
        in_process: RegoEngine | None = None,
    ) -> None:
        self.trusted = frozenset(shipped_digests() if trusted is None else trusted)
        self.in_process = in_process or RegoEngine()
        self.sandboxed = SandboxedRegoEngine(sandbox)

    @property
    def engine(self) -> str:
        return self.in_process.engine

    def check(
        self,
        sources: Sequence[tuple[str, str]],
        probes: Sequence[Mapping[str, Any]] = (),
        *,
        tenant: str = "",
    ) -> None:
        self.sandboxed.check(sources, probes, tenant=tenant)

    def evaluate(
        self,
        digest: str,
        sources: Sequence[tuple[str, str]],
        document: Mapping[str, Any],
        *,
        tenant: str = "",
    ) -> Verdict:
        tier = self.in_process if digest in self.trusted else self.sandboxed
        return tier.evaluate(digest, sources, document, tenant=tenant)

    def close(self) -> None:
        self.sandboxed.sandbox.close()


def shipped_digests() -> frozenset[str]:
    """The policies this version of Conductor ships (their cost is known)."""
    return frozenset(
        policy_digest(sources)
        for sources in (default_policy_sources(), platform_policy_sources())
    )


def verdict(text: str) -> Verdict:
    """The Verdict of an engine output (undefined and odd shapes deny)."""
    decision = _decision(text)
    if decision is None:
        return Verdict(allow=False, reasons=(UNDEFINED,))
    allow, reasons = decision
    # A policy that allows while listing reasons is contradictory: deny.
    return Verdict(allow=allow and not reasons, reasons=reasons)


def _decision(text: str) -> tuple[bool, tuple[str, ...]] | None:
    """(allow, reasons) from a query result, or None if it is not a decision."""
    try:
        value = json.loads(text)["expressions"][0]
        allow, deny = value["allow"], value["deny"]
    except (KeyError, TypeError, IndexError, ValueError):
        return None
    if not isinstance(allow, bool) or not isinstance(deny, list):
        return None
    return allow, tuple(sorted(str(d) for d in deny))


def _over_limit(error: PolicyLimitExceededError, where: str) -> PolicyRefusedError:
    if error.limit == "crashed":
        return PolicyRefusedError(
            "evaluation-error", f"{where}: the engine stopped on this policy"
        )
    rule = error.limit.replace("_", "-") + "-limit"
    return PolicyRefusedError(rule, f"{where}: the policy exceeded {error.description}")


_LOCATION = re.compile(r"\(error \d+:([^|]+)\|(\d+)\|")
_MESSAGE = re.compile(r"\(errormsg \d+:(.*?)\)\s*$", re.MULTILINE)


def _first_line(error: Exception) -> str:
    """rego-cpp's error tree -> 'x.rego (offset 44): this is unclosed'."""
    text = str(error)
    message = _MESSAGE.search(text)
    location = _LOCATION.search(text)
    what = message.group(1) if message else text.splitlines()[0][:200]
    if location:
        return f"{location.group(1)} (offset {location.group(2)}): {what}"
    return what
