"""/v1/keys and /v1/ledger: public keys, signed checkpoints and Merkle proofs.

Checkpoints and consistency proofs reveal only sizes and roots; an inclusion
proof names an event, so a tenant gets one only for a position of its slice
(another tenant's is answered as if absent).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from api.auth import requires
from api.controllers.log_slice import covering, log_tip, tenancy_view, wait_for_view
from api.problems import Problem
from api.requests import principal
from api.schemas.ledger import KeyOut, KeysOut
from api.wiring.core import Core
from api.wiring.exports import ExportsBundle

Size = Annotated[int, QueryParameter(ge=1, le=2**62)]


@get("/v1/keys", operation_id="PublicKeys", tags=["audit"], sync_to_thread=True)
def public_keys(core: NamedDependency[Core]) -> KeysOut:
    """Every signing key's public half (public, no token needed)."""
    ring = core.keys.keys()
    return KeysOut(
        keys=[
            KeyOut(
                keyid=k.keyid,
                public_key_pem=k.public_key_pem,
                created_at=k.created_at.isoformat(),
                active=k.active,
            )
            for k in ring
        ]
    )


class LedgerController(Controller):
    path = "/v1/ledger"
    tags = ["audit"]  # noqa: RUF012
    guards = [requires("audit.read", "export.request", "audit.platform")]  # noqa: RUF012

    @get("/checkpoints/latest", operation_id="LatestCheckpoint", sync_to_thread=True)
    def latest_checkpoint(
        self, core: NamedDependency[Core], exports: NamedDependency[ExportsBundle]
    ) -> dict[str, Any]:
        """The newest signed checkpoint (signing one if none covers the log yet)."""
        checkpoint = covering(core, exports, 0)  # its key recorded in the log first
        return {
            "size": checkpoint.size,
            "rootHash": checkpoint.root,
            "lastPosition": checkpoint.last_position,
            "envelope": checkpoint.envelope,
        }

    @get("/inclusion", operation_id="InclusionProof", sync_to_thread=True)
    def inclusion(
        self,
        request: Request[Any, Any, Any],
        core: NamedDependency[Core],
        position: Size,
        size: Size,
    ) -> dict[str, Any]:
        """Proof that the event at ``position`` is in the tree of ``size`` leaves.

        Without audit.platform, only for positions of the caller's slice.
        """
        who = principal(request)
        if "audit.platform" not in who.scopes:
            wait_for_view(core, min(position, log_tip(core)))
            if not tenancy_view(core).visible(who.tenant, position):
                raise Problem(404, f"no event at position {position}")
        try:
            return core.checkpoints.inclusion(position, size)
        except LookupError as error:
            raise Problem(404, str(error)) from None

    @get("/consistency", operation_id="ConsistencyProof", sync_to_thread=True)
    def consistency(
        self,
        core: NamedDependency[Core],
        first: Annotated[int, QueryParameter(name="from", ge=1, le=2**62)],
        second: Annotated[int, QueryParameter(name="to", ge=1, le=2**62)],
    ) -> dict[str, Any]:
        """Proof that the tree of ``to`` leaves extends the tree of ``from``."""
        try:
            return core.checkpoints.consistency(first, second)
        except LookupError as error:
            raise Problem(
                422,
                str(error),
                errors=[{"field": "from", "rule": "range", "message": str(error)}],
            ) from None
