"""GET /v1/er/jobs and /v1/er/resolutions over HTTP on real SQLite and PostgreSQL.

acme queues embedding jobs (some forced and run, some waiting for off-peak)
and resolves batches in two entity sets; globex does a little of each. The
lists are the ER read model's: the tenant's own rows, newest first, filtered,
paged by the one convention, free of record values, and the same after a
rebuild.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.cli.main import cmd_projections
from tests.conftest import bearer
from tests.integration.pages import walk
from tests.integration.test_er_api import rec, wait_job

if TYPE_CHECKING:
    from collections.abc import Iterator

    from api.settings import Settings

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"
READ = bearer("acme", "er.read")
WRITE = bearer("acme", "er.write")
GLOBEX = bearer("globex", "er.read", "er.write")
VALUE = "qzvxlistvalue"
"""In every record field acme and globex send: it must never be listed."""


@dataclass(frozen=True)
class Made:
    """What the writes returned: ids oldest first, per kind and entity set."""

    completed: list[str]
    scheduled: list[str]
    resolutions: dict[str, list[str]]
    replies: dict[str, Any]
    globex: tuple[str, str]
    """globex's job and resolution."""


@pytest.fixture
def api(settings: Settings) -> Iterator[tuple[TestClient[Any], Settings]]:
    """A service whose off-peak hour is 12 hours away: unforced jobs wait."""
    hour = (datetime.now(UTC).hour + 12) % 24
    later = msgspec.structs.replace(settings, er_offpeak_hours=str(hour))
    with TestClient(create_app(later)) as test_client:
        yield test_client, later


def _csv(settings: Settings, tenant: str, name: str, rows: int) -> str:
    folder = settings.data_root_path / tenant
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["rec_id,given_name,surname,postcode"]
    lines += [f"{tenant}{n},{VALUE}{n},{VALUE}fam,{VALUE}pc" for n in range(rows)]
    (folder / name).write_text("\n".join(lines) + "\n")
    return name


def _job(client: TestClient[Any], headers: dict[str, str], **body: Any) -> str:
    made = client.post("/v1/er/jobs", json=body, headers=headers)
    assert made.status_code == 202, made.text
    return str(made.json()["id"])


def _resolve(
    client: TestClient[Any], headers: dict[str, str], entity_set: str, n: int
) -> dict[str, Any]:
    records = [
        rec(f"{entity_set}{n}a", VALUE, "smith"),
        rec(f"{entity_set}{n}b", VALUE[:-1], "smith"),
        rec(f"{entity_set}{n}c", "mary", VALUE, date_of_birth="19820202"),
    ]
    done = client.post(
        "/v1/er/resolve",
        json={"entitySet": entity_set, "records": records},
        headers=headers,
    )
    assert done.status_code == 200, done.text
    return dict(done.json())


@pytest.fixture
def made(api: tuple[TestClient[Any], Settings]) -> Made:
    """acme: 3 forced (completed) crm jobs, 2 waiting people jobs, resolutions
    in both sets, interleaved; globex: one waiting job, one resolution."""
    client, settings = api
    crm = _csv(settings, "acme", "crm.csv", 4)
    people = _csv(settings, "acme", "people.csv", 3)
    completed, scheduled = [], []
    resolutions: dict[str, list[str]] = {"people": [], "crm": []}
    replies = {}
    for n in range(3):
        completed.append(_job(client, WRITE, entitySet="crm", location=crm, force=True))
        wait_job(client, completed[-1], "completed")
        for entity_set in ("people", "crm") if n < 2 else ("people",):
            reply = _resolve(client, WRITE, entity_set, n)
            resolutions[entity_set].append(reply["resolutionId"])
            replies[reply["resolutionId"]] = reply
        if n < 2:
            scheduled.append(_job(client, WRITE, entitySet="people", location=people))
    theirs = _csv(settings, "globex", "people.csv", 2)
    globex_job = _job(client, GLOBEX, entitySet="people", location=theirs)
    globex_resolution = _resolve(client, GLOBEX, "people", 9)["resolutionId"]
    return Made(
        completed=completed,
        scheduled=scheduled,
        resolutions=resolutions,
        replies=replies,
        globex=(globex_job, globex_resolution),
    )


def _fresh(client: TestClient[Any], headers: dict[str, str]) -> dict[str, str]:
    """``headers`` asking for a read model caught up with the whole log."""
    head = client.app.state.conductor.core.ledger.recorder.max_notification_id()
    return {**headers, "x-ig-min-position": str(head)}


