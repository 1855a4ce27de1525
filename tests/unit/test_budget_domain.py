"""TenantBudget: the rules a budget must keep, and the autopilot's standing state."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.autopilot.budget import BudgetNotSetError, TenantBudget
from domain.errors import ValidationError

SLO = {"query": {"availability": Decimal("0.999"), "latency_p95_ms": 250}}


def test_every_broken_rule_is_named_by_field_and_rule() -> None:
    budget = TenantBudget(tenant="acme")
    with pytest.raises(ValidationError) as caught:
        budget.set_budget(
            period="fortnight",
            cost_cap_units=Decimal(0),
            slo={
                "query": {"availability": Decimal("1.5"), "latency_p95_ms": 300},
                "gossip": {"availability": Decimal("0.9"), "latency_p95_ms": 250},
            },
            at_ms=0,
        )
    found = {(v.field, v.rule) for v in caught.value.violations}
    assert found == {
        ("period", "enum"),
        ("costCapUnits", "positive"),
        ("slo.query.availability", "range"),
        ("slo.query.latencyP95Ms", "histogram-bound"),
        ("slo.gossip", "enum"),
    }
    assert budget.version == 1  # nothing recorded but the opening


def test_setting_the_same_budget_twice_records_nothing() -> None:
    budget = TenantBudget(tenant="acme")
    assert budget.set_budget(
        period="day", cost_cap_units=Decimal(100), slo=SLO, at_ms=1
    )
    version = budget.version
    assert not budget.set_budget(
        period="day", cost_cap_units=Decimal(100), slo=SLO, at_ms=2
    )
    assert budget.version == version


def test_the_tightest_bucket_is_the_one_in_force() -> None:
    budget = TenantBudget(tenant="acme")
    budget.set_budget(period="day", cost_cap_units=Decimal(100), slo=SLO, at_ms=1)
    assert budget.effective_shaping() is None
    budget.engage_shaping(
        rate=Decimal(5), burst=Decimal(50), reason="cost-cap", evidence={}, at_ms=2
    )
    budget.engage_shaping(
        rate=Decimal(2), burst=Decimal(20), reason="slo-page", evidence={}, at_ms=3
    )
    assert budget.effective_shaping() == {
        "rate": Decimal(2),
        "burst": Decimal(20),
        "reason": "slo-page",
    }
    budget.release_shaping(reason="slo-page", evidence={}, at_ms=4)
    assert budget.effective_shaping()["reason"] == "cost-cap"  # type: ignore[index]


def test_a_cap_needs_a_budget() -> None:
    budget = TenantBudget(tenant="acme")
    with pytest.raises(BudgetNotSetError):
        budget.adjust_cap(
            new=Decimal(1), reason="x", burn_rate=Decimal(2), evidence={}, at_ms=0
        )
