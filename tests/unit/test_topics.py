"""Stored topics outlive the module layout: moved aggregates keep theirs."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.utils import get_topic, resolve_topic

import domain
from domain.catalog.dataset import Dataset
from domain.er.resolution import Resolution
from domain.exports.export import Export
from domain.ledger.keys import SigningKeyRing

STORED_MODULES = {
    "domain.catalog.dataset": "domain.dataset",
    "domain.catalog.lineage": "domain.lineage",
    "domain.exports.export": "domain.export",
    "domain.exports.policy": "domain.policy",
    "domain.dr.failover": "domain.failover",
    "domain.dr.lag_alert": "domain.lag_alert",
    "domain.autopilot.budget": "domain.budget",
    "domain.autopilot.usage": "domain.usage",
    "domain.er.resolution": "domain.er",
    "domain.ledger.keys": "domain.keys",
    "domain.ops.switches": "domain.switches",
}
"""Where each module's events were first stored (before the regrouping)."""


def _classes() -> list[type]:
    found: list[type] = []
    for info in pkgutil.walk_packages(domain.__path__, "domain."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Aggregate)
                and value.__module__ == module.__name__
            ):
                found.append(value)
                found += [
                    e
                    for e in vars(value).values()
                    if isinstance(e, type) and issubclass(e, CanMutateAggregate)
                ]
    return found


def test_every_aggregate_and_event_keeps_its_stored_topic() -> None:
    classes = _classes()
    assert len(classes) > 40
    for cls in classes:
        module = cls.__module__
        stored = STORED_MODULES.get(module, module)
        assert get_topic(cls) == f"{stored}:{cls.__qualname__}"
        assert resolve_topic(get_topic(cls)) is cls


@pytest.mark.parametrize(
    ("cls", "topic"),
    [
        (Dataset.Registered, "domain.dataset:Dataset.Registered"),
        (Export.Decided, "domain.export:Export.Decided"),
        (Resolution.MergeDecided, "domain.er:Resolution.MergeDecided"),
        (SigningKeyRing.KeyAdded, "domain.keys:SigningKeyRing.KeyAdded"),
        (Dataset, "domain.dataset:Dataset"),
    ],
)
def test_topics_in_logs_written_before_the_move_still_resolve(
    cls: type, topic: str
) -> None:
    assert resolve_topic(topic) is cls
    assert get_topic(cls) == topic


def test_every_module_holding_aggregates_is_listed() -> None:
    """A new aggregate module needs no entry (its topic is its own module);
    an entry naming a module without aggregates is a mistake."""
    holding = {cls.__module__ for cls in _classes()}
    assert set(STORED_MODULES) <= holding