def _get(
    client: TestClient[Any], url: str, headers: dict[str, str] = READ
) -> dict[str, Any]:
    answer = client.get(url, headers=_fresh(client, headers))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _ids(client: TestClient[Any], url: str, headers: dict[str, str] = READ) -> Any:
    body = _get(client, url, headers)
    assert body["next"] is None
    return [item["id"] for item in body["items"]]


def _walk(client: TestClient[Any], url: str) -> list[dict[str, Any]]:
    return walk(client, url, lambda: _fresh(client, READ))


def test_the_lists_show_the_tenants_own_rows_newest_first(
    api: tuple[TestClient[Any], Settings], made: Made
) -> None:
    """Every acme job and resolution, newest first, with its counts; no globex."""
    client, _ = api
    jobs = _get(client, "/v1/er/jobs")
    ids = [j["id"] for j in jobs["items"]]
    everything = [*made.completed, *made.scheduled]
    assert sorted(ids) == sorted(everything)
    positions = [j["position"] for j in jobs["items"]]
    assert len(set(positions)) == len(positions)
    # The request order: c0 s0 c1 s1 c2 (each completed job before the rest).
    order = [made.completed[0], made.scheduled[0], made.completed[1]]
    order += [made.scheduled[1], made.completed[2]]
    assert ids == order[::-1]
    for job in jobs["items"]:
        single = wait_job(client, job["id"], job["status"])  # GET /v1/er/jobs/{id}
        assert job == {**single, "position": job["position"]}
        if job["id"] in made.completed:
            assert (job["status"], job["done"], job["records"]) == ("completed", 4, 4)
            assert len(job["vectorsSha256"]) == 64
            assert (job["forced"], job["attempt"]) == (True, 1)
        else:
            assert (job["status"], job["done"], job["records"]) == ("scheduled", 0, 3)
            assert (job["forced"], job["attempt"]) == (False, 0)

    listed = _get(client, "/v1/er/resolutions")["items"]
    created = made.resolutions["people"] + made.resolutions["crm"]
    assert sorted(r["id"] for r in listed) == sorted(created)
    people, crm = made.resolutions["people"], made.resolutions["crm"]
    assert [r["id"] for r in listed] == [
        people[2],
        crm[1],
        people[1],
        crm[0],
        people[0],
    ]
    for row in listed:
        reply = made.replies[row["id"]]
        assert row["records"] == reply["records"] == 3
        assert row["candidatePairs"] == reply["candidatePairs"]
        assert row["gateDigest"] == reply["gateDigest"]
        assert row["merges"] == sum(p["merged"] for p in reply["pairs"]) >= 1
        assert row["pairsProposed"] == row["pairsDecided"] >= row["merges"]
        assert row["position"] >= reply["position"]

    globex_job, globex_resolution = made.globex
    assert _ids(client, "/v1/er/jobs", GLOBEX) == [globex_job]
    assert _ids(client, "/v1/er/resolutions", GLOBEX) == [globex_resolution]
    assert _ids(client, "/v1/er/jobs", bearer("initech", "er.read")) == []
    answer = client.get("/v1/er/jobs", headers=bearer("acme", "catalog.read"))
    assert answer.status_code == 403, answer.text


def test_filters_narrow_the_lists(
    api: tuple[TestClient[Any], Settings], made: Made
) -> None:
    """status and entitySet select rows (both at once too); a bad status is 400."""
    client, _ = api
    assert _ids(client, "/v1/er/jobs?status=completed") == made.completed[::-1]
    assert _ids(client, "/v1/er/jobs?status=scheduled") == made.scheduled[::-1]
    assert _ids(client, "/v1/er/jobs?status=failed") == []
    assert _ids(client, "/v1/er/jobs?entitySet=people") == made.scheduled[::-1]
    assert _ids(client, "/v1/er/jobs?entitySet=crm&status=scheduled") == []
    assert (
        _ids(client, "/v1/er/jobs?entitySet=crm&status=completed")
        == (made.completed[::-1])
    )
    for entity_set, ids in made.resolutions.items():
        url = f"/v1/er/resolutions?entitySet={entity_set}"
        assert _ids(client, url) == ids[::-1]
    assert _ids(client, "/v1/er/resolutions?entitySet=nobody") == []
    bad = client.get("/v1/er/jobs?status=lost", headers=READ)
    assert bad.status_code == 400, bad.text
    assert bad.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("/v1/er/jobs?limit=2", "jobs"),
        ("/v1/er/jobs?entitySet=crm&limit=1", "crm jobs"),
        ("/v1/er/resolutions?limit=2", "resolutions"),
        ("/v1/er/resolutions?entitySet=people&limit=1", "people resolutions"),
    ],
)
def test_following_the_link_header_yields_every_row_once(
    api: tuple[TestClient[Any], Settings], made: Made, url: str, kind: str
) -> None:
    """Pages of ``limit`` in order, keeping the filters, ending with next null."""
    client, _ = api
    expected = {
        "jobs": _ids(client, "/v1/er/jobs"),
        "crm jobs": made.completed[::-1],
        "resolutions": _ids(client, "/v1/er/resolutions"),
        "people resolutions": made.resolutions["people"][::-1],
    }[kind]
    pages = _walk(client, url)
    ids = [item["id"] for page in pages for item in page["items"]]
    assert ids == expected
    size = int(url.rsplit("=", 1)[1])
    assert all(len(page["items"]) == size for page in pages[:-1])
    assert 0 < len(pages[-1]["items"]) <= size


