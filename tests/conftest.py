"""Shared fixtures: real SQLite files and a real throwaway PostgreSQL cluster.

scripts/test starts the cluster and exports CONDUCTOR_TEST_POSTGRES_URL; run
bare, the suite starts (and stops) its own. Every test gets a fresh database.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from litestar.testing import TestClient

from adapters.sql.pgcluster import PgCluster
from api.app import create_app
from api.auth import OPERATOR_SCOPES, SCOPES, issue_token
from api.settings import Settings
from domain.values import DatasetSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = "test-secret-" + "x" * 40
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the throwaway cluster's maintenance database."""
    url = os.environ.get("CONDUCTOR_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    root = tmp_path_factory.mktemp("pg")
    os.chmod(root, 0o755)  # noqa: PTH101 - postgres must traverse it
    with PgCluster(root / "data") as cluster:
        yield cluster.url()


def _database_url(server: str, name: str) -> str:
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the throwaway cluster."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _database_url(postgres_server, name)
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a real SQLite file and on real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'conductor.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    (tmp_path / "var" / "data").mkdir(parents=True, exist_ok=True)
    return Settings(
        var=str(tmp_path / "var"),
        database_url=database_url,
        jwt_secret=SECRET,
        projection_poll_s=0.05,
        min_position_wait_s=2.0,
        # The periodic checkpoint job would add the signing-key ring to the
        # log at an arbitrary moment; tests that compare logs must not race
        # it (test_jobs drives the job by hand; exports sign on demand).
        checkpoint_interval_s=3600.0,
        checkpoint_every_events=10**9,
        # Likewise the meter's flush and the autopilot's tick: the autopilot
        # tests flush and tick by hand (the meter still flushes on shutdown).
        meter_flush_s=3600.0,
        autopilot_interval_s=3600.0,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def bearer(
    tenant: str = "acme", *scopes: str, ttl_s: int = 3600, sub: str = "cli"
) -> dict[str, str]:
    """Authorization header for a tenant; all scopes when none are named
    (the operator scopes included: name the scopes to get a tenant's view)."""
    from datetime import timedelta  # noqa: PLC0415

    wanted = scopes or tuple(sorted(SCOPES))
    token = issue_token(
        SECRET,
        tenant=tenant,
        scopes=wanted,
        sub=sub,
        ttl=timedelta(seconds=ttl_s),
        operator=bool(set(wanted) & OPERATOR_SCOPES),
    )
    return {"Authorization": f"Bearer {token}"}


def dataset_body(name: str = "orders", **overrides: Any) -> dict[str, Any]:
    """A valid registration body."""
    body: dict[str, Any] = {
        "name": name,
        "description": "Orders placed by customers",
        "license": "Restricted-TOS",
        "purposes": ["investigation"],
        "retention": "P1Y",
        "region": "EU",
        "contractVersion": "v1",
        "tags": ["sales"],
        "columns": [
            {"name": "email", "classification": "pii.email"},
            {"name": "amount", "classification": "public"},
        ],
    }
    body.update(overrides)
    return body


REPO_ROOT = Path(__file__).resolve().parents[1]


def dataset_spec(name: str = "orders", **overrides: Any) -> DatasetSpec:
    """A valid registration for the application layer (dataset_body's twin)."""
    values: dict[str, Any] = {
        "name": name,
        "license": "Restricted-TOS",
        "purposes": ("investigation",),
        "retention": "P1Y",
        "region": "EU",
        "contract_version": "v1",
        "description": f"dataset {name}",
    }
    values.update(overrides)
    return DatasetSpec(**values)
