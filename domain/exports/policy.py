"""Policies are events: the exact Rego that decided is always in the log."""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import FieldViolation, ValidationError
from domain.topics import keep_stored_topics

if TYPE_CHECKING:
    from collections.abc import Sequence

ENGINE = "regopy"
EXPORT_POLICY = "export"
"""A tenant's export gate (the only name a tenant may publish under)."""
PLATFORM_POLICY = "platform-export"
"""The platform floor: evaluated on every export before the tenant's gate."""
_MODULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.rego")
MAX_SOURCE = 256 * 1024


def policy_digest(sources: Sequence[tuple[str, str]]) -> str:
    """SHA-256 over the canonical module set: sorted [name, source] pairs as JSON.

    The pairs hold only strings, so sorted-key compact JSON is RFC 8785.
    """
    canonical = json.dumps(
        sorted([n, s] for n, s in sources), separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class Policy(Aggregate):
    """One immutable published module set, identified by its digest."""

    class Published(Aggregate.Created):
        name: str
        sources: tuple[tuple[str, str], ...]
        digest: str
        engine: str

    @staticmethod
    def create_id(digest: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/policies/{digest}")

    @event(Published)
    def __init__(
        self,
        *,
        name: str,
        sources: tuple[tuple[str, str], ...],
        digest: str,
        engine: str,
    ) -> None:
        self.name = name
        self.sources = tuple((str(n), str(s)) for n, s in sources)
        self.digest = digest
        self.engine = engine

    @classmethod
    def publish_platform(cls, sources: Sequence[tuple[str, str]]) -> Policy:
        """The floor Conductor ships (not a tenant's to publish or replace)."""
        ordered = tuple(sorted((m, s) for m, s in sources))
        return cls(
            name=PLATFORM_POLICY,
            sources=ordered,
            digest=policy_digest(ordered),
            engine=ENGINE,
        )

    @classmethod
    def publish(cls, *, name: str, sources: Sequence[tuple[str, str]]) -> Policy:
        """Validate module names and sizes; the id is the digest's."""
        violations = [
            FieldViolation(f"modules[{i}].name", "pattern", "must look like name.rego")
            for i, (module, _) in enumerate(sources)
            if not _MODULE_NAME.fullmatch(module)
        ]
        violations += [
            FieldViolation(
                f"modules[{i}].source",
                "max-length",
                f"must be at most {MAX_SOURCE} characters",
            )
            for i, (_, source) in enumerate(sources)
            if len(source) > MAX_SOURCE
        ]
        if not sources:
            violations.append(
                FieldViolation("modules", "non-empty", "at least one module")
            )
        if len({m for m, _ in sources}) != len(sources):
            violations.append(
                FieldViolation("modules", "unique", "module names repeat")
            )
        if name != EXPORT_POLICY:
            violations.append(
                FieldViolation("name", "allowed-value", f"must be '{EXPORT_POLICY}'")
            )
        if violations:
            raise ValidationError(violations)
        ordered = tuple(sorted((m, s) for m, s in sources))
        return cls(
            name=name, sources=ordered, digest=policy_digest(ordered), engine=ENGINE
        )


class PolicyBinding(Aggregate):
    """Which policy decides a tenant's exports (the latest activation wins)."""

    class Bound(Aggregate.Created):
        tenant: str
        name: str
        digest: str

    class Rebound(Aggregate.Event):
        digest: str

    @staticmethod
    def create_id(tenant: str, name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/tenants/{tenant}/policies/{name}")

    @event(Bound)
    def __init__(self, *, tenant: str, name: str, digest: str) -> None:
        self.tenant = tenant
        self.name = name
        self.digest = digest

    def rebind(self, digest: str) -> bool:
        """Point at another policy; False (no event) if it already does."""
        if digest == self.digest:
            return False
        self._rebind(digest=digest)
        return True

    @event(Rebound)
    def _rebind(self, *, digest: str) -> None:
        self.digest = digest


keep_stored_topics(__name__, stored_as="domain.policy")