def test_another_tenant_gets_none_of_the_rows_and_no_cursor_crosses(
    api: tuple[TestClient[Any], Settings], made: Made
) -> None:
    """globex's lists lack acme's rows; cursors of another listing or tenant: 400."""
    client, _ = api
    mine = set(made.completed + made.scheduled)
    mine |= set(made.resolutions["people"] + made.resolutions["crm"])
    for url in ("/v1/er/jobs", "/v1/er/resolutions", "/v1/er/jobs?entitySet=crm"):
        answer = client.get(url, headers=_fresh(client, GLOBEX))
        assert answer.status_code == 200, answer.text
        assert not mine & {item["id"] for item in answer.json()["items"]}
        assert "acme" not in answer.text
    jobs_cursor = _get(client, "/v1/er/jobs?limit=1")["next"]
    resolutions_cursor = _get(client, "/v1/er/resolutions?limit=1")["next"]
    assert jobs_cursor
    assert resolutions_cursor
    refused = [
        ("/v1/er/jobs", GLOBEX, jobs_cursor),  # acme's cursor, globex's token
        ("/v1/er/resolutions", GLOBEX, resolutions_cursor),
        ("/v1/er/resolutions", READ, jobs_cursor),  # another listing's
        ("/v1/er/jobs", READ, resolutions_cursor),
        ("/v1/er/jobs", READ, "not-a-cursor"),
        ("/v1/er/resolutions", READ, "am9iOjE6eA"),  # "job:1:x"
    ]
    for url, headers, cursor in refused:
        answer = client.get(url, params={"after": cursor}, headers=headers)
        assert answer.status_code == 400, (url, cursor, answer.text)
        assert answer.headers["content-type"].startswith(PROBLEM)
        assert answer.json()["errors"][0]["field"] == "after"


def test_the_bodies_carry_no_record_field_values(
    api: tuple[TestClient[Any], Settings], made: Made
) -> None:
    """Ids, counts, digests and statuses only: no field value, no record id."""
    client, _ = api
    del made
    for url in ("/v1/er/jobs", "/v1/er/resolutions"):
        for headers in (READ, GLOBEX):
            text = client.get(url, headers=_fresh(client, headers)).text
            assert VALUE not in text
            assert "smith" not in text
            assert "people0a" not in text
            assert ".csv" not in text


def test_a_projection_rebuild_gives_the_same_rows(
    api: tuple[TestClient[Any], Settings],
    made: Made,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`conductor projections rebuild er` replays the log into equal lists."""
    client, settings = api
    del made
    urls = ("/v1/er/jobs", "/v1/er/resolutions", "/v1/er/jobs?status=completed")
    before = {url: _get(client, url) for url in urls}
    runner = client.app.state.conductor.core.runners["er"]
    runner.stop()  # the CLI's own conductor rebuilds; this one must not race it
    try:
        rebuild = argparse.Namespace(action="rebuild", name="er")
        assert cmd_projections(settings, rebuild) == 0
        assert "rebuilt er:" in capsys.readouterr().out
    finally:
        runner.start()
    assert {url: _get(client, url) for url in urls} == before


@pytest.mark.parametrize("url", ["/v1/er/jobs", "/v1/er/resolutions"])
def test_the_limit_ceiling_is_enforced_and_documented(
    api: tuple[TestClient[Any], Settings], url: str
) -> None:
    """limit: 50 unless given, at most 200 (400 naming limit past it), in OpenAPI."""
    client, _ = api
    over = client.get(f"{url}?limit=201", headers=READ)
    assert over.status_code == 400, over.text
    assert "limit" in over.text
    assert client.get(f"{url}?limit=200", headers=READ).status_code == 200
    schema = client.get("/schema/openapi.json").json()
    params = schema["paths"][url]["get"]["parameters"]
    limit = next(p for p in params if p["name"] == "limit")
    assert (limit["schema"]["maximum"], limit["schema"]["default"]) == (200, 50)
    assert "at most 200" in limit["description"]
    assert {p["name"] for p in params} >= {"after", "entitySet"}
