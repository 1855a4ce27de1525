"""Export policies as events: the platform floor and each tenant's own gate.

A policy is published once per digest (its id is the digest's) and a tenant's
PolicyBinding points at the one in force. The platform floor is published by
Conductor itself, from the sources this version ships, the first time it is
needed; a tenant may neither publish it nor see another tenant's policies.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError

from application.base import LedgerApplication
from application.exports.gate import (
    default_policy_sources,
    platform_policy_sources,
    probe_inputs,
)
from application.ports import PolicyRefusedError
from domain.errors import FieldViolation, NotFoundError, ValidationError
from domain.exports.policy import EXPORT_POLICY, Policy, PolicyBinding, policy_digest

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from application.ports import EventLog, PolicyEngine

POLICY_CACHE = 256


class PolicyNotFoundError(NotFoundError):
    def __init__(self, digest: str) -> None:
        self.digest = digest
        super().__init__(f"policy {digest} not found")


@dataclass(frozen=True, slots=True)
class PolicyResult:
    digest: str
    position: int | None
    created: bool


class ExportPolicies(LedgerApplication):
    """Publication, binding and lookup of export policies (cached by digest)."""

    name = "ledger"

    def __init__(self, log: EventLog, *, engine: PolicyEngine) -> None:
        super().__init__(log)
        self.engine = engine
        self.platform_digest = policy_digest(platform_policy_sources())
        self.default_digest = policy_digest(default_policy_sources())
        self._policies: dict[str, tuple[Policy, int]] = {}
        """Published policies by digest, with their log position (immutable)."""
        self._bindings: dict[UUID, tuple[int, str]] = {}
        """Policy bindings by id: (version, digest) as last loaded."""

    def publish_policy(
        self,
        *,
        tenant: str,
        name: str,
        sources: Sequence[tuple[str, str]],
    ) -> PolicyResult:
        """Check under the limits, publish (once per digest) and bind the tenant."""
        policy = Policy.publish(name=name, sources=sources)
        if policy.digest == self.platform_digest:
            raise ValidationError(
                [FieldViolation("modules", "reserved", "this is the platform floor")]
            )
        if policy.digest != self.default_digest:  # the shipped one is known good
            try:
                self.engine.check(policy.sources, probe_inputs(), tenant=tenant)
            except PolicyRefusedError as error:
                raise ValidationError(
                    [FieldViolation("modules", error.rule, str(error))]
                ) from None
        return self._publish(tenant, policy)

    def _publish(self, tenant: str, policy: Policy) -> PolicyResult:
        existing = self._load(policy.id)
        binding = self._load(PolicyBinding.create_id(tenant, policy.name))
        aggregates: list[Any] = [] if isinstance(existing, Policy) else [policy]
        if isinstance(binding, PolicyBinding):
            if binding.rebind(policy.digest):
                aggregates.append(binding)
        else:
            aggregates.append(
                PolicyBinding(tenant=tenant, name=policy.name, digest=policy.digest)
            )
        if not aggregates:
            return PolicyResult(policy.digest, None, created=False)
        try:
            recordings = self.save(*aggregates)
        except IntegrityError:  # another process published or bound first
            return self._publish(tenant, policy)
        return PolicyResult(
            policy.digest, recordings[-1].notification.id, created=existing is None
        )

    def platform_policy(self) -> Policy:
        """The floor this version ships, published into the log on first use."""
        cached = self._policies.get(self.platform_digest)
        if cached is not None:
            return cached[0]
        if not isinstance(self._load(Policy.create_id(self.platform_digest)), Policy):
            with contextlib.suppress(IntegrityError):  # another process was first
                self.save(Policy.publish_platform(platform_policy_sources()))
        return self.get_policy(self.platform_digest)

    def get_policy(self, digest: str) -> Policy:
        """A published policy (immutable: its id is its digest, so it is cached)."""
        cached = self._policies.get(digest)
        if cached is not None:
            return cached[0]
        policy = self._load(Policy.create_id(digest))
        if not isinstance(policy, Policy):
            raise PolicyNotFoundError(digest)
        position = self.policy_position(digest)
        if len(self._policies) >= POLICY_CACHE:
            self._policies.clear()
        self._policies[policy.digest] = (policy, position)
        return policy

    def visible_policy(self, tenant: str, digest: str) -> tuple[Policy, int | None]:
        """A policy the tenant may read (the shipped ones, or one it has bound)
        and its log position (None: shipped, not yet needed by any decision)."""
        if digest == self.platform_digest:
            shipped = Policy.publish_platform(platform_policy_sources())
        elif digest == self.default_digest:
            shipped = Policy.publish(
                name=EXPORT_POLICY, sources=default_policy_sources()
            )
        elif digest in self.bound_digests(tenant):
            return self.get_policy(digest), self.policy_position(digest)
        else:
            raise PolicyNotFoundError(digest)
        try:
            return self.get_policy(digest), self.policy_position(digest)
        except PolicyNotFoundError:
            return shipped, None

    def bound_digests(self, tenant: str) -> set[str]:
        """Every digest the tenant's export binding has ever pointed at."""
        return {digest for digest, _ in self.bindings(tenant)}

    def bindings(self, tenant: str) -> list[tuple[str, int]]:
        """The digests the tenant's export gate was bound to, newest first,
        each with the log position of its Bound or Rebound event."""
        binding_id = PolicyBinding.create_id(tenant, EXPORT_POLICY)
        found = [
            (str(json.loads(entry.state).get("digest", "")), entry.position)
            for entry in self.event_log.entries_for(binding_id)
        ]
        return [(digest, at) for digest, at in reversed(found) if digest]

    def active_policy(self, tenant: str) -> Policy:
        """The tenant's bound export policy; the built-in one until they publish.

        A binding changes rarely and may change in another process: the
        latest stored version is checked on every call (one indexed row) and
        the aggregate is only rebuilt when it moved.
        """
        binding_id = PolicyBinding.create_id(tenant, EXPORT_POLICY)
        latest = self.recorder.select_events(binding_id, desc=True, limit=1)
        if latest:
            version = latest[0].originator_version
            cached = self._bindings.get(binding_id)
            if cached is not None and cached[0] == version:
                return self.get_policy(cached[1])
            binding = self._load(binding_id)
            if isinstance(binding, PolicyBinding):
                self._bindings[binding_id] = (binding.version, binding.digest)
                return self.get_policy(binding.digest)
        default = Policy.publish(name=EXPORT_POLICY, sources=default_policy_sources())
        self._publish(tenant, default)
        return self.active_policy(tenant)

    def policy_position(self, digest: str) -> int:
        """Where the policy's publication sits in the log."""
        cached = self._policies.get(digest)
        if cached is not None:
            return cached[1]
        entries = self.event_log.entries_for(Policy.create_id(digest))
        if not entries:
            raise PolicyNotFoundError(digest)
        return entries[0].position
