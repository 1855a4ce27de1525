"""Hostile tenant policies: bounded, deterministic, and harmless to other tenants.

A tenant with export.approve publishes Rego. Whatever it does (huge sets,
string blow-up, long loops, recursion, the clock), it runs in a confined
worker: publication refuses it with a 422 naming the limit or the builtin,
a decision that hits a limit denies fail-closed (policy_evaluation_limit) and
is recorded, and the service keeps answering every other tenant meanwhile.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from litestar.testing import TestClient

from adapters.audit.auditor import Replayer, read_log
from adapters.exports.rego import NONDETERMINISTIC, TieredRegoEngine
from adapters.exports.rego_sandbox import RegoSandbox
from api.app import create_app
from tests.conftest import bearer, dataset_body
from tests.integration.test_exports import COLUMNS, customers_csv, settle

if TYPE_CHECKING:
    from collections.abc import Iterator

    from api.settings import Settings

pytestmark = pytest.mark.integration

HEADER = "package conductor.export\nimport rego.v1\n"
RUNAWAYS = {
    "huge-set": "x := count({i | some i in numbers.range(1, 100000000)})",
    "string-blowup": (
        's1 := concat("", ["aaaaaaaaaa" | some _ in numbers.range(1, 1000)])\n'
        's2 := concat("", [s1 | some _ in numbers.range(1, 1000)])\n'
        'x := count(concat("", [s2 | some _ in numbers.range(1, 1000)]))'
    ),
    "long-loop": (
        "x := count([1 | some a in numbers.range(1, 3000); "
        "some b in numbers.range(1, 3000); a * b == -1])"
    ),
}
LIMIT_RULES = {"cpu-time-limit", "memory-limit", "wall-clock-limit"}


def module(body: str, deny: str = "[x]") -> str:
    return f'{HEADER}{body}\ndecision := {{"allow": true, "deny": {deny}}}\n'


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Tighter limits than the defaults, so runaways are caught quickly."""
    return msgspec.structs.replace(
        settings,
        policy_cpu_s=0.5,
        policy_wall_s=1.5,
        policy_memory_mb=160,
    )


@pytest.fixture
def app_client(fast: Settings) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(fast)) as test_client:
        yield test_client


def publish(client: TestClient[Any], source: str, tenant: str = "acme") -> Any:
    return client.post(
        "/v1/policies",
        json={"name": "export", "modules": [{"name": "gate.rego", "source": source}]},
        headers=bearer(tenant, "export.approve"),
    )


def register(
    client: TestClient[Any], settings: Settings, tenant: str, name: str = "customers"
) -> str:
    root = settings.data_root_path / tenant
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.csv").write_text(customers_csv(), encoding="utf-8")
    body = dataset_body(name, location=f"{name}.csv", columns=COLUMNS)
    response = client.post("/v1/datasets", json=body, headers=bearer(tenant))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def export(client: TestClient[Any], dataset_id: str, tenant: str = "acme") -> Any:
    return client.post(
        "/v1/exports",
        json={
            "datasetId": dataset_id,
            "preset": "tokenize_strict",
            "purpose": "investigation",
            "destinationRegion": "EU",
        },
        headers=bearer(tenant),
    )


def log_head(client: TestClient[Any]) -> Any:
    return client.app.state.conductor.core.ledger.head()


@pytest.mark.parametrize("kind", sorted(RUNAWAYS))
def test_a_runaway_policy_is_refused_at_publication_naming_the_limit(
    app_client: TestClient[Any], kind: str
) -> None:
    """422 with the limit as the rule; nothing is published or bound."""
    before = log_head(app_client)
    response = publish(app_client, module(RUNAWAYS[kind]))
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["field"] == "modules"
    assert error["rule"] in LIMIT_RULES, error
    assert "exceeded" in error["message"]
    assert log_head(app_client) == before
    kills = app_client.app.state.conductor.exports.app.engine.sandboxed.sandbox.kills
    assert sum(kills.values()) >= 1


def test_a_recursive_policy_is_refused_with_the_engines_message(
    app_client: TestClient[Any],
) -> None:
    """Rego forbids recursion; the 422 says so instead of crashing anything."""
    response = publish(app_client, module("f(n) := f(n - 1)\nx := f(3)"))
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["rule"] == "evaluation-error"
    assert "Recursion" in error["message"]


