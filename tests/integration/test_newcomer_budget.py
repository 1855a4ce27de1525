"""The README's budget example followed literally does not throttle `demo`.

A newcomer runs the first session of README.md and the budget commands of
docs/autopilot.md (parsed from the docs, as test_docs.py reads them), then
sends one deliberate 503 that also takes 2 s (a read waiting on a position
the log never reaches). The controller ticks: a handful of requests is no
outage (ADR 0015's minimum events per window) and a lone tenant is never
shaped for its own SLO; the same burn at volume pages and raises an incident,
still without a throttle.
"""

from __future__ import annotations

import itertools
import re
import shlex
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec.structs
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.auth import TENANT_SCOPES, issue_token
from domain.autopilot.budget import LATENCY_BOUNDS_MS
from domain.autopilot.usage import Counts
from tests.conftest import REPO_ROOT, SECRET
from tests.integration.test_docs import runnable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from api.settings import Settings

pytestmark = pytest.mark.integration


def _words(command: str) -> list[str]:
    """A shell command's words up to its first pipe (quotes honoured)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|;&")
    lexer.whitespace_split = True
    words = []
    for word in lexer:
        if word and set(word) <= set("|;&"):
            break
        words.append(word)
    return words


def commands(doc: str) -> list[list[str]]:
    """Every command of the doc's runnable blocks, as words, in order."""
    found = []
    for block in runnable(REPO_ROOT / doc):
        pending = ""
        for line in block.text.replace("\\\n", " ").splitlines():
            pending = f"{pending}\n{line}" if pending else line
            try:
                words = _words(pending)
            except ValueError:  # a quote spans lines (a JSON body)
                continue
            pending = ""
            if words:
                found.append(words)
    return found


def curls(doc: str, path_pattern: str) -> list[dict[str, Any]]:
    """The doc's runnable curl commands whose URL matches: method, path,
    headers and body, with $CONDUCTOR dropped and $TOKEN left to fill in."""
    found = []
    for words in commands(doc):
        if words[0] != "curl":
            continue
        url = next(w for w in words if w.startswith("$CONDUCTOR"))
        path = url.removeprefix("$CONDUCTOR")
        if not re.fullmatch(path_pattern, path.split("?")[0]):
            continue
        method = next(
            (w[2:] for w in words if w.startswith("-X") and len(w) > 2), "GET"
        )
        headers = {}
        body = None
        for flag, value in itertools.pairwise(words):
            if flag == "-H" and "$(" not in value:
                name, _, val = value.partition(":")
                headers[name.strip()] = val.strip()
            elif flag == "-d":
                body = value
        found.append({"method": method, "path": path, "headers": headers, "body": body})
    return found


def send(client: TestClient[Any], token: str, command: dict[str, Any]) -> Any:
    headers = {k: v.replace("$TOKEN", token) for k, v in command["headers"].items()}
    return client.request(
        command["method"], command["path"], headers=headers, content=command["body"]
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[Any]]:
    # as `conductor serve` runs it: the docs' 2 s read wait, buckets enforced
    wired = msgspec.structs.replace(
        settings, min_position_wait_s=2.0, shaping_refresh_s=0.0
    )
    with TestClient(create_app(wired)) as test_client:
        yield test_client


def demo_token() -> str:
    return issue_token(
        SECRET,
        tenant="demo",
        scopes=sorted(TENANT_SCOPES),
        sub="demo",
        ttl=timedelta(hours=1),
    )


def settle(client: TestClient[Any], requests: int) -> None:
    meter = client.app.state.conductor.autopilot.meter
    deadline = time.monotonic() + 5
    while meter.pending() < requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert meter.pending() >= requests


def test_the_readme_budget_example_does_not_throttle_the_demo_tenant(
    client: TestClient[Any],
) -> None:
    """README's first session, the docs' budget, one 2 s 503: no shaping, no
    page, no incident; the next request is served."""
    token = demo_token()
    first = curls("README.md", r"/v1/datasets")
    budget = curls("docs/autopilot.md", r"/v1/tenants/demo/budget")
    assert [c["method"] for c in first] == ["POST", "GET"]
    assert budget[0]["method"] == "PUT"
    assert '"availability": 0.999' in budget[0]["body"]
    for command in [*first, budget[0]]:
        assert send(client, token, command).status_code < 300, command
    started = time.monotonic()
    slow = client.get(
        "/v1/datasets",
        headers={"Authorization": f"Bearer {token}", "x-ig-min-position": "999999"},
    )
    assert slow.status_code == 503
    assert time.monotonic() - started >= 2.0
    settle(client, 4)
    services = client.app.state.conductor
    services.jobs.flush_meter()
    services.jobs.run_autopilot()
    burn = services.autopilot.controller.last_burns["demo"]
    assert burn.slo["5m"]["query"]["availability"] > 14.4  # a hot burn, as rates go
    assert burn.alerts == []  # but over 4 requests: not an outage
    budget_now = services.autopilot.budgets.budget("demo")
    assert budget_now.effective_shaping() is None
    assert budget_now.guards == {}
    assert services.autopilot.incidents.list("demo", "all") == []
    after = client.get("/v1/datasets", headers={"Authorization": f"Bearer {token}"})
    assert after.status_code == 200
    assert "x-ig-throttle" not in after.headers


def _bad_traffic(requests: int) -> Counts:
    """Query traffic with 5 % errors (50x a 99.9 % budget), metered at no cost
    (the cost cap is another rule, and the docs' budget allows little)."""
    counts = Counts(requests=requests, errors=requests // 20)
    counts.hist[LATENCY_BOUNDS_MS.index(25)] = requests
    return counts


def test_a_lone_tenant_paging_at_volume_gets_an_incident_not_a_throttle(
    client: TestClient[Any],
) -> None:
    """Enough requests to page: the guard opens the incident, and with no
    neighbour to protect the tenant is not shaped."""
    token = demo_token()
    budget = curls("docs/autopilot.md", r"/v1/tenants/demo/budget")[0]
    assert send(client, token, budget).status_code < 300
    services = client.app.state.conductor
    now_ms = int(time.time() * 1000)
    services.autopilot.meter.add("demo", "query", _bad_traffic(36_000), now_ms)
    services.jobs.flush_meter()
    services.jobs.run_autopilot()
    burn = services.autopilot.controller.last_burns["demo"]
    assert burn.page
    budget_now = services.autopilot.budgets.budget("demo")
    assert "slo-page" in budget_now.guards
    assert budget_now.effective_shaping() is None
    opened = {i.guard for i in services.autopilot.incidents.list("demo", "open")}
    assert "slo-page" in opened
