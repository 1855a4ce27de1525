"""The per-request shaping gate: a cached rule set in front of the shared buckets.

Unshaped tenants cost a dict lookup: the rules are re-read from the database at
most every ``refresh_s``. Shaped tenants take a token from the shared bucket
(one database round trip, off the event loop). A denied take also tells how
long the bucket stays short, so until then this process denies locally.

Every response to a shaped tenant carries
``x-ig-throttle: rate=<r>;burst=<b>;remaining=<n>;reason=<why>``: tokens/s,
bucket size, whole tokens left after this request, and the autopilot's reason
(percent-encoded, so it never contains ";" or a line break).
"""

from __future__ import annotations

import inspect
import math
import re
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio.to_thread
from litestar.datastructures import MutableScopeHeaders

from api.auth import Principal
from api.problems import Problem

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from litestar import Request
    from litestar.types import Message, Scope

    from adapters.autopilot.shaping_store import ShapingRule, ShapingStore, Throttle

HEADER = "x-ig-throttle"
STATE_KEY = "ig_throttle"
_EXEMPT = re.compile(r"^/v1/(?:tenants/[^/]+/(?:budget|burn)|incidents)(?:/|$)")


class ShapingGate:
    """Decides per request whether a tenant's call may go ahead."""

    def __init__(
        self,
        store: ShapingStore,
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self.clock = clock
        self._rules: dict[str, ShapingRule] = {}
        self._loaded_at = -math.inf
        self._short: dict[str, tuple[float, Throttle]] = {}
        """Tenant -> (when its denied take happened, that take)."""
        self._lock = threading.Lock()
        self.disabled: Callable[[], bool] = lambda: False
        """The disable-traffic-shaping backout (then no tenant is shaped)."""

    def cached(self, tenant: str) -> bool | None:
        """Whether ``tenant`` is shaped, from memory; None once the cache is stale."""
        if self.disabled():
            return False
        if self.clock() - self._loaded_at >= self.refresh_s:
            return None
        return tenant in self._rules

    def rules(self) -> dict[str, ShapingRule]:
        """The shaped tenants, re-read from the store when the cache is stale."""
        with self._lock:
            now = self.clock()
            if now - self._loaded_at >= self.refresh_s:
                fresh = self.store.rules()
                for tenant in [t for t in self._short if t not in fresh]:
                    del self._short[tenant]
                for tenant, rule in fresh.items():
                    if self._rules.get(tenant) != rule:
                        self._short.pop(tenant, None)
                self._rules, self._loaded_at = fresh, now
            return self._rules

    def reason(self, tenant: str) -> str | None:
        """Why the tenant is shaped (forced work then waits), if it is."""
        rule = self.rules().get(tenant)
        return None if rule is None else rule.reason

    def check(self, tenant: str) -> Throttle | None:
        """Take a token for ``tenant``; None when the tenant is not shaped."""
        if self.disabled() or tenant not in self.rules():
            return None
        now = self.clock()
        short = self._local_denial(tenant, now)
        if short is not None:
            return short
        result = self.store.take(tenant, now=now)
        if result is not None and not result.allowed:
            self._short[tenant] = (now, result)
        return result

    def _local_denial(self, tenant: str, now: float) -> Throttle | None:
        # Tokens only come back with time and other processes only take them,
        # so the bucket is still short until the denied take's retry_after.
        denied = self._short.get(tenant)
        if denied is None:
            return None
        at, result = denied
        wait = at + result.retry_after_s - now
        if wait <= 0 or now < at:
            self._short.pop(tenant, None)
            return None
        tokens = min(result.burst, result.tokens + (now - at) * result.rate)
        return replace(result, tokens=tokens, retry_after_s=wait)


def throttle_header(result: Throttle) -> str:
    """The x-ig-throttle value (see the module docstring)."""
    reason = quote(result.reason, safe=" ,:/()-_.~")
    remaining = math.floor(result.tokens + 1e-9)
    return (
        f"rate={result.rate:g};burst={result.burst:g};"
        f"remaining={remaining};reason={reason}"
    )


def _refusal(tenant: str, result: Throttle) -> Problem:
    retry = max(1, math.ceil(result.retry_after_s))
    return Problem(
        429,
        f"tenant {tenant} is rate-limited to {result.rate:g} requests/s "
        f"({result.reason}); retry in {retry} s",
        kind="throttled",
        title="Tenant traffic is being shaped",
        headers={"Retry-After": str(retry), HEADER: throttle_header(result)},
        tenant=tenant,
        rateLimit=result.rate,
        retryAfterS=result.retry_after_s,
    )


def shaped_tenant(request: Request[Any, Any, Any]) -> str | None:
    """The tenant whose bucket this request draws on, if any."""
    path: str = request.scope["path"]
    if not path.startswith("/v1/") or _EXEMPT.match(path):
        return None
    user = request.scope.get("user")
    return user.tenant if isinstance(user, Principal) else None


async def draw(
    gate: ShapingGate | None, tenant: str, request: Request[Any, Any, Any]
) -> None:
    """Draw one request from a shaped tenant's bucket: a 429 problem when empty.

    The API's hook calls it for /v1; the console calls it once it knows the
    signed-in tenant, so a page is shaped like the API call it stands for.
    """
    if gate is None or gate.cached(tenant) is False:
        return
    result = await anyio.to_thread.run_sync(gate.check, tenant)
    if result is not None:
        if not result.allowed:
            raise _refusal(tenant, result)
        request.state[STATE_KEY] = throttle_header(result)


def shaping_hook(
    gate_getter: Callable[[], ShapingGate | None],
    *,
    then: Callable[[Request[Any, Any, Any]], Any] | None = None,
) -> Callable[[Request[Any, Any, Any]], Awaitable[Any]]:
    """A before_request hook that refuses over-rate tenants with a 429 problem.

    ``then`` is another before_request hook (e.g. require_json), sync or
    async, run after the gate, since litestar takes one before_request per layer.
    """

    async def before_request(request: Request[Any, Any, Any]) -> Any:
        tenant = shaped_tenant(request)
        if tenant is not None:
            await draw(gate_getter(), tenant, request)
        if then is None:
            return None
        outcome = then(request)
        return await outcome if inspect.isawaitable(outcome) else outcome

    return before_request


async def add_throttle_header(message: Message, scope: Scope) -> None:
    """before_send: put x-ig-throttle on responses to allowed shaped requests."""
    if message["type"] != "http.response.start":
        return
    value = scope.get("state", {}).get(STATE_KEY)
    if value is not None:
        MutableScopeHeaders.from_message(message).add(HEADER, value)
