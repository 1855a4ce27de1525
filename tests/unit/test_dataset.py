"""The Dataset aggregate: given events, when a command, then events or an error."""

from __future__ import annotations

import dataclasses
from uuid import uuid4

import pytest

from domain.catalog.dataset import Dataset
from domain.errors import DatasetRetiredError, ValidationError
from domain.values import Column, DatasetSpec

REGIONS = frozenset({"US", "EU", "UK"})


def spec(**overrides: object) -> DatasetSpec:
    base = DatasetSpec(
        name="orders",
        license="Restricted-TOS",
        purposes=("investigation",),
        retention="P1Y",
        region="EU",
        contract_version="v1",
        columns=(Column("email", "pii.email"),),
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def types(dataset: Dataset) -> list[str]:
    return [type(e).__name__ for e in dataset.collect_events()]


class TestRegister:
    def test_register_emits_registered_with_the_natural_key_id(self) -> None:
        """The id is derived from (tenant, name), so the same name maps to one id."""
        dataset = Dataset.register(tenant="acme", spec=spec(), regions=REGIONS)
        assert dataset.id == Dataset.create_id("acme", "orders")
        assert dataset.id != Dataset.create_id("globex", "orders")
        assert types(dataset) == ["Registered"]
        assert dataset.spec == spec()

    def test_register_refuses_a_region_outside_the_configured_list(self) -> None:
        """Regions come from configuration; others name the field and rule."""
        with pytest.raises(ValidationError) as caught:
            Dataset.register(tenant="acme", spec=spec(region="MARS"), regions=REGIONS)
        assert [(v.field, v.rule) for v in caught.value.violations] == [
            ("region", "allowed-region")
        ]

    def test_register_refuses_itself_as_upstream(self) -> None:
        """A dataset cannot feed itself."""
        own = Dataset.create_id("acme", "orders")
        with pytest.raises(ValidationError) as caught:
            Dataset.register(
                tenant="acme", spec=spec(), upstream=[own], regions=REGIONS
            )
        assert caught.value.violations[0].rule == "not-self"

    def test_register_deduplicates_upstream_links(self) -> None:
        """Repeated upstream ids are recorded once."""
        up = uuid4()
        dataset = Dataset.register(
            tenant="acme", spec=spec(), upstream=[up, up], regions=REGIONS
        )
        assert dataset.upstream == (up,)


class TestAmend:
    def test_amend_records_the_whole_spec_and_what_changed(self) -> None:
        """Amended carries the spec in force and the names of the changed fields."""
        dataset = Dataset.register(tenant="acme", spec=spec(), regions=REGIONS)
        dataset.collect_events()
        assert dataset.amend(spec(description="new", tags=("a",)), regions=REGIONS)
        (event,) = dataset.collect_events()
        assert isinstance(event, Dataset.Amended)
        assert event.changed == ("description", "tags")
        assert event.description == "new"
        assert event.license == "Restricted-TOS"
        assert dataset.version == 2

    def test_amend_with_no_change_emits_nothing(self) -> None:
        """An identical spec is a no-op: no event, same version."""
        dataset = Dataset.register(tenant="acme", spec=spec(), regions=REGIONS)
        dataset.collect_events()
        assert not dataset.amend(spec(), regions=REGIONS)
        assert dataset.collect_events() == []
        assert dataset.version == 1

    def test_amend_refuses_a_rename(self) -> None:
        """The name is the natural key: renaming would orphan the id."""
        dataset = Dataset.register(tenant="acme", spec=spec(), regions=REGIONS)
        with pytest.raises(ValidationError) as caught:
            dataset.amend(spec(name="other"), regions=REGIONS)
        assert caught.value.violations[0].rule == "immutable"

    def test_amend_after_retire_raises_dataset_retired(self) -> None:
        """A retired dataset cannot be amended."""
        dataset = Dataset.register(tenant="acme", spec=spec(), regions=REGIONS)
        dataset.retire("superseded")
        with pytest.raises(DatasetRetiredError):
            dataset.amend(spec(description="late"), regions=REGIONS)


class TestLineageAndRetire:
    def test_link_upstream_adds_only_new_ids(self) -> None:
        """Linking is additive and idempotent."""
        a, b = uuid4(), uuid4()
        dataset = Dataset.register(
            tenant="acme", spec=spec(), upstream=[a], regions=REGIONS
        )
        dataset.collect_events()
        assert dataset.link_upstream([a, b]) == (b,)
        assert dataset.link_upstream([a, b]) == ()
        assert types(dataset) == ["LineageLinked"]
        assert dataset.upstream == (a, b)

    def test_link_upstream_on_a_retired_dataset_raises(self) -> None:
        """Retired datasets keep their lineage frozen."""
        dataset = Dataset.register(tenant="acme", spec=spec(), regions=REGIONS)
        dataset.retire()
        with pytest.raises(DatasetRetiredError):
            dataset.link_upstream([uuid4()])

    def test_retire_twice_emits_one_event(self) -> None:
        """Retiring is idempotent: the second call records nothing."""
        dataset = Dataset.register(tenant="acme", spec=spec(), regions=REGIONS)
        dataset.collect_events()
        assert dataset.retire("old")
        assert not dataset.retire("again")
        assert types(dataset) == ["Retired"]
        assert dataset.retired_reason == "old"

    def test_replaying_events_rebuilds_the_same_state(self) -> None:
        """Event methods only assign state, so replay gives the same aggregate."""
        dataset = Dataset.register(tenant="acme", spec=spec(), regions=REGIONS)
        dataset.amend(spec(owner="team"), regions=REGIONS)
        dataset.link_upstream([uuid4()])
        dataset.retire("done")
        events = dataset.collect_events()
        replayed = None
        for event in events:
            replayed = event.mutate(replayed)
        assert replayed is not None
        assert replayed.spec == dataset.spec
        assert replayed.upstream == dataset.upstream
        assert replayed.retired is True
        assert replayed.version == dataset.version
