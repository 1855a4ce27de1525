"""Token bucket math, the in-memory store and the shaping gate's cache."""

from __future__ import annotations

import math

import pytest

from adapters.autopilot.shaping_store import (
    MemoryShapingStore,
    Throttle,
    refill,
    retry_after,
    throttle,
)
from api.middleware.shaping import ShapingGate, throttle_header


class CountingStore(MemoryShapingStore):
    """The in-memory store, counting the calls that would be round trips."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def rules(self):  # type: ignore[no-untyped-def]
        self.calls.append("rules")
        return super().rules()

    def take(self, tenant: str, *, now: float, cost: float = 1.0) -> Throttle | None:
        self.calls.append("take")
        return super().take(tenant, now=now, cost=cost)


class Clock:
    """A virtual clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _store(rate: float = 2.0, burst: float = 5.0) -> MemoryShapingStore:
    store = MemoryShapingStore()
    store.engage("acme", rate=rate, burst=burst, reason="cost", now=100.0)
    return store


class TestBucketMath:
    def test_refill_adds_rate_times_elapsed(self) -> None:
        """1.5 s at 2 tokens/s adds 3 tokens."""
        assert refill(1.0, 10.0, rate=2.0, burst=10.0, now=11.5) == (4.0, 11.5)

    def test_refill_is_capped_at_burst(self) -> None:
        """An idle bucket holds no more than its burst."""
        assert refill(1.0, 10.0, rate=2.0, burst=5.0, now=1000.0) == (5.0, 1000.0)

    def test_a_lagging_clock_neither_refills_nor_rewinds(self) -> None:
        """now before the bucket's clock: no tokens, and the clock stays put."""
        assert refill(1.0, 10.0, rate=2.0, burst=5.0, now=9.0) == (1.0, 10.0)

    def test_retry_after_is_the_exact_wait_for_the_cost(self) -> None:
        """0.25 tokens at 3 tokens/s: a whole token in 0.25 s."""
        assert retry_after(0.25, rate=3.0, burst=5.0, cost=1.0) == pytest.approx(0.25)
        assert retry_after(1.0, rate=3.0, burst=5.0, cost=1.0) == 0.0

    def test_a_cost_above_the_burst_never_fits(self) -> None:
        """retry_after is infinite when the bucket cannot hold the cost."""
        assert retry_after(2.0, rate=3.0, burst=2.0, cost=3.0) == math.inf

    def test_a_denied_take_takes_nothing(self) -> None:
        """The level is returned untouched, with the wait for one token."""
        result = throttle(0.5, rate=2.0, burst=5.0, reason="r", cost=1.0)
        assert (result.allowed, result.tokens, result.retry_after_s) == (
            False,
            0.5,
            0.25,
        )


