"""The tenancy projection: who may see each event, folded from the domain's events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Tracking
from eventsourcing.popo import POPOTrackingRecorder

from domain.autopilot.usage import Usage
from domain.catalog.dataset import Dataset
from domain.dr.failover import Failover
from domain.dr.lag_alert import LagAlert
from domain.dr.lag_samples import LagSamples
from domain.er.evaluation import ErEvaluation
from domain.exports.policy import PLATFORM_POLICY, Policy, PolicyBinding
from domain.ledger.keys import SigningKeyRing
from domain.ops.switches import Switchboard
from projections.tenancy import (
    AGGREGATES,
    PLATFORM,
    PUBLIC,
    SOLITARY,
    TenancyChanges,
    TenancyProjection,
    TenancyView,
    audience,
)
from tests.conftest import dataset_spec

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

PLATFORM_ONLY = {Failover, LagAlert, LagSamples, ErEvaluation}
"""Aggregates no tenant reads: a new one must be put here, made public, or owned."""


class MemoryTenancyView(POPOTrackingRecorder, TenancyView):
    """The tenancy view in sets and dicts (the SQL views' contract, in memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: set[tuple[str, int]] = set()
        self.owner_of: dict[UUID, str] = {}
        self.published: dict[str, int] = {}
        self.bindings: set[tuple[str, str]] = set()

    def slice(self, tenant: str, *, after: int, until: int, limit: int) -> list[int]:
        seen = {p for who, p in self.rows if who in {tenant, PUBLIC}}
        return sorted(p for p in seen if after < p <= until)[:limit]

    def visible(self, tenant: str, position: int) -> bool:
        return bool({(tenant, position), (PUBLIC, position)} & self.rows)

    def owners(self, ids: Sequence[UUID]) -> dict[UUID, str]:
        return {i: self.owner_of[i] for i in ids if i in self.owner_of}

    def policies(self, digests: Sequence[str]) -> dict[str, int]:
        return {d: self.published[d] for d in digests if d in self.published}

    def binders(self, digests: Sequence[str]) -> set[tuple[str, str]]:
        return {b for b in self.bindings if b[0] in digests}

    def apply(self, changes: TenancyChanges, tracking: Tracking) -> None:
        self.rows |= changes.rows
        self.owner_of.update(changes.owners)
        self.published.update(changes.policies)
        self.bindings |= changes.bindings
        self.insert_tracking(tracking)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


def fold(*batches: Sequence[Any]) -> MemoryTenancyView:
    """Each batch's events at consecutive positions from 1, one batch per commit."""
    view = MemoryTenancyView()
    projection = TenancyProjection(view=view)
    position = 0
    for batch in batches:
        items = []
        for event in batch:
            position += 1
            items.append((event, Tracking("ledger", position)))
        projection.process_batch(items, Tracking("ledger", position))
    return view


def registered(tenant: str, name: str = "orders") -> Dataset:
    return Dataset.register(
        tenant=tenant, spec=dataset_spec(name), regions=frozenset({"EU"})
    )


def policy(rule: str, name: str = "export") -> Policy:
    source = f"package conductor.export\n{rule} := true\n"
    if name == PLATFORM_POLICY:
        return Policy.publish_platform([("floor.rego", source)])
    return Policy.publish(name=name, sources=[("p.rego", source)])


def test_every_domain_aggregate_has_a_known_audience() -> None:
    """Tenant-owned (a tenant on its Created event), public, shared, or named."""
    unplaced = []
    for aggregate in AGGREGATES:
        created = [
            v
            for v in vars(aggregate).values()
            if isinstance(v, type)
            and issubclass(v, Aggregate.Created)
            and any("tenant" in vars(k).get("__annotations__", {}) for k in v.__mro__)
        ]
        public = {SigningKeyRing, Switchboard, Policy}
        if not created and aggregate not in public | PLATFORM_ONLY:
            unplaced.append(aggregate.__qualname__)
    assert unplaced == []
    assert {a.__qualname__ for a in AGGREGATES} >= {
        "Dataset", "LineageGraph", "PolicyBinding", "Export", "TenantBudget",
        "Usage", "ErQuota", "EmbeddingJob", "Resolution",
    }  # fmt: skip


def test_a_datasets_later_events_follow_its_tenant_across_batches() -> None:
    """Amended, in a later commit, is acme's because Registered was."""
    dataset = registered("acme")
    created = dataset.collect_events()
    assert dataset.retire("done")
    view = fold(
        created, dataset.collect_events(), registered("globex").collect_events()
    )
    assert view.slice("acme", after=0, until=10, limit=10) == [1, 2]
    assert view.slice("globex", after=0, until=10, limit=10) == [3]
    assert not view.visible("acme", 3)


def test_a_policy_joins_a_slice_when_bound_whichever_comes_first() -> None:
    """Published then Bound, or a binding seen before the publication: same rows."""
    shared = policy("gate")
    bound_after = PolicyBinding(tenant="acme", name="export", digest=shared.digest)
    early = PolicyBinding(tenant="globex", name="export", digest=shared.digest)
    view = fold(
        early.collect_events(), shared.collect_events(), bound_after.collect_events()
    )
    assert view.slice("globex", after=0, until=10, limit=10) == [1, 2]
    assert view.slice("acme", after=0, until=10, limit=10) == [2, 3]
    assert view.slice("nobody", after=0, until=10, limit=10) == []


def test_public_keys_and_the_platform_floor_are_everyones_the_rest_no_ones() -> None:
    """Keys, the floor policy, the switches: PUBLIC; a Failover drill: PLATFORM."""
    ring = SigningKeyRing()
    ring.add(key_id="k1", public_key_pem="PEM", created_at="2026-01-01T00:00:00")
    keys, floor = ring.collect_events(), policy("floor", PLATFORM_POLICY)
    published = floor.collect_events()
    board = Switchboard()
    assert board.set("disable-er-assist", on=True, by="ops", reason="drill")
    switched = board.collect_events()
    assert {audience(e, {}) for e in [*keys, *published, *switched]} == {PUBLIC}
    view = fold(keys, published, switched)
    assert view.slice("anyone", after=0, until=10, limit=10) == [1, 2, 3, 4, 5]
    drill = Failover.start(mode="failover", sync=True, primary="A", standby="B")
    [started] = drill.collect_events()
    assert audience(started, {}) == PLATFORM
    assert fold([started]).slice("acme", after=0, until=5, limit=5) == []


def test_er_evaluations_are_platform_evidence() -> None:
    """The recall evidence is the platform's: in no tenant's slice, nor public."""
    from tests.unit.test_er_evaluations import evaluated  # noqa: PLC0415

    events = evaluated(0.5, 0.6).collect_events()
    assert {audience(e, {}) for e in events} == {PLATFORM}
    view = fold(events)
    assert view.slice("eval", after=0, until=5, limit=5) == []
    assert view.slice("acme", after=0, until=5, limit=5) == []


def test_one_event_aggregates_are_sliced_without_an_owner_row() -> None:
    """Usage records are the log's most frequent events: no id is kept for them."""
    assert Usage.UsageRecorded in SOLITARY
    assert Dataset.Registered not in SOLITARY
    usage = Usage(tenant="acme", start_ms=0, end_ms=60_000, classes={})
    view = fold(usage.collect_events())
    assert view.slice("acme", after=0, until=5, limit=5) == [1]
    assert view.owner_of == {}
