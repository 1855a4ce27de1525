"""The export gate: the platform floor, then the tenant's own policy.

Both are Rego module sets published as events. The floor (shipped in
``application/exports/policies/platform.rego``) judges every export; the tenant's
policy is judged after it, and the export is allowed only when both allow, so
a tenant can add denials but never remove one. The same `judge` serves the
live decision and the auditor's replay.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import rfc8785

from domain.values import MAX_COLUMNS, MAX_ITEMS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from application.ports import PolicyEngine, Verdict
    from domain.exports.policy import Policy

DEFAULT_MODULE = "export.rego"
PLATFORM_MODULE = "platform.rego"


def _shipped(module: str) -> tuple[tuple[str, str], ...]:
    source = resources.files("application.exports.policies").joinpath(module)
    return ((module, source.read_text(encoding="utf-8")),)


def default_policy_sources() -> tuple[tuple[str, str], ...]:
    """The tenants' built-in gate (adds no rule to the floor)."""
    return _shipped(DEFAULT_MODULE)


def platform_policy_sources() -> tuple[tuple[str, str], ...]:
    """The platform floor shipped with this version of Conductor."""
    return _shipped(PLATFORM_MODULE)


def input_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of the RFC 8785 form of a policy input."""
    return hashlib.sha256(rfc8785.dumps(dict(document))).hexdigest()


@dataclass(frozen=True, slots=True)
class GateDecision:
    """Both policies' verdicts and what they add up to."""

    floor: Verdict
    tenant: Verdict

    @property
    def allow(self) -> bool:
        return self.floor.allow and self.tenant.allow

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every reason either policy gave (a code appears once)."""
        return tuple(sorted({*self.floor.reasons, *self.tenant.reasons}))

    @property
    def limit(self) -> str:
        return self.tenant.limit or self.floor.limit


def judge(
    engine: PolicyEngine,
    floor: Policy,
    policy: Policy,
    document: Mapping[str, Any],
    *,
    tenant: str = "",
) -> GateDecision:
    """The floor's verdict, then the tenant policy's, on one input."""
    floor_verdict = engine.evaluate(floor.digest, floor.sources, document)
    tenant_verdict = engine.evaluate(
        policy.digest, policy.sources, document, tenant=tenant
    )
    return GateDecision(floor=floor_verdict, tenant=tenant_verdict)


def same_outcome(recorded: Verdict, replayed: Verdict) -> bool:
    """Whether a replayed verdict reproduces a recorded one.

    A limit is a property of the run, not of the input: a replay that also
    stops at a limit (any limit) reproduces a recorded limit denial.
    """
    if recorded.limit or replayed.limit:
        return bool(recorded.limit and replayed.limit)
    return (recorded.allow, recorded.reasons) == (replayed.allow, replayed.reasons)


def _probe(
    *,
    license_: str = "Restricted-TOS",
    purposes: tuple[str, ...] = ("investigation",),
    columns: int = 2,
    status: str = "active",
    contract: str = "active",
    region: str = "EU",
    preset: str = "tokenize_strict",
    destination: str = "EU",
) -> dict[str, Any]:
    return {
        "dataset": {
            "id": "00000000-0000-4000-8000-000000000000",
            "version": 3,
            "name": "probe",
            "license": license_,
            "purposes": list(purposes),
            "region": region,
            "retention": "P1Y",
            "status": status,
            "contract_status": contract,
            "contract_version": "1.0.0",
            "columns": {
                f"column_{i:03d}": ("pii.email" if i % 3 == 0 else "public")
                for i in range(columns)
            },
        },
        "request": {
            "purpose": purposes[0] if purposes else "investigation",
            "preset": preset,
            "destination_region": destination,
            "requester": "probe",
        },
    }


def probe_inputs() -> list[dict[str, Any]]:
    """Inputs a policy must decide within its limits before it is published:
    the common shape and the largest a real dataset may have (every preset,
    embargo, retirement, a suspended contract, the most purposes and columns)."""
    many = tuple(f"purpose-{i:02d}" for i in range(MAX_ITEMS))
    return [
        _probe(),
        _probe(license_="Embargoed", preset="none", destination="US"),
        _probe(status="retired", contract="suspended", region="UK"),
        _probe(purposes=many, columns=MAX_COLUMNS, preset="mask"),
        _probe(preset="redact", region="US", destination="US"),
    ]