class TestMemoryStore:
    def test_a_new_bucket_starts_full_and_drains(self) -> None:
        """burst takes at one instant succeed, the next one is refused."""
        store = _store(rate=2.0, burst=5.0)
        results = [store.take("acme", now=100.0) for _ in range(6)]
        assert [r.allowed for r in results if r] == [True] * 5 + [False]
        last = results[-1]
        assert last is not None
        assert last.retry_after_s == pytest.approx(0.5)

    def test_denied_takes_do_not_consume(self) -> None:
        """Hammering an empty bucket does not push the next token further away."""
        store = _store(rate=2.0, burst=1.0)
        assert store.take("acme", now=100.0) == Throttle(
            allowed=True,
            tokens=0.0,
            rate=2.0,
            burst=1.0,
            retry_after_s=0.0,
            reason="cost",
        )
        for now in (100.1, 100.2, 100.3, 100.4):
            result = store.take("acme", now=now)
            assert result is not None
            assert not result.allowed
        result = store.take("acme", now=100.5)
        assert result is not None
        assert result.allowed

    def test_waiting_exactly_retry_after_suffices(self) -> None:
        """Awkward rates still give a wait after which the take succeeds."""
        store = _store(rate=3.0, burst=1.0)
        now = 100.0
        for _ in range(50):
            result = store.take("acme", now=now)
            assert result is not None
            if not result.allowed:
                early = store.take("acme", now=now + result.retry_after_s * 0.999)
                assert early is not None
                assert not early.allowed
                now += result.retry_after_s
                after = store.take("acme", now=now)
                assert after is not None
                assert after.allowed
            now += 0.1

    def test_allowed_over_time_is_burst_plus_rate_times_elapsed(self) -> None:
        """10 s of 1 ms requests at 2/s with burst 5: 5 + 20 allowed."""
        store = _store(rate=2.0, burst=5.0)
        allowed = sum(
            bool((r := store.take("acme", now=100.0 + i / 1000)) and r.allowed)
            for i in range(10_001)
        )
        assert allowed == 25

    def test_reengaging_keeps_the_tokens_and_the_first_engagement(self) -> None:
        """A controller re-issuing its rule does not grant a fresh burst."""
        store = _store(rate=2.0, burst=5.0)
        for _ in range(5):
            store.take("acme", now=100.0)
        store.engage("acme", rate=1.0, burst=3.0, reason="slo", now=101.0)
        rule = store.rules()["acme"]
        assert (rule.rate, rule.burst, rule.reason, rule.engaged_at) == (
            1.0,
            3.0,
            "slo",
            100.0,
        )
        result = store.take("acme", now=101.0)  # 1 s at the old 2/s: 2 tokens
        assert result is not None
        assert (result.allowed, result.tokens) == (True, 1.0)

    def test_unshaped_and_released_tenants_have_no_bucket(self) -> None:
        """take() is None for a tenant without a rule."""
        store = _store()
        assert store.take("other", now=100.0) is None
        store.release("acme")
        assert store.take("acme", now=100.0) is None
        assert store.rules() == {}

    @pytest.mark.parametrize(("rate", "burst"), [(0.0, 5.0), (1.0, 0.5), (math.inf, 5)])
    def test_engage_refuses_rules_that_cannot_work(
        self, rate: float, burst: float
    ) -> None:
        """A rate must be positive and finite; a burst must hold one request."""
        with pytest.raises(ValueError, match="must"):
            MemoryShapingStore().engage("a", rate=rate, burst=burst, reason="", now=0)


class TestGate:
    def test_unshaped_tenants_cost_one_rules_read_per_refresh(self) -> None:
        """Within refresh_s, an unshaped tenant never reaches the store."""
        store, clock = CountingStore(), Clock()
        gate = ShapingGate(store, refresh_s=1.0, clock=clock)
        assert gate.cached("acme") is None
        for _ in range(1000):
            assert gate.check("acme") is None
        assert store.calls == ["rules"]
        assert gate.cached("acme") is False
        clock.now += 1.0
        assert gate.cached("acme") is None
        assert gate.check("acme") is None
        assert store.calls == ["rules", "rules"]

    def test_a_new_rule_applies_after_the_refresh(self) -> None:
        """engage() in another process shows up within refresh_s."""
        store, clock = CountingStore(), Clock()
        gate = ShapingGate(store, refresh_s=1.0, clock=clock)
        assert gate.check("acme") is None
        store.engage("acme", rate=1.0, burst=1.0, reason="cost", now=clock.now)
        assert gate.check("acme") is None
        clock.now += 1.0
        result = gate.check("acme")
        assert result is not None
        assert result.allowed

    def test_a_short_bucket_is_refused_locally_until_it_can_refill(self) -> None:
        """After one denial the gate refuses without a take until retry_after."""
        store, clock = CountingStore(), Clock(100.0)
        store.engage("acme", rate=2.0, burst=1.0, reason="cost", now=100.0)
        gate = ShapingGate(store, refresh_s=60.0, clock=clock)
        first, second = gate.check("acme"), gate.check("acme")
        assert first is not None
        assert first.allowed
        assert second is not None
        assert (second.allowed, second.retry_after_s) == (False, 0.5)
        clock.now = 100.25
        third = gate.check("acme")
        assert third is not None
        assert (third.allowed, third.tokens, third.retry_after_s) == (False, 0.5, 0.25)
        assert store.calls == ["rules", "take", "take"]
        clock.now = 100.5
        fourth = gate.check("acme")
        assert fourth is not None
        assert fourth.allowed
        assert store.calls == ["rules", "take", "take", "take"]

    def test_the_header_names_rate_burst_whole_tokens_left_and_reason(self) -> None:
        """Reasons are percent-encoded so they cannot break the header."""
        result = Throttle(
            allowed=True,
            tokens=2.9,
            rate=0.5,
            burst=10.0,
            retry_after_s=0.0,
            reason="p95 > SLO; cost\n",
        )
        assert throttle_header(result) == (
            "rate=0.5;burst=10;remaining=2;reason=p95 %3E SLO%3B cost%0A"
        )
