"""The three simulated scenarios against the real controller, meter and log.

Each runs in virtual time over a real SQLite log (about 20 s of wall time
each); the assertions are the issue's: what was shaped or capped, when, and
that every action is an event whose evidence is the numbers the controller
saw.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from adapters.ledger.store import open_ledger
from api.tools.autopilot_sim import SCENARIOS, START, Timeline, simulate
from application.autopilot.budgets import Budgets
from domain.autopilot.budget import TenantBudget

if TYPE_CHECKING:
    from pathlib import Path

    from application.autopilot.actions import Action

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim")


@pytest.fixture(scope="module")
def burst(workdir: Path) -> Timeline:
    return simulate(SCENARIOS["burst"], workdir)


@pytest.fixture(scope="module")
def slow_burn(workdir: Path) -> Timeline:
    return simulate(SCENARIOS["slow-burn"], workdir)


@pytest.fixture(scope="module")
def noisy(workdir: Path) -> Timeline:
    return simulate(SCENARIOS["noisy-neighbour"], workdir)


def kinds(timeline: Timeline, tenant: str | None = None) -> list[str]:
    return [a.kind for a in timeline.actions if tenant in {None, a.tenant}]


def at(action: Action) -> float:
    return action.at_s - START


def events(workdir: Path, scenario: str, tenant: str) -> list[object]:
    ledger = open_ledger(f"sqlite:///{workdir / scenario}.db")
    try:
        budgets = Budgets(ledger)
        return list(budgets.repository.event_store.get(TenantBudget.create_id(tenant)))
    finally:
        ledger.close()


def test_burst_pages_then_shapes_the_noisy_tenant_only(burst: Timeline) -> None:
    engaged = [a for a in burst.actions if a.kind == "shaping-engaged"]
    assert [a.tenant for a in engaged] == ["noisy"]
    # the burst starts at 30 min; the controller acts within a few ticks
    assert 1800 <= at(engaged[0]) <= 1800 + 5 * 60
    assert "slo-page" in [
        a.reason
        for a in burst.actions
        if a.kind == "guard-breached" and a.tenant == "noisy"
    ]
    for quiet in ("quiet-a", "quiet-b"):
        assert "shaping-engaged" not in kinds(burst, quiet)
        served = [s["tenants"][quiet]["throttledRps"] for s in burst.samples]
        assert max(served) == 0  # never throttled


def test_burst_recovers_and_releases_once_without_flapping(burst: Timeline) -> None:
    noisy = kinds(burst, "noisy")
    assert noisy.count("shaping-engaged") == 1
    assert noisy.count("shaping-released") == 1
    released = next(a for a in burst.actions if a.kind == "shaping-released")
    assert released.at_s - START >= 7200  # not before the burst ends
    last = burst.samples[-1]["tenants"]
    assert all(t["shapedRps"] is None for t in last.values())
    # while shaped, the service was healthy again: no page at the end of the burst
    during = [s for s in burst.samples if 4000 <= s["t"] <= 7000]
    assert not any(t["page"] for s in during for t in s["tenants"].values())


def test_slow_burn_caps_before_the_budget_runs_out(slow_burn: Timeline) -> None:
    caps = [a for a in slow_burn.actions if a.kind == "cap-adjusted"]
    assert caps, kinds(slow_burn)
    first = caps[0]
    # unchecked, 2 units/s would spend 100,000 units at 13.9 h
    assert at(first) < 13.9 * 3600
    assert first.numbers["newCapUnitsPerS"] <= 100_000 / 86_400 * 1.01
    final = slow_burn.samples[-1]["tenants"]["spender"]
    assert final["spentUnits"] <= 100_000
    assert final["capUnits"] == pytest.approx(100_000)


def test_slow_burn_lifts_the_cap_once_and_does_not_flap(slow_burn: Timeline) -> None:
    """Demand falls at 12 h, then oscillates 0.3 <-> 1.6 units/s every 5 min."""
    lifted = [a for a in slow_burn.actions if a.kind == "cap-lifted"]
    assert len(lifted) == 1
    assert at(lifted[0]) >= 12 * 3600
    changes = [a for a in slow_burn.actions if a.kind.startswith("cap-")]
    assert len(changes) <= 3  # capped, maybe lowered once, lifted: no flapping


def test_noisy_neighbour_shapes_the_heaviest_first(noisy: Timeline) -> None:
    engaged = [a for a in noisy.actions if a.kind == "shaping-engaged"]
    assert engaged
    assert engaged[0].tenant == "big"
    assert all(a.tenant in {"big", "medium"} for a in engaged)
    for small in ("small-a", "small-b"):
        assert "shaping-engaged" not in kinds(noisy, small)


def test_every_action_is_an_event_with_its_numbers(
    slow_burn: Timeline, burst: Timeline, workdir: Path
) -> None:
    recorded = events(workdir, "slow-burn", "spender")
    caps = [e for e in recorded if isinstance(e, TenantBudget.CapAdjusted)]
    actions = [a for a in slow_burn.actions if a.kind.startswith("cap-")]
    assert len(caps) == len(actions)
    for event, action in zip(caps, actions, strict=True):
        assert event.reason == action.reason
        assert float(event.burn_rate) == pytest.approx(
            action.numbers["burn"]["1h"], abs=1e-3
        )
        assert float(event.evidence["spentUnits"]) == pytest.approx(
            action.numbers["spentUnits"]
        )
        expected = action.numbers["newCapUnitsPerS"]
        assert (None if event.new is None else float(event.new)) == (
            None if expected is None else pytest.approx(expected, rel=1e-5)
        )
    shaped = events(workdir, "burst", "noisy")
    engaged = [e for e in shaped if isinstance(e, TenantBudget.ShapingEngaged)]
    assert len(engaged) == 1
    assert engaged[0].reason == "slo-page"
    assert float(engaged[0].evidence["requestsPerS5m"]) > 1.5 * float(
        engaged[0].evidence["neighboursMeanPerS"]
    )


def test_an_oscillating_load_around_the_cap_does_not_flap(
    workdir: Path,
) -> None:
    """2.4 and 0.2 units/s alternating every 10 min (mean 1.3, pace 1.16)."""
    swing = replace(
        SCENARIOS["slow-burn"],
        name="swing",
        duration_s=8 * 3600,
        rates={"spender": lambda t: 2.4 if (t // 600) % 2 == 0 else 0.2},
    )
    timeline = simulate(swing, workdir)
    changes = [a for a in timeline.actions if a.kind.startswith("cap-")]
    assert 1 <= len(changes) <= 2, [(at(a), a.kind) for a in changes]


def test_the_timeline_prints_as_json_and_draws_a_chart(
    burst: Timeline, tmp_path: Path
) -> None:
    """What `conductor autopilot simulate --json` prints, and its PNG."""
    from api.cli.autopilot import write_chart  # noqa: PLC0415

    document = burst.to_json()
    assert document["scenario"] == "burst"
    assert len(document["samples"]) == SCENARIOS["burst"].duration_s // 10
    first = document["actions"][0]
    assert set(first) >= {"tenant", "kind", "at", "t", "reason"}
    engaged = next(a for a in document["actions"] if a["kind"] == "shaping-engaged")
    assert engaged["tenant"] == "noisy"
    assert 1800 <= engaged["t"] <= 2100
    chart = tmp_path / "burst.png"
    write_chart(burst, chart)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.stat().st_size > 20_000


def test_the_cli_knows_the_three_scenarios() -> None:
    from api.cli.main import parser  # noqa: PLC0415

    for name in ("burst", "slow-burn", "noisy-neighbour"):
        args = parser().parse_args(
            ["autopilot", "simulate", "--scenario", name, "--speed", "600", "--json"]
        )
        assert (args.scenario, args.speed, args.json) == (name, 600.0, True)
    with pytest.raises(SystemExit):
        parser().parse_args(["autopilot", "simulate", "--scenario", "tsunami"])
