"""/v1/dr: commands written to the primary region, reads routed by header.

Lineage reads are answered by this region's own lineage store (region B's is
kept by its follower from the replicated log); the DR state by its read model.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from adapters.dr.router import (
    DrRouter,
    KeyReusedError,
    ReadOnlyReplicaError,
    RegionUnavailableError,
    StaleEpochError,
)
from api.auth import requires
from api.controllers.datasets import Depth
from api.problems import Problem, region_problem
from api.requests import principal, read_model
from api.runtime.dr import DrRuntime, read_from
from api.schemas.catalog import LineageEdgeOut, LineageNodeOut, LineageOut
from api.wiring.core import Core
from api.wiring.dr import DrBundle
from projections.dr_state import RATE_WINDOWS, RegionState

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


class RegionStateOut(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    region: str
    role: str
    """primary, standby or down, as the region said at its newest sample."""
    epoch: int
    lag_ms: int | None
    lag_bytes: int | None
    read_only: bool
    sampled_at: str
    """When the newest sample was taken (ISO 8601, UTC)."""
    cause: str
    """Why it was taken: interval, above or below (the alert threshold)."""
    samples: int
    position: int
    """Log position of the newest sample."""
    stale_read_rate: dict[str, float | None]
    """5m, 1h, 1d -> stale reads / secondary reads (null: no secondary reads)."""


class DrStateOut(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    regions: list[RegionStateOut]
    position: int
    """The read model's position (x-ig-position)."""


def _region_out(row: RegionState) -> RegionStateOut:
    return RegionStateOut(
        region=row.region,
        role=row.role,
        epoch=row.epoch,
        lag_ms=row.lag_ms,
        lag_bytes=row.lag_bytes,
        read_only=row.read_only,
        sampled_at=datetime.fromtimestamp(row.sampled_at_ms / 1000, UTC).isoformat(),
        cause=row.cause,
        samples=row.samples,
        position=row.position,
        stale_read_rate={
            w: None if (r := row.stale_rate.get(w)) is None else round(r, 6)
            for w in RATE_WINDOWS
        },
    )


def _runtime(dr: DrBundle) -> DrRuntime:
    if dr.runtime is None:
        raise Problem(404, "no DR pair is configured (set CONDUCTOR_DR_ROOT)")
    return dr.runtime


def _router(dr: DrBundle) -> DrRouter:
    return _runtime(dr).router


class DrController(Controller):
    path = "/v1/dr"
    tags = ["dr"]  # noqa: RUF012
    guards = [requires("dr.operate")]  # noqa: RUF012

    @post("/commands", operation_id="RecordDrCommand", sync_to_thread=True)
    def record_command(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[DrCommandIn],
        dr: NamedDependency[DrBundle],
    ) -> Response[DrCommandOut]:
        """Record a command on the primary (201 new, 200 replayed)."""
        digest = hashlib.sha256(
            json.dumps(data.payload, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        tenant = principal(request).tenant
        try:
            written = _router(dr).write_command(tenant, data.key, digest)
        except KeyReusedError as error:
            raise Problem(
                409,
                str(error),
                kind="idempotency-key-reused",
                errors=[{"field": "key", "rule": "unique", "message": str(error)}],
            ) from None
        except (ReadOnlyReplicaError, StaleEpochError, RegionUnavailableError) as error:
            raise region_problem(error) from None
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
        dr: NamedDependency[DrBundle],
    ) -> Response[DrCommandOut]:
        """Read a command from the region x-ig-read-from picks."""
        where = read_from(request.headers.get("x-ig-read-from", "nearest"))
        try:
            read = _router(dr).read_command(principal(request).tenant, key, where)
        except RegionUnavailableError as error:
            raise region_problem(error) from None
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

    @get("/state", operation_id="ReadDrState", sync_to_thread=True)
    def read_state(
        self,
        request: Request[Any, Any, Any],
        core: NamedDependency[Core],
        dr: NamedDependency[DrBundle],
    ) -> Response[DrStateOut]:
        """Each region's role, epoch, lag, read-only flag and stale-read rates,
        from the DR state read model (platform data: no tenant's)."""
        headers = read_model(
            request, core.runners["dr-state"], core.settings.min_position_wait_s
        )
        body = DrStateOut(
            regions=[_region_out(row) for row in dr.state.regions()],
            position=int(headers["x-ig-position"]),
        )
        return Response(body, headers=headers)

    @get(
        "/lineage/{dataset_id:uuid}", operation_id="ReadDrLineage", sync_to_thread=True
    )
    def read_lineage(
        self,
        request: Request[Any, Any, Any],
        dataset_id: FromPath[UUID],
        core: NamedDependency[Core],
        dr: NamedDependency[DrBundle],
        direction: FromQuery[Literal["up", "down"]] = "up",
        depth: Depth = 3,
    ) -> Response[LineageOut]:
        """Walk the lineage in this region's store (region B's survives failover)."""
        lineage = _runtime(dr).lineage
        if lineage is None or not lineage.available():
            region = core.settings.dr_region
            raise Problem(404, f"region {region} keeps no lineage store")
        read = lineage.read(principal(request).tenant, dataset_id, direction, depth)
        headers = {"x-ig-read-region": read.region, "x-ig-position": str(read.position)}
        if read.lag_events is not None:
            headers["x-ig-lag-events"] = str(read.lag_events)
        if read.stale_ms:
            headers["x-ig-stale-read"] = str(read.stale_ms)
        if not read.graph.nodes:
            raise Problem(
                404,
                f"dataset {dataset_id} not found in region {read.region}",
                headers=headers,
            )
        body = LineageOut(
            root=dataset_id,
            direction=direction,
            depth=depth,
            nodes=[
                LineageNodeOut(id=n.id, name=n.name, status=n.status, depth=n.depth)
                for n in read.graph.nodes
            ],
            edges=[
                LineageEdgeOut(downstream=d, upstream=u) for d, u in read.graph.edges
            ],
        )
        return Response(body, headers=headers)
