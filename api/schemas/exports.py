"""Export bodies: policies, export requests, decisions, reviews, deliveries."""

from __future__ import annotations

from uuid import UUID  # noqa: TC003 - msgspec resolves at runtime

from api.schemas.base import In, Out


class PolicyModuleIn(In):
    name: str
    source: str


class PolicyCreate(In):
    name: str
    modules: list[PolicyModuleIn]


class PolicyModuleOut(Out, frozen=True):
    name: str
    source: str


class PolicyOut(Out, frozen=True):
    digest: str
    name: str
    engine: str
    modules: list[PolicyModuleOut]
    position: int | None = None


class PolicyBindingOut(Out, frozen=True):
    """One binding of the tenant's export gate: which policy, from when."""

    digest: str
    name: str
    bound_at: int
    """Log position of the binding event."""
    published_at: int
    """Log position of the policy's publication."""
    active: bool
    """Whether the gate is bound to it now (the newest binding)."""


class PolicyPage(Out, frozen=True):
    items: list[PolicyBindingOut]
    next: str | None
    """Opaque cursor for the next page (pass as ?after=); null at the end."""
    platform_digest: str
    """The platform floor every export passes first (shipped, not tenant's)."""


class PolicyPublished(Out, frozen=True):
    digest: str
    position: int | None


class ExportCreate(In):
    dataset_id: UUID
    preset: str
    purpose: str
    destination_region: str


class DeniedByOut(Out, frozen=True):
    """Which policy gave which reasons (the decision's reasons are their union)."""

    platform: list[str]
    tenant: list[str]


class ReviewOut(Out, frozen=True):
    approved: bool
    reviewer: str
    reason: str


class DecisionOut(Out, frozen=True):
    allow: bool
    reasons: list[str]
    policy_digest: str
    input_digest: str
    platform_policy_digest: str | None = None
    """The platform floor that judged first (None on decisions made before it)."""
    denied_by: DeniedByOut | None = None
    limit: str | None = None
    """The evaluation limit the tenant's policy hit, when it denied for that."""
    review: ReviewOut | None = None


class ReviewCreate(In):
    approve: bool
    reason: str


class DeliveryOut(Out, frozen=True):
    file: str
    content_sha256: str
    bytes: int
    rows: int


class ProgressOut(Out, frozen=True):
    """How far the DLP step has read the source file (rows are known only
    once it is delivered: ``delivery.rows``)."""

    bytes_read: int
    bytes_total: int
    percent: float


class ExportOut(Out, frozen=True):
    id: UUID
    dataset_id: UUID
    dataset_version: int
    status: str
    preset: str
    purpose: str
    destination_region: str
    requester: str
    decision: DecisionOut | None
    delivery: DeliveryOut | None = None
    progress: ProgressOut | None = None
    failure: str | None = None
    """stage:reason of a failed export."""
    failure_detail: str | None = None
    """What the failing stage reported (column names, counts; never values)."""
    proof: str | None = None
    """Where the signed proof bundle is, once issued."""
    position: int | None = None


class PresetColumnOut(Out, frozen=True):
    action: str
    """The DLP engine's label for what it does (tokenized, masked, dropped, ...)."""
    meaning: str
    rescanned: bool
    """Whether output values are re-scanned for residual PII."""


class PresetOut(Out, frozen=True):
    name: str
    always_denied: bool
    """The platform floor denies every export with this preset."""
    classifications: dict[str, PresetColumnOut]
    """What happens to a column of each classification ("(unclassified)": none)."""


class PresetsOut(Out, frozen=True):
    presets: list[PresetOut]


class ExportPage(Out, frozen=True):
    items: list[ExportOut]
    next: str | None
