"""One Settings object, read from CONDUCTOR_* environment variables."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec

if TYPE_CHECKING:
    from collections.abc import Mapping

PREFIX = "CONDUCTOR_"
_LISTS = ("regions",)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Runtime configuration; every field maps to CONDUCTOR_<FIELD_NAME>."""

    var: str = "./var"
    """Where the embedded database, keys and secrets live."""
    init: bool = False
    """Let the CLI and server create a missing store (`conductor init` and
    `scripts/run` do); otherwise a missing one is an error naming the path."""
    database_url: str = ""
    """sqlite:///path or postgresql://user:pass@host:port/db; default SQLite in var."""
    data_root: str = ""
    """Where dataset locations may point (per tenant subfolder); default var/data."""
    jwt_secret: str = ""
    """HS256 secret; default: generated once into var/jwt-secret."""
    regions: tuple[str, ...] = ("US", "EU", "UK")
    """Regions a dataset may be registered in (comma-separated in the env)."""
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    log_format: str = "json"
    """json (default) or console."""
    max_body_bytes: int = 1024 * 1024
    """Request bodies above this get 413."""
    min_position_wait_s: float = 2.0
    """How long x-ig-min-position waits for a projection before a 503."""
    graphql_introspection: bool = True
    """Answer GraphQL introspection queries (__schema, __type) at /graphql."""
    projection_batch: int = 1000
    projection_poll_s: float = 0.5
    idempotency_ttl_s: float = 24 * 3600.0
    coverage_interval_s: float = 60.0
    """How often the coverage gauge is refreshed."""
    pool_size: int = 8
    origin: str = "conductor"
    """The log's name in signed checkpoints."""
    checkpoint_interval_s: float = 30.0
    """A new checkpoint is signed when the log has grown and the last one is
    this old..."""
    checkpoint_every_events: int = 1000
    """...or as soon as this many events arrived since the last one."""
    dlp_workers: int = min(2, os.cpu_count() or 1)
    """Processes one export's DLP step may use (for files above 4 MiB)."""
    threads: int = 32
    """Threads running the (synchronous) handlers; asyncio's default is
    min(32, cores + 4), which caps commands in flight, and so group commits."""
    workers: int = 1
    """API processes for `conductor serve`; above 1, projections run in a
    process of their own (`conductor project`)."""
    projector_poll_s: float = 0.1
    """How often `conductor project` looks for new events (commits in other
    processes cannot wake it); the longest a x-ig-min-position wait adds."""
    projections: bool = True
    """Run the projection workers (and periodic jobs) in this process."""
    neo4j_uri: str = ""
    """bolt:// or neo4j:// URI: keep a lineage graph in Neo4j too (optional)."""
    neo4j_user: str = "neo4j"
    neo4j_password: str = ""
    neo4j_database: str = ""
    neo4j_namespace: Annotated[
        str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    ] = "conductor"
    """Every node the lineage view writes carries it, and a rebuild deletes only
    its own: several deployments (or a DR region's follower) can share a database."""
    er_k: int = 5
    """Nearest neighbours ANN adds per record (>= the expected cluster size)."""
    er_blocking: str = "soundex:given_name|soundex:surname|exact:postcode"
    """The blocking rules resolve uses ('|' = or, '&' = and)."""
    er_comparisons: str = (
        "jw:given_name>=0.85,jw:surname>=0.85,jw:address_1>=0.85,jw:suburb>=0.85,"
        "exact:date_of_birth,exact:postcode,exact:street_number"
    )
    """The rules gate: comparisons scoring 0 or 1 each."""
    er_merge_at: float = 6.0
    """A pair merges when its gate score reaches this."""
    er_cap_records_per_day: int = 1_000_000
    """Records a tenant may embed per UTC day (resolve batches and jobs)."""
    er_max_batch: int = 1000
    """Records per resolve request."""
    er_offpeak_hours: str = "1-5"
    """Off-peak window: a cron hour field (UTC) in which queued jobs start."""
    er_job_lease_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """An embedding job run's lease: a run lost (crashed, killed) this long is
    taken over and resumed; the service also looks for such jobs this often."""
    er_job_max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 3
    """Runs an embedding job may start; lost this many times, it fails."""
    er_hnsw_m: int = 16
    er_hnsw_ef_construction: int = 200
    er_hnsw_ef: int = 200
    """hnswlib graph degree, build beam and query beam (ADR 0007)."""
    dr_root: str = ""
    """Directory of a DR pair made by `conductor dr up` (empty: no /v1/dr routes)."""
    dr_region: str = "A"
    """The region this API runs in: where `x-ig-read-from: nearest` reads."""
    stale_read_ttl_ms: int = 5000
    """Reads from a standby staler than this fall back to the primary (or 503)."""
    dr_lag_alert_ms: int = 5000
    dr_lag_alert_for_s: float = 600.0
    """The replica-lag alert fires when lag stays above dr_lag_alert_ms this long."""
    dr_sample_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    """How often the lag watcher records each region's LagSampled (role, epoch,
    lag, read counts) in the log; a lag crossing dr_lag_alert_ms records one
    at once."""

    policy_workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    """Processes that evaluate tenants' own export policies (the sandbox)."""
    policy_cpu_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0
    policy_wall_s: Annotated[float, msgspec.Meta(gt=0, le=120)] = 2.0
    policy_memory_mb: Annotated[int, msgspec.Meta(ge=32, le=65536)] = 256
    policy_output_kb: Annotated[int, msgspec.Meta(ge=1, le=65536)] = 1024
    """One evaluation of a tenant's policy (or one publication probe) may use
    this much CPU time, wall-clock time, resident memory and output; past any
    of them the worker is killed and the export denied fail-closed
    (policy_evaluation_limit)."""
    policy_per_tenant: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    """Sandbox workers one tenant may hold at once (the rest serve others)."""
    switch_refresh_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0
    """How long a process trusts its last read of the backout switches."""

    metering: bool = True
    """Meter every authenticated request (units by the price table below)."""
    meter_flush_s: float = 5.0
    """How often each process writes its metering (a crash loses at most this)."""
    price_query_call: float = 1.0
    price_command_call: float = 2.0
    price_export_gb: float = 1000.0
    price_embedding_1k: float = 10.0
    price_drill_run: float = 500.0
    """Units per query, per command, per GB exported, per 1,000 records
    embedded, per DR drill run."""
    autopilot: bool = True
    """Run the cost/SLO controller (in the process that runs the jobs)."""
    autopilot_interval_s: float = 10.0
    autopilot_min_dwell_s: float = 600.0
    """Least time between cap changes, and quiet time before shaping is released."""
    autopilot_min_events: Annotated[int, msgspec.Meta(ge=1)] = 100
    """Served requests a burn window (per route class) needs before its burn
    rate can page or ticket: fewer is noise, not an outage (ADR 0015)."""
    autopilot_capacity_rps: Annotated[float, msgspec.Meta(gt=0)] = 100.0
    """Requests/s the API sustains, all tenants together (the shared capacity)."""
    autopilot_min_capacity_share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.1
    """A paging tenant is shaped only when it has neighbours and its rate is at
    least this share of the capacity; otherwise the page is an incident only."""
    shaping: bool = True
    """Enforce the autopilot's token buckets (429 + Retry-After)."""
    shaping_refresh_s: float = 1.0
    """How long an API process trusts its cached list of shaped tenants."""
    issue_webhook_url: str = ""
    """Where breached guards open issues (POST JSON); empty: incidents are
    kept and listed (GET /v1/incidents) but sent nowhere."""
    incident_delivery_interval_s: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from CONDUCTOR_* keys (others ignored), strictly typed."""
        env = os.environ if environ is None else environ
        raw: dict[str, object] = {}
        for key, value in env.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX) :].lower()
            if name not in cls.__struct_fields__:
                continue
            raw[name] = (
                tuple(v.strip() for v in value.split(",") if v.strip())
                if name in _LISTS
                else value
            )
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as error:
            msg = f"invalid CONDUCTOR_* setting: {error}"
            raise ValueError(msg) from error

    @property
    def var_path(self) -> Path:
        return Path(self.var)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_path / 'conductor.db'}"

    @property
    def data_root_path(self) -> Path:
        return Path(self.data_root) if self.data_root else self.var_path / "data"

    def resolved_jwt_secret(self) -> str:
        """The configured secret, or one generated once into var/jwt-secret (0600)."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.var_path / "jwt-secret"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the process environment (cached)."""
    return Settings.from_env()
