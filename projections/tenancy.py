"""Who may see each event: the read model behind a tenant's slice of the log.

There is one global log, as in Certificate Transparency, and a tenant reads
the part of it that concerns them (their aggregates' events, the policies
they bound, the public keys) with inclusion proofs against the global tree's
signed checkpoints. A position with no row is the platform's (only the
``audit.platform`` scope reads it), so an event nobody classified stays
hidden: the safe default.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

import domain
from domain.exports.policy import PLATFORM_POLICY, Policy, PolicyBinding
from domain.ledger.keys import SigningKeyRing
from domain.ops.switches import Switchboard

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from uuid import UUID

PUBLIC = "(public)"
"""Every tenant sees it. Parentheses cannot occur in a tenant's name."""
PLATFORM = "(platform)"
"""Only ``audit.platform`` sees it (such positions get no row)."""
BOUND = "(bound)"
"""A policy: every tenant whose binding named its digest sees it."""

PUBLIC_EVENTS: tuple[type[Any], ...] = (
    SigningKeyRing.Started,
    SigningKeyRing.KeyAdded,
    Switchboard.Started,
    Switchboard.Engaged,
    Switchboard.Released,
)
"""Event types every tenant may read: the public keys that verify the proofs,
and the backout switches (they change how every tenant's exports are judged).

Add a class here to show its events to every tenant (it is decoded from then
on); narrow it by its fields in ``audience`` if only some of them are public.
"""


def audience(event: Any, owners: Mapping[UUID, str]) -> str:
    """Who may see ``event``: a tenant's name, PUBLIC, BOUND or PLATFORM.

    An aggregate whose Created event carries a ``tenant`` belongs to that
    tenant with all its later events (``owners`` maps their ids); a policy is
    shared by digest, so it is BOUND, except the platform floor, which judges
    every tenant's exports and so is PUBLIC; anything else is the platform's.
    """
    if isinstance(event, PUBLIC_EVENTS):
        return PUBLIC
    if isinstance(event, Policy.Published):
        return PUBLIC if event.name == PLATFORM_POLICY else BOUND
    if isinstance(event, Aggregate.Created):
        tenant = getattr(event, "tenant", None)
        return tenant if isinstance(tenant, str) else PLATFORM
    return owners.get(event.originator_id, PLATFORM)


def _aggregates() -> list[type[Aggregate]]:
    """Every aggregate class the domain package defines."""
    found: list[type[Aggregate]] = []
    for info in pkgutil.walk_packages(domain.__path__, "domain."):
        module = importlib.import_module(info.name)
        found += [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, Aggregate)
            and value.__module__ == module.__name__
        ]
    return found


def _events(aggregate: type[Aggregate]) -> list[type[Any]]:
    return [
        value
        for value in vars(aggregate).values()
        if isinstance(value, type) and issubclass(value, Aggregate.Event)
    ]


def _solitary(aggregate: type[Aggregate]) -> list[type[Any]]:
    """Created events of an aggregate that has no other events (no owner row)."""
    base = vars(aggregate).get("Event")
    events = _events(aggregate)
    later = [
        e for e in events if not issubclass(e, Aggregate.Created) and e is not base
    ]
    return [] if later else [e for e in events if issubclass(e, Aggregate.Created)]


AGGREGATES = tuple(_aggregates())
BINDINGS = (PolicyBinding.Bound, PolicyBinding.Rebound)
SOLITARY = frozenset(c for a in AGGREGATES for c in _solitary(a))
"""Usage records and the like: one event each, so no id needs remembering."""


@dataclass
class TenancyChanges:
    """One batch folded: slice rows to add and the lookups behind them."""

    rows: set[tuple[str, int]] = field(default_factory=set)
    """(audience, position): a tenant's name or PUBLIC."""
    owners: dict[UUID, str] = field(default_factory=dict)
    policies: dict[str, int] = field(default_factory=dict)
    """Policy digest -> the position of its Published event."""
    bindings: set[tuple[str, str]] = field(default_factory=set)
    """(digest, tenant) of every binding seen."""


class TenancyView(TrackingRecorder):
    """What the tenancy projection writes and the log's API reads."""

    @abstractmethod
    def slice(self, tenant: str, *, after: int, until: int, limit: int) -> list[int]:
        """Positions in (after, until] the tenant may see (theirs and PUBLIC)."""

    @abstractmethod
    def visible(self, tenant: str, position: int) -> bool:
        """Whether the tenant may see the event at ``position``."""

    @abstractmethod
    def owners(self, ids: Sequence[UUID]) -> dict[UUID, str]:
        """The tenant owning each of these aggregates (unknown ones left out)."""

    @abstractmethod
    def policies(self, digests: Sequence[str]) -> dict[str, int]:
        """Where each of these policies was published (unknown ones left out)."""

    @abstractmethod
    def binders(self, digests: Sequence[str]) -> set[tuple[str, str]]:
        """(digest, tenant) of the tenants that bound these policies."""

    @abstractmethod
    def apply(self, changes: TenancyChanges, tracking: Tracking) -> None:
        """Add the rows and lookups and record tracking, in one transaction."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every row and the tracking position."""

    def close(self) -> None:
        """Release connections of the view's own."""


class TenancyProjection(Projection[TenancyView]):
    name = "tenancy"
    topics = tuple(sorted({get_topic(e) for a in AGGREGATES for e in _events(a)}))

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_batch([(domain_event, tracking)], tracking)

    def process_batch(
        self, items: Sequence[tuple[Any, Tracking]], tracking: Tracking
    ) -> None:
        known = self._known([event for event, _ in items])
        changes = TenancyChanges()
        for event, event_tracking in items:
            self._apply(event, event_tracking.notification_id, known, changes)
        self.view.apply(changes, tracking)

    def _known(self, events: Sequence[Any]) -> TenancyChanges:
        """What the view already holds about the aggregates and digests touched."""
        ids = {e.originator_id for e in events if not isinstance(e, Aggregate.Created)}
        bound = {e.digest for e in events if isinstance(e, BINDINGS)}
        published = [e.digest for e in events if isinstance(e, Policy.Published)]
        return TenancyChanges(
            owners=self.view.owners(sorted(ids, key=str)) if ids else {},
            policies=self.view.policies(sorted(bound)) if bound else {},
            bindings=self.view.binders(published) if published else set(),
        )

    def _apply(
        self, event: Any, position: int, known: TenancyChanges, changes: TenancyChanges
    ) -> None:
        who = audience(event, known.owners)
        if who == PLATFORM:
            return
        if who != BOUND:
            changes.rows.add((who, position))
        tenant = who not in {PUBLIC, BOUND}
        created = isinstance(event, Aggregate.Created)
        if tenant and created and type(event) not in SOLITARY:
            known.owners[event.originator_id] = who
            changes.owners[event.originator_id] = who
        if isinstance(event, Policy.Published):
            known.policies[event.digest] = changes.policies[event.digest] = position
            changes.rows.update(
                (binder, position)
                for digest, binder in known.bindings
                if digest == event.digest
            )
        elif tenant and isinstance(event, BINDINGS):
            # A tenant's binding shows it the policy it names, once.
            known.bindings.add((event.digest, who))
            changes.bindings.add((event.digest, who))
            if event.digest in known.policies:
                changes.rows.add((who, known.policies[event.digest]))
