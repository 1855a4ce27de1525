"""/v1/switches: the seed's backout switches (operators only)."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Controller, Request, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from api.auth import requires
from api.problems import Problem
from api.requests import principal
from api.schemas.base import In, Out
from api.wiring.core import Core
from application.ops.switches import SwitchState
from domain.ops.switches import BACKOUTS

log = structlog.get_logger("conductor.switches")


class SwitchIn(In):
    engaged: bool
    reason: str


class SwitchOut(Out, frozen=True):
    name: str
    engaged: bool
    effect: str
    """What engaging it does."""
    by: str | None
    reason: str | None
    position: int | None = None
    """Where this change sits in the log (None: nothing changed)."""


class SwitchList(Out, frozen=True):
    items: list[SwitchOut]


def switch_out(state: SwitchState, position: int | None = None) -> SwitchOut:
    return SwitchOut(
        name=state.name,
        engaged=state.engaged,
        effect=state.effect,
        by=state.by or None,
        reason=state.reason or None,
        position=position,
    )


class SwitchController(Controller):
    path = "/v1/switches"
    tags = ["operations"]  # noqa: RUF012

    @get(
        "/",
        operation_id="ListSwitches",
        guards=[requires("platform.operate", "audit.platform")],
        sync_to_thread=True,
    )
    def list_switches(self, core: NamedDependency[Core]) -> SwitchList:
        """Every backout switch, engaged or not, with who engaged it and why."""
        return SwitchList(items=[switch_out(s) for s in core.switches.states()])

    @put(
        "/{name:str}",
        operation_id="SetSwitch",
        guards=[requires("platform.operate")],
        sync_to_thread=True,
    )
    def set_switch(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        data: JSONBody[SwitchIn],
        core: NamedDependency[Core],
    ) -> SwitchOut:
        """Engage or release a switch; every process honours it within ~1 s."""
        if name not in BACKOUTS:
            raise Problem(404, f"no backout switch {name[:80]!r}")
        who = principal(request)
        position = core.switches.set(
            name, on=data.engaged, by=who.sub, reason=data.reason
        )
        log.warning(
            "backout_switch_set",
            switch=name,
            engaged=data.engaged,
            by=who.sub,
            position=position,
        )
        state = next(s for s in core.switches.states() if s.name == name)
        return switch_out(state, position)