@pytest.mark.parametrize("builtin", sorted(NONDETERMINISTIC))
def test_a_policy_calling_a_nondeterministic_builtin_is_refused(
    app_client: TestClient[Any], builtin: str
) -> None:
    """The compiled plan names every builtin the policy calls, so the clock,
    randomness, I/O and the runtime are refused by name (a name in the list
    that the engine did not know would not show up in the plan, and fail)."""
    arguments = {
        "http.send": '{"method": "GET", "url": "http://127.0.0.1:9"}',
        "net.lookup_ip_addr": '"example.com"',
        "opa.runtime": "",
        "time.now_ns": "",
        "rand.intn": '"seed", 10',
        "uuid.rfc4122": '"k"',
        "io.jwt.encode_sign": '{"alg": "HS256"}, {}, {"kty": "oct", "k": "a2V5"}',
        "io.jwt.encode_sign_raw": '"{}", "{}", "{}"',
        "io.jwt.decode_verify": '"a.b.c", {"secret": "s"}',
        "crypto.x509.parse_and_verify_certificates": '"x"',
        "internal.print": "[1]",
    }[builtin]
    source = module(f"x := {builtin}({arguments})", deny="[]")
    before = log_head(app_client)
    response = publish(app_client, source)
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["rule"] == "nondeterministic-builtin", error
    assert builtin in error["message"]
    assert log_head(app_client) == before


def test_print_is_caught_under_its_engine_name(app_client: TestClient[Any]) -> None:
    """`print(...)` compiles to internal.print: an alias cannot hide a call."""
    source = module('x := 1 if { print("leak", input.dataset.name) }', deny="[]")
    response = publish(app_client, source)
    assert response.status_code == 422, response.text
    assert "internal.print" in response.json()["errors"][0]["message"]


BOMB = module(
    'x := "input-bomb" if {\n'
    '  input.dataset.name == "bomb"\n'
    "  count({i | some i in numbers.range(1, 100000000)}) > 0\n"
    "}\n",
    deny='[r | some r in ["input-bomb"]; x == r]',
)
"""Passes every publication probe; blows up on one real dataset's input."""


def test_a_limit_at_decision_time_denies_fail_closed_and_is_recorded(
    app_client: TestClient[Any], fast: Settings
) -> None:
    """The export is denied with policy_evaluation_limit naming the limit, the
    decision is in the log, and an offline replay reproduces it."""
    assert publish(app_client, BOMB).status_code == 201
    dataset_id = register(app_client, fast, "acme", name="bomb")
    denied = export(app_client, dataset_id)
    assert denied.status_code == 403, denied.text
    problem = denied.json()
    assert problem["reasons"] == ["policy_evaluation_limit"]
    assert problem["deniedBy"] == {
        "platform": [],
        "tenant": ["policy_evaluation_limit"],
    }
    assert problem["limit"] in {"cpu_time", "memory", "wall_clock"}
    recorded = app_client.get(
        f"/v1/exports/{problem['exportId']}", headers=bearer()
    ).json()
    assert recorded["status"] == "denied"
    assert recorded["decision"]["limit"] == problem["limit"]
    result = replay(app_client, problem["exportId"])
    assert result.matches, result.mismatches
    assert result.reasons == ("policy_evaluation_limit",)


def test_a_tenant_policy_decision_replays_identically(
    app_client: TestClient[Any], fast: Settings
) -> None:
    """Determinism: a sandboxed tenant policy's allow and deny both replay."""
    rule = 'deny contains "no_small" if input.dataset.name == "small"\n'
    source = (
        f"{HEADER}{rule}default allow := false\nallow if count(deny) == 0\n"
        'decision := {"allow": allow, "deny": sort(deny)}\n'
    )
    assert publish(app_client, source).status_code == 201
    denied = export(app_client, register(app_client, fast, "acme", name="small"))
    assert denied.json()["deniedBy"]["tenant"] == ["no_small"]
    allowed = export(app_client, register(app_client, fast, "acme", name="large"))
    assert allowed.status_code == 201, allowed.text
    for export_id in (denied.json()["exportId"], allowed.json()["id"]):
        result = replay(app_client, export_id)
        assert result.matches, result.mismatches


def replay(client: TestClient[Any], export_id: str) -> Any:
    """The decision re-run offline from the whole log, in a fresh sandbox."""
    from uuid import UUID  # noqa: PLC0415

    ledger = client.app.state.conductor.core.ledger
    records = read_log_of(ledger)
    engine = TieredRegoEngine(RegoSandbox())
    try:
        return Replayer(records, engine).replay(UUID(export_id))
    finally:
        engine.close()


def read_log_of(ledger: Any) -> list[Any]:
    import io  # noqa: PLC0415

    from adapters.audit.auditor import write_log  # noqa: PLC0415

    buffer = io.StringIO()
    write_log(ledger.entries(after=0, limit=100_000), buffer)
    return list(read_log(buffer.getvalue().splitlines()))


