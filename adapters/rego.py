"""The export gate's engine: Rego v1 evaluated in-process by regopy (rego-cpp).

Facts measured here (see NOTES): compile once per digest into a bundle with
the decision as its entrypoint, and query that (the default gate: ~2.4k
queries/s, against ~1k re-parsing each time and ~2.1k through a query
string); pass the input as a regopy.Input built from the dict (~5.8k/s,
against ~3.4k/s parsing a JSON string); query a decision object, because a
false boolean comes back as undefined; read the output while the Output
object is alive. An interpreter is not thread-safe, so each compiled policy
has a lock.
"""

from __future__ import annotations

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

from application.ports import Verdict

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ENTRYPOINT = "conductor/export/decision"
UNDEFINED = "policy_decision_undefined"


class _Compiled:
    def __init__(self, sources: Sequence[tuple[str, str]]) -> None:
        self.interpreter = regopy.Interpreter()
        for name, source in sources:
            self.interpreter.add_module(name, source)
        self.bundle = self.interpreter.build(None, [ENTRYPOINT])
        self.lock = threading.Lock()

    def decide(self, document: Mapping[str, Any]) -> Any:
        given = regopy.Input(document)
        with self.lock:
            self.interpreter.set_input(given)
            output = self.interpreter.query_bundle_entrypoint(self.bundle, ENTRYPOINT)
            text = str(output)  # read while `output` is alive
        try:
            return json.loads(text)
        except ValueError:
            return None  # "undefined" and other non-results


class RegoEngine:
    """Compiled policies by digest; decisions as Verdicts, failing closed."""

    def __init__(self) -> None:
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    @property
    def engine(self) -> str:
        return f"regopy/{regopy.__version__}"

    def check(self, sources: Sequence[tuple[str, str]]) -> None:
        """Compile without keeping; RegoError becomes ValueError with the message."""
        try:
            compiled = _Compiled(sources)
            result = compiled.decide({})
        except regopy.RegoError as error:
            raise ValueError(_first_line(error)) from None
        if _decision(result) is None:
            msg = (
                "the modules must define data.conductor.export.decision as "
                '{"allow": bool, "deny": [reasons]}'
            )
            raise ValueError(msg)

    def evaluate(
        self,
        digest: str,
        sources: Sequence[tuple[str, str]],
        document: Mapping[str, Any],
    ) -> Verdict:
        compiled = self._compiled.get(digest)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(digest)
                if compiled is None:
                    compiled = self._compiled[digest] = _Compiled(sources)
        decision = _decision(compiled.decide(document))
        if decision is None:
            return Verdict(allow=False, reasons=(UNDEFINED,))
        allow, reasons = decision
        # A policy that allows while listing reasons is contradictory: deny.
        return Verdict(allow=allow and not reasons, reasons=reasons)


def _decision(result: Any) -> tuple[bool, tuple[str, ...]] | None:
    """(allow, reasons) from a query result, or None if it is not a decision."""
    try:
        value = result["expressions"][0]
        allow, deny = value["allow"], value["deny"]
    except (KeyError, TypeError):
        return None
    if not isinstance(allow, bool) or not isinstance(deny, list):
        return None
    return allow, tuple(sorted(str(d) for d in deny))


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
