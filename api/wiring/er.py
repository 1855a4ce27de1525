"""ER's wiring: ER assist with its view, metered and shaped by whoever wires it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.er.view import PostgresErView, SQLiteErView
from api.runtime.er import ErRuntime
from api.wiring.core import Core, view_of

if TYPE_CHECKING:
    from collections.abc import Callable


def wire_er(
    core: Core,
    *,
    charge: Callable[[str, int, int], None] | None,
    shaped: Callable[[str], str | None] | None,
) -> ErRuntime:
    """ER assist with its read model; ``charge`` meters embeddings (None: off)
    and ``shaped`` says why a tenant is shaped (None: shaping off)."""
    er = ErRuntime(
        core.settings,
        core.ledger,
        core.metrics,
        view=view_of(core.ledger, SQLiteErView, PostgresErView),
    )
    er.charge = charge
    if shaped is not None:
        er.shaped = shaped
    return er
