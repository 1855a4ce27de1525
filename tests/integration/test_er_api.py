"""/v1/er over HTTP on real SQLite and PostgreSQL: resolve, candidates, jobs, caps."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.runtime.er import next_window, offpeak_trigger
from tests.conftest import bearer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from api.settings import Settings

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def rec(rid: str, given: str, surname: str, **rest: str) -> dict[str, Any]:
    fields = {
        "given_name": given,
        "surname": surname,
        "street_number": "12",
        "address_1": "high street",
        "suburb": "canberra",
        "postcode": "2600",
        "date_of_birth": "19800101",
        **rest,
    }
    return {"id": rid, "fields": fields}


BATCH = [
    rec("r0", "john", "smith"),
    rec("r1", "jon", "smith"),
    rec("r2", "mary", "smith", date_of_birth="19820202"),
    rec("r3", "peter", "jones", postcode="3000", address_1="low road", suburb="yass"),
    # r3 again, with typos that defeat every blocking key (soundex of both
    # names, the postcode): only ANN can propose this pair.
    rec("r4", "eter", "hones", postcode="3001", address_1="low road", suburb="yass"),
]


def head(client: TestClient[Any]) -> tuple[int, str]:
    page = client.get(
        "/v1/log", params={"after": 0, "limit": 1}, headers=bearer("acme", "audit.read")
    ).json()
    return page["head"]["events"], page["head"]["hash"]


def entries(client: TestClient[Any]) -> list[dict[str, Any]]:
    page = client.get(
        "/v1/log",
        params={"after": 0, "limit": 1000},
        headers=bearer("acme", "audit.read"),
    ).json()
    return list(page["entries"])


def resolve(
    client: TestClient[Any], records: list[dict[str, Any]], **extra: Any
) -> Any:
    return client.post(
        "/v1/er/resolve",
        json={"entitySet": "people", "records": records, **extra},
        headers=bearer("acme", "er.write"),
    )


def services_of(client: TestClient[Any]) -> Any:
    return client.app.state.conductor


def test_resolve_returns_pairs_and_decisions_and_records_them_as_events(
    client: TestClient[Any],
) -> None:
    """Typos merge, the sister does not; decisions land in the log as events."""
    done = resolve(client, BATCH)
    assert done.status_code == 200, done.text
    body = done.json()
    pairs = {(p["left"], p["right"]): p for p in body["pairs"]}
    assert pairs[("r0", "r1")]["merged"] is True
    assert pairs[("r0", "r1")]["score"] == 7
    assert pairs[("r3", "r4")]["merged"] is True
    assert pairs[("r3", "r4")]["via"] == "ann"  # postcode typo: blocking missed it
    assert pairs[("r0", "r2")]["merged"] is False
    assert pairs[("r0", "r2")]["score"] == 5
    assert body["mergeAt"] == 6
    assert body["position"] > 0
    logged = entries(client)
    seen = [e["topic"] for e in logged]
    assert "domain.er:Resolution.Requested" in seen
    assert "domain.er:ErQuota.Charged" in seen
    decided = [e["state"] for e in logged if e["topic"].endswith(".MergeDecided")]
    assert seen.count("domain.er:Resolution.MergeProposed") == len(decided) >= 4
    merged = {(d["left"], d["right"]): d["merged"] for d in decided}
    assert merged[("r0", "r1")] is True
    assert merged[("r0", "r2")] is False
    assert {d["gate_digest"] for d in decided} == {body["gateDigest"]}

    near = client.get(
        "/v1/er/candidates/r3",
        params={"entitySet": "people", "k": 2},
        headers=bearer("acme", "er.read"),
    )
    assert near.status_code == 200, near.text
    assert near.json()["neighbours"][0]["recordId"] == "r4"
    assert near.json()["indexPosition"] == body["position"]
    other_tenant = client.get(
        "/v1/er/candidates/r3",
        params={"entitySet": "people"},
        headers=bearer("globex", "er.read"),
    )
    assert other_tenant.status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"entitySet": "People!", "records": BATCH}, "entitySet", "pattern"),
        ({"entitySet": "people", "records": []}, "records", "length"),
        (
            {"entitySet": "people", "records": [BATCH[0], BATCH[0]]},
            "records[1].id",
            "unique",
        ),
        (
            {
                "entitySet": "people",
                "records": [{"id": "x", "fields": {"shoe_size": "44"}}],
            },
            "records[0].fields.shoe_size",
            "unknown-field",
        ),
        ({"entitySet": "people", "records": BATCH, "k": 0}, "k", "range"),
        ({"entitySet": "people", "records": BATCH, "colour": 1}, "colour", None),
    ],
)
def test_bad_input_is_a_problem_naming_the_field_and_changes_nothing(
    client: TestClient[Any], body: dict[str, Any], field: str, rule: str | None
) -> None:
    """422/400 problem+json naming field and rule; log head and vectors unchanged."""
    before = head(client)
    done = client.post("/v1/er/resolve", json=body, headers=bearer("acme", "er.write"))
    assert done.status_code in {400, 422}, done.text
    assert done.headers["content-type"].startswith(PROBLEM)
    errors = done.json()["errors"]
    named = [e for e in errors if e["field"] == field]
    assert named, errors
    if rule is not None:
        assert rule in {e["rule"] for e in named}
    assert head(client) == before
    assert services_of(client).er.store.count("acme", "people") == 0


def test_scopes_guard_the_routes(client: TestClient[Any]) -> None:
    """Resolving needs er.write; reading candidates is enough for er.read."""
    denied = client.post(
        "/v1/er/resolve",
        json={"entitySet": "people", "records": BATCH},
        headers=bearer("acme", "er.read"),
    )
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith(PROBLEM)


@pytest.fixture
def capped(settings: Settings) -> Iterator[TestClient[Any]]:
    """A service whose tenants may embed 6 records a day."""
    small = msgspec.structs.replace(settings, er_cap_records_per_day=6)
    with TestClient(create_app(small)) as test_client:
        yield test_client


def test_over_cap_batches_and_jobs_get_429_and_change_nothing(
    capped: TestClient[Any], settings: Settings
) -> None:
    """5 of 6 records pass; 2 more are refused (429, Retry-After); no events."""
    assert resolve(capped, BATCH).status_code == 200
    before = head(capped)
    refused = resolve(capped, [rec("r8", "ann", "lee"), rec("r9", "bo", "lee")])
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert int(refused.headers["retry-after"]) > 0
    problem = refused.json()
    assert problem["type"] == "/problems/er-cap-exceeded"
    assert (problem["capRecordsPerDay"], problem["usedToday"]) == (6, 5)
    assert problem["errors"][0] == {
        "field": "records",
        "rule": "cap",
        "message": "at most 1 more records today",
    }
    (settings.data_root_path / "acme").mkdir(parents=True, exist_ok=True)
    (settings.data_root_path / "acme" / "p.csv").write_text(
        "rec_id,surname\na,x\nb,y\n"
    )
    job = capped.post(
        "/v1/er/jobs",
        json={"entitySet": "people", "location": "p.csv", "force": True},
        headers=bearer("acme", "er.write"),
    )
    assert job.status_code == 429, job.text
    assert head(capped) == before
    assert "conductor_er_cap_refusals_total 2.0" in capped.get("/metrics").text


def wait_job(client: TestClient[Any], job_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = client.get(
            f"/v1/er/jobs/{job_id}", headers=bearer("acme", "er.read")
        ).json()
        if body["status"] == status:
            return dict(body)
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never became {status}: {body}")


def write_people(settings: Settings, rows: int, tenant: str = "acme") -> None:
    folder = settings.data_root_path / tenant
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["rec_id,given_name,surname,postcode"]
    lines += [f"p{n},name{n % 7},family{n % 11},{2600 + n % 5}" for n in range(rows)]
    (folder / "people.csv").write_text("\n".join(lines) + "\n")


def test_a_forced_job_runs_now_and_its_vectors_answer_candidates(
    client: TestClient[Any], settings: Settings
) -> None:
    """force=true: runs at once (within the cap); progress ends at records/records."""
    write_people(settings, 120)
    made = client.post(
        "/v1/er/jobs",
        json={"entitySet": "crm", "location": "people.csv", "force": True},
        headers=bearer("acme", "er.write"),
    )
    assert made.status_code == 202, made.text
    assert made.headers["location"] == f"/v1/er/jobs/{made.json()['id']}"
    done = wait_job(client, made.json()["id"], "completed")
    assert (done["done"], done["records"]) == (120, 120)
    assert len(done["vectorsSha256"]) == 64
    near = client.get(
        "/v1/er/candidates/p7",
        params={"entitySet": "crm", "k": 3},
        headers=bearer("acme", "er.read"),
    ).json()
    assert len(near["neighbours"]) == 3
    assert "p7" not in {n["recordId"] for n in near["neighbours"]}


@pytest.fixture
def offpeak(settings: Settings) -> Iterator[tuple[TestClient[Any], Settings]]:
    """A service whose off-peak hour is 12 hours away (the cron never fires here)."""
    hour = (datetime.now(UTC).hour + 12) % 24
    later = msgspec.structs.replace(settings, er_offpeak_hours=str(hour))
    with TestClient(create_app(later)) as test_client:
        yield test_client, later


def test_an_unforced_job_waits_for_the_off_peak_window(
    offpeak: tuple[TestClient[Any], Settings],
) -> None:
    """It is scheduled at the window's next start, and runs only when that comes."""
    client, settings = offpeak
    write_people(settings, 30)
    made = client.post(
        "/v1/er/jobs",
        json={"entitySet": "crm", "location": "people.csv"},
        headers=bearer("acme", "er.write"),
    )
    assert made.status_code == 202, made.text
    job = made.json()
    run_after = datetime.fromisoformat(job["runAfter"])
    expected = next_window(offpeak_trigger(settings), datetime.now(UTC))
    assert str(run_after.hour) == settings.er_offpeak_hours
    assert (run_after.minute, run_after.second) == (0, 0)
    assert abs(run_after - expected) <= timedelta(minutes=1)
    assert job["status"] == "scheduled"

    er = services_of(client).er
    assert er.run_due(now=run_after - timedelta(seconds=1)) == []
    assert wait_job(client, job["id"], "scheduled")["done"] == 0
    assert [str(j) for j in er.run_due(now=run_after)] == [job["id"]]
    assert wait_job(client, job["id"], "completed")["done"] == 30
    # The queue row goes after the Completed event is saved: wait for it, and
    # never start the job again (run_due would return its id).
    deadline = time.monotonic() + 10
    while er.app.due_jobs(run_after + timedelta(days=1)):
        assert time.monotonic() < deadline, "the completed job was never dequeued"
        time.sleep(0.02)
    assert er.run_due(now=run_after + timedelta(days=1)) == []

    cron = services_of(client)._scheduler.get_job("er-offpeak").trigger
    assert str(cron.fields[cron.FIELD_NAMES.index("hour")]) == settings.er_offpeak_hours