def test_other_tenants_are_served_while_a_runaway_policy_runs(
    app_client: TestClient[Any], fast: Settings
) -> None:
    """While evil's exports hit the limit again and again, acme registers,
    searches and exports (its own sandboxed policy included) without waiting
    for evil; afterwards everything still works and the API process stayed
    small (the memory went to killed workers, not here)."""
    assert publish(app_client, BOMB, tenant="evil").status_code == 201
    bomb = register(app_client, fast, "evil", name="bomb")
    own = module("x := 1", deny="[]")
    assert publish(app_client, own, tenant="acme").status_code == 201
    acme_dataset = register(app_client, fast, "acme")
    rss_before = _rss()
    evil_done = threading.Event()
    evil_results: list[int] = []

    def evil() -> None:
        evil_results.extend(
            export(app_client, bomb, tenant="evil").status_code for _ in range(4)
        )
        evil_done.set()

    thread = threading.Thread(target=evil)
    thread.start()
    served_during = 0
    while not evil_done.is_set() and served_during < 12:
        assert export(app_client, acme_dataset).status_code == 201
        listing = app_client.get("/v1/datasets", headers=bearer("acme"))
        assert listing.status_code == 200
        served_during += 1
    thread.join(timeout=60)
    assert evil_results == [403, 403, 403, 403]
    assert served_during >= 2, "acme was not served while evil's policy ran"
    final = settle(app_client, export(app_client, acme_dataset).json()["id"])
    assert final["status"] == "proven"
    assert _rss() - rss_before < 100 * 1024 * 1024


def _rss() -> int:
    import os  # noqa: PLC0415

    with open(f"/proc/{os.getpid()}/statm", "rb") as statm:  # noqa: PTH123
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class TestSandboxPool:
    """The pool itself, driven directly (no HTTP)."""

    def test_a_worker_sees_none_of_the_servers_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Even a policy that got past publication cannot read the server's
        secrets: opa.runtime()'s env holds nothing of CONDUCTOR_*."""
        monkeypatch.setenv("CONDUCTOR_JWT_SECRET", "s3cret-" + "x" * 30)
        source = [
            (
                "e.rego",
                f"{HEADER}env := opa.runtime().env\n"
                'decision := {"allow": true, "deny": object.keys(env)}\n',
            )
        ]
        sandbox = RegoSandbox()
        try:
            text = sandbox.evaluate("env", source, {})
        finally:
            sandbox.close()
        assert "expressions" in text
        assert "CONDUCTOR_JWT_SECRET" not in text
        assert "s3cret" not in text

    def test_one_tenant_holds_one_worker_and_others_pass_it(self) -> None:
        """While evil's evaluation runs to its wall-clock limit, acme's
        evaluation is answered (it does not queue behind evil)."""
        from adapters.exports.rego_sandbox import Limits  # noqa: PLC0415
        from application.ports import PolicyLimitExceededError  # noqa: PLC0415

        sandbox = RegoSandbox(workers=2, limits=Limits(cpu_s=5.0, wall_s=1.5))
        slow = [("s.rego", module(RUNAWAYS["long-loop"]))]
        quick = [("q.rego", module("x := 1", "[]"))]
        finished: list[str] = []

        def evil() -> None:
            try:
                sandbox.evaluate("slow", slow, {}, tenant="evil")
            except PolicyLimitExceededError:
                finished.append("evil")

        try:
            sandbox.evaluate("quick", quick, {}, tenant="acme")  # warm a worker
            thread = threading.Thread(target=evil)
            thread.start()
            import time  # noqa: PLC0415

            time.sleep(0.2)  # evil holds its worker now
            sandbox.evaluate("quick", quick, {}, tenant="acme")
            finished.append("acme")
            thread.join(timeout=30)
        finally:
            sandbox.close()
        assert finished == ["acme", "evil"]
        assert sandbox.kills["wall_clock"] + sandbox.kills["cpu_time"] == 1

    @pytest.mark.parametrize(("limit_mb", "kept"), [(160, True), (56, False)])
    def test_a_worker_past_half_its_memory_is_replaced(
        self, limit_mb: int, kept: bool
    ) -> None:
        """A worker left holding half its ceiling or more (a bare worker holds
        ~30 MB) is replaced, so the next evaluation gets its whole budget; a
        smaller one is reused."""
        import time  # noqa: PLC0415

        from adapters.exports.rego_sandbox import Limits  # noqa: PLC0415

        limits = Limits(memory_bytes=limit_mb * 1024**2)
        sandbox = RegoSandbox(workers=1, limits=limits)
        small = [("q.rego", module("x := 1", "[]"))]
        try:
            sandbox.evaluate("small", small, {})
            deadline = time.monotonic() + 10
            while not (first := sandbox.worker_pids()):
                assert time.monotonic() < deadline, "no worker came back"
                time.sleep(0.02)
            sandbox.evaluate("small", small, {})
            while not (second := sandbox.worker_pids()):
                assert time.monotonic() < deadline, "no worker came back"
                time.sleep(0.02)
        finally:
            sandbox.close()
        assert (first == second) is kept
        assert dict(sandbox.kills) == {}
