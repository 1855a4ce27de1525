"""Property-based fuzzing of every route, from the app's own OpenAPI document.

schemathesis reads /schema/openapi.json and generates requests for every
operation: valid ones (with the seeded dataset's id in id-taking paths, and
without), schema-breaking ones, and some without a token. Whatever it sends,
the app never answers 5xx, and a refused request (4xx) never changes the
event log. One app on SQLite serves the whole run; hypothesis is seeded and
each operation gets a bounded number of examples, so the run is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from litestar.testing import TestClient
from schemathesis import GenerationMode

from api.app import create_app
from api.settings import Settings
from tests.conftest import SECRET, bearer, dataset_body

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from hypothesis.strategies import SearchStrategy
    from schemathesis.generation.case import Case
    from schemathesis.schemas import APIOperation

pytestmark = pytest.mark.integration

SEED = 20261203
EXAMPLES = 20
"""Per operation and kind of run; about 36 operations, 4 kinds."""
BASE_URL = "http://testserver.local"


@dataclass
class Target:
    """The app under fuzzing and what the run has seen."""

    client: TestClient[Any]
    dataset: str
    """acme's registered dataset (pinned into id-taking paths)."""
    sent: dict[str, int] = field(default_factory=dict)
    """Operation label -> requests that reached the app."""
    failures: list[str] = field(default_factory=list)
    unsatisfiable: list[str] = field(default_factory=list)
    """Operations for which one kind of request could not be generated."""


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One SQLite app (the conftest settings) with acme's dataset registered."""
    var: Path = tmp_path_factory.mktemp("fuzz") / "var"
    (var / "data").mkdir(parents=True)
    settings_ = Settings(
        var=str(var),
        database_url=f"sqlite:///{var / 'conductor.db'}",
        jwt_secret=SECRET,
        projection_poll_s=0.05,
        min_position_wait_s=0.2,  # a generated x-ig-min-position waits no longer
        checkpoint_interval_s=3600.0,
        checkpoint_every_events=10**9,
        meter_flush_s=3600.0,
        autopilot_interval_s=3600.0,
    )
    with TestClient(create_app(settings_)) as client:
        response = client.post("/v1/datasets", json=dataset_body(), headers=bearer())
        assert response.status_code == 201, response.text
        yield Target(client, str(response.json()["id"]))


def _operations(client: TestClient[Any]) -> list[APIOperation]:
    document = client.get("/schema/openapi.json")
    assert document.status_code == 200, document.text
    schema = schemathesis.openapi.from_dict(document.json())
    return [result.ok() for result in schema.get_all_operations()]


def _request(case: Case) -> dict[str, Any]:
    """schemathesis' (requests-style) call as keyword arguments for httpx."""
    sent = case.as_transport_kwargs(base_url=BASE_URL)
    kwargs: dict[str, Any] = {
        "method": sent["method"],
        "url": sent["url"],
        "params": sent.get("params"),
        # httpx would encode str header values as ASCII; a server sees bytes.
        "headers": {
            k: v.encode("utf-8") if isinstance(v, str) else v
            for k, v in (sent.get("headers") or {}).items()
        },
    }
    if "json" in sent:
        kwargs["json"] = sent["json"]
    data = sent.get("data")
    if isinstance(data, str | bytes):
        kwargs["content"] = data
    elif data is not None:
        kwargs["data"] = data
    if sent.get("files"):
        kwargs["files"] = sent["files"]
    return kwargs


def _check(target: Target, operation: APIOperation, case: Case) -> None:
    """Send one generated request: no 5xx, and a 4xx leaves the log as it was."""
    ledger = target.client.app.state.conductor.core.ledger
    kwargs = _request(case)
    before = ledger.head()
    response = target.client.request(**kwargs)
    after = ledger.head()
    label = operation.label
    target.sent[label] = target.sent.get(label, 0) + 1
    where = f"{kwargs['method']} {kwargs['url']}"
    if response.status_code >= 500:
        target.failures.append(f"{label}: {response.status_code} for {where}")
    elif response.status_code >= 400 and after != before:
        target.failures.append(
            f"{label}: {response.status_code} but the log moved {before} -> {after}"
            f" for {where}"
        )


def _run(
    target: Target, operation: APIOperation, strategy: SearchStrategy[Case]
) -> None:
    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def fuzz(case: Case) -> None:
        _check(target, operation, case)

    try:
        fuzz()
    except Unsatisfiable:
        # Nothing to break: e.g. a lone string path parameter has no
        # schema-breaking value. The other kinds still cover the operation.
        target.unsatisfiable.append(operation.label)


def _pinned(target: Target, operation: APIOperation) -> dict[str, str]:
    known = {"dataset_id": target.dataset, "tenant": "acme"}
    names = {parameter.name for parameter in operation.path_parameters}
    return {name: value for name, value in known.items() if name in names}


def _kinds(target: Target, operation: APIOperation) -> Iterator[SearchStrategy[Case]]:
    """Valid requests (on the seeded ids, then anywhere), invalid ones, strangers."""
    auth = bearer()
    pinned = _pinned(target, operation)
    if pinned:
        yield operation.as_strategy(
            GenerationMode.POSITIVE, path_parameters=pinned, headers=auth
        )
    yield operation.as_strategy(GenerationMode.POSITIVE, headers=auth)
    yield operation.as_strategy(GenerationMode.NEGATIVE, headers=auth)
    yield operation.as_strategy(GenerationMode.NEGATIVE)


def test_no_generated_request_gets_a_5xx_or_moves_the_log_when_refused(
    target: Target,
) -> None:
    """Every operation of the OpenAPI document, fuzzed; failures listed at once."""
    operations = _operations(target.client)
    assert len(operations) >= 30, [o.label for o in operations]
    for operation in operations:
        for strategy in _kinds(target, operation):
            _run(target, operation, strategy)
    assert not target.failures, "\n".join(target.failures[:40])
    unsent = [o.label for o in operations if not target.sent.get(o.label)]
    assert unsent == []


def test_the_fuzzed_app_still_serves_the_seeded_dataset(target: Target) -> None:
    """After the run the app is healthy and acme's dataset readable."""
    assert target.client.get("/healthz").status_code == 200
    response = target.client.get(f"/v1/datasets/{target.dataset}", headers=bearer())
    assert response.status_code == 200, response.text
