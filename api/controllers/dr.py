"""/v1/dr: commands written to the primary region, reads routed by header."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from adapters.dr.router import (
    READ_FROM,
    DrRouter,
    KeyReusedError,
    ReadOnlyReplicaError,
    RegionUnavailableError,
    StaleEpochError,
)
from api.auth import requires
from api.problems import Problem
from api.requests import principal
from api.services import Services

Key = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]


class DrCommandIn(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    key: Key
    """The command's idempotency key (letters, digits, . _ : -; 1-128)."""
    payload: dict[str, Any]


class DrCommandOut(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    key: str
    payload_sha256: str
    epoch: int
    region: str


def _router(services: Services) -> DrRouter:
    if services.dr is None:
        raise Problem(404, "no DR pair is configured (set CONDUCTOR_DR_ROOT)")
    return services.dr.router


def _read_from(request: Request[Any, Any, Any]) -> str:
    value = request.headers.get("x-ig-read-from", "nearest").strip().lower()
    if value not in READ_FROM:
        raise Problem(
            400,
            f"x-ig-read-from must be one of {', '.join(READ_FROM)}",
            errors=[
                {
                    "field": "x-ig-read-from",
                    "rule": "enum",
                    "message": f"one of {', '.join(READ_FROM)}",
                }
            ],
        )
    return value


def _unavailable(error: Exception) -> Problem:
    """503 problems for the regions' states; never a 500, never half a write."""
    retry = {"Retry-After": "1"}
    if isinstance(error, ReadOnlyReplicaError):
        return Problem(
            503,
            f"region {error.region} is a read-only replica; writes go to the "
            f"primary {error.primary or '(none reachable)'}",
            kind="read-only-replica",
            title="Writes go to the primary region",
            headers=retry,
            region=error.region,
            primary=error.primary,
        )
    if isinstance(error, StaleEpochError):
        return Problem(
            503,
            str(error),
            kind="stale-epoch",
            title="The region is fenced by a newer epoch",
            headers=retry,
            region=error.region,
            nodeEpoch=error.node_epoch,
            epoch=error.epoch,
        )
    assert isinstance(error, RegionUnavailableError)
    return Problem(
        503,
        str(error),
        kind="region-unavailable",
        title="No region can answer within the staleness limit",
        headers=retry,
        lagMs=error.lag_ms,
    )


class DrController(Controller):
    path = "/v1/dr"
    tags = ["dr"]  # noqa: RUF012
    guards = [requires("dr.operate")]  # noqa: RUF012

    @post("/commands", operation_id="RecordDrCommand", sync_to_thread=True)
    def record_command(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[DrCommandIn],
        services: NamedDependency[Services],
    ) -> Response[DrCommandOut]:
        """Record a command on the primary (201 new, 200 replayed)."""
        digest = hashlib.sha256(
            json.dumps(data.payload, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        tenant = principal(request).tenant
        try:
            written = _router(services).write_command(tenant, data.key, digest)
        except KeyReusedError as error:
            raise Problem(
                409,
                str(error),
                kind="idempotency-key-reused",
                errors=[{"field": "key", "rule": "unique", "message": str(error)}],
            ) from None
        except (ReadOnlyReplicaError, StaleEpochError, RegionUnavailableError) as error:
            raise _unavailable(error) from None
        body = DrCommandOut(
            key=written.key,
            payload_sha256=digest,
            epoch=written.epoch,
            region=written.region,
        )
        return Response(body, status_code=201 if written.created else 200)

    @get("/commands/{key:str}", operation_id="ReadDrCommand", sync_to_thread=True)
    def read_command(
        self,
        request: Request[Any, Any, Any],
        key: FromPath[str],
        services: NamedDependency[Services],
    ) -> Response[DrCommandOut]:
        """Read a command from the region x-ig-read-from picks."""
        read_from = _read_from(request)
        try:
            read = _router(services).read_command(
                principal(request).tenant, key, read_from
            )
        except RegionUnavailableError as error:
            raise _unavailable(error) from None
        headers = {"x-ig-read-region": read.region}
        if read.stale_ms:
            headers["x-ig-stale-read"] = str(read.stale_ms)
        if read.row is None:
            raise Problem(404, f"no command {key!r}", headers=headers)
        body = DrCommandOut(
            key=read.row[0],
            payload_sha256=read.row[1],
            epoch=read.row[2],
            region=read.row[3],
        )
        return Response(body, headers=headers)
