"""/v1/keys and /v1/ledger: public keys, signed checkpoints and Merkle proofs."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from api.auth import requires
from api.problems import Problem
from api.schemas import KeyOut, KeysOut
from api.services import Services

Size = Annotated[int, QueryParameter(ge=1, le=2**62)]


@get("/v1/keys", operation_id="PublicKeys", tags=["audit"], sync_to_thread=True)
def public_keys(services: NamedDependency[Services]) -> KeysOut:
    """Every signing key's public half (public, no token needed)."""
    ring = services.keys.keys()
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
    guards = [requires("audit.read", "export.request")]  # noqa: RUF012

    @get("/checkpoints/latest", operation_id="LatestCheckpoint", sync_to_thread=True)
    def latest_checkpoint(self, services: NamedDependency[Services]) -> dict[str, Any]:
        """The newest signed checkpoint (signing one if none covers the log yet)."""
        checkpoint = services.checkpoints.latest() or services.checkpoints.sign()
        return {
            "size": checkpoint.size,
            "rootHash": checkpoint.root,
            "lastPosition": checkpoint.last_position,
            "envelope": checkpoint.envelope,
        }

    @get("/inclusion", operation_id="InclusionProof", sync_to_thread=True)
    def inclusion(
        self, services: NamedDependency[Services], position: Size, size: Size
    ) -> dict[str, Any]:
        """Proof that the event at ``position`` is in the tree of ``size`` leaves."""
        try:
            return services.checkpoints.inclusion(position, size)
        except LookupError as error:
            raise Problem(404, str(error)) from None

    @get("/consistency", operation_id="ConsistencyProof", sync_to_thread=True)
    def consistency(
        self,
        services: NamedDependency[Services],
        first: Annotated[int, QueryParameter(name="from", ge=1, le=2**62)],
        second: Annotated[int, QueryParameter(name="to", ge=1, le=2**62)],
    ) -> dict[str, Any]:
        """Proof that the tree of ``to`` leaves extends the tree of ``from``."""
        try:
            return services.checkpoints.consistency(first, second)
        except LookupError as error:
            raise Problem(
                422,
                str(error),
                errors=[{"field": "from", "rule": "range", "message": str(error)}],
            ) from None
