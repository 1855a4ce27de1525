"""A tenant reads its slice of the one global log, proven, and nothing else.

The reported case: `GET /v1/log` with a tenant's `audit.read` token returned
every tenant's events. Now it returns the caller's slice (its events, the
policies it bound, the public keys), each entry with an RFC 9162 inclusion
proof against one signed checkpoint of the whole log; `audit.platform`
still reads everything. The slice file `conductor audit export-log --tenant`
/ `--url` writes verifies and replays offline, and tampering is named.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from adapters.audit.slice import read_checked
from adapters.ledger.merkle import proof_from_hex, verify_inclusion
from adapters.signing.dsse import verify_envelope
from api.auth import issue_token
from projections.tenancy import PUBLIC
from tests.conftest import REPO_ROOT, SECRET, bearer, dataset_body
from tests.integration.server import Server, cli, cli_env
from tests.integration.test_exports import register, request, settle

if TYPE_CHECKING:
    from pathlib import Path

    from litestar.testing import TestClient

    from api.settings import Settings

pytestmark = pytest.mark.integration

ACME = bearer("acme", "audit.read")
OPERATOR = bearer("ops", "audit.platform")
GLOBEX_SECRET = "globex-payroll-secret"
GLOBEX_RULE = "globex_only_rule"
ACME_RULE = "acme_only_rule"
CLI = (sys.executable, "-m", "api.cli")


def policy(rule: str) -> dict[str, Any]:
    """A Rego v1 export policy that allows, with a rule naming its tenant."""
    source = (
        "package conductor.export\nimport rego.v1\n"
        f'{rule} if input.request.purpose == "{rule}"\n'
        f'deny contains "{rule}" if {rule}\n'
        "default allow := false\nallow if count(deny) == 0\n"
        'decision := {"allow": allow, "deny": sort(deny)}\n'
    )
    return {"name": "export", "modules": [{"name": f"{rule}.rego", "source": source}]}


@dataclass(frozen=True)
class World:
    acme_dataset: str
    acme_exports: tuple[str, ...]
    globex_dataset: str
    globex_digest: str
    acme_digest: str


@pytest.fixture
def world(client: TestClient[Any], settings: Settings) -> World:
    """acme exports under the built-in gate, then under its own policy;
    globex registers a secret dataset and publishes its own policy."""
    acme = register(client, settings)
    first = request(client, acme).json()["id"]  # publishes and binds the gate
    secret = dataset_body(
        GLOBEX_SECRET,
        description=f"{GLOBEX_SECRET} description",
        location=f"{GLOBEX_SECRET}.csv",
        columns=[{"name": "salary_of_globex", "classification": "public"}],
    )
    globex = client.post("/v1/datasets", json=secret, headers=bearer("globex"))
    assert globex.status_code == 201, globex.text
    globex_digest = _publish(client, "globex", GLOBEX_RULE)
    acme_digest = _publish(client, "acme", ACME_RULE)
    second = request(client, acme).json()["id"]
    for export_id in (first, second):
        assert settle(client, export_id)["status"] == "proven"
    return World(
        acme_dataset=acme,
        acme_exports=(first, second),
        globex_dataset=str(globex.json()["id"]),
        globex_digest=globex_digest,
        acme_digest=acme_digest,
    )


def _publish(client: TestClient[Any], tenant: str, rule: str) -> str:
    published = client.post(
        "/v1/policies", json=policy(rule), headers=bearer(tenant, "export.approve")
    )
    assert published.status_code == 201, published.text
    return str(published.json()["digest"])


def whole(client: TestClient[Any], headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every page of GET /v1/log with these headers."""
    pages, after = [], 0
    while True:
        page = client.get(f"/v1/log?after={after}&limit=1000", headers=headers)
        assert page.status_code == 200, page.text
        pages.append(page.json())
        if page.json()["nextAfter"] is None:
            return pages
        after = page.json()["nextAfter"]


def keys_in(entries: list[dict[str, Any]]) -> dict[str, str]:
    """The public keys a slice's SigningKeyRing events record."""
    return {
        e["state"]["key_id"]: e["state"]["public_key_pem"]
        for e in entries
        if e["topic"].endswith("SigningKeyRing.KeyAdded")
    }


def assert_proven(page: dict[str, Any], keys: dict[str, str] | None = None) -> None:
    """Every entry's proof leads to the page's checkpoint, which the page's
    own public-key events (or ``keys``) verify."""
    checkpoint = page["checkpoint"]
    root = bytes.fromhex(checkpoint["rootHash"])
    keys = keys_in(page["entries"]) if keys is None else keys
    assert keys, "the slice carries the public keys"
    assert verify_envelope(checkpoint["envelope"], keys) == []
    for entry in page["entries"]:
        inclusion = entry["inclusion"]
        assert inclusion["treeSize"] == checkpoint["size"]
        assert verify_inclusion(
            bytes.fromhex(entry["hash"]),
            inclusion["leafIndex"],
            checkpoint["size"],
            proof_from_hex(inclusion["proof"]),
            root,
        ), entry["position"]


# -- the reported case ---------------------------------------------------------------


def test_a_tenants_audit_token_reads_its_own_slice_and_nothing_of_another(
    client: TestClient[Any], world: World
) -> None:
    """acme's page: its datasets, exports, bound policies and the public keys;
    nothing of globex's dataset or policy; every entry proven."""
    page = client.get("/v1/log?limit=1000", headers=ACME)
    assert page.status_code == 200, page.text
    body = page.json()
    text = json.dumps(body)
    assert GLOBEX_SECRET not in text
    assert "salary_of_globex" not in text
    assert GLOBEX_RULE not in text
    assert world.globex_digest not in text
    assert world.globex_dataset not in text
    assert ACME_RULE in text
    ids = {e["originatorId"] for e in body["entries"]}
    assert {world.acme_dataset, *world.acme_exports} <= ids
    topics = [e["topic"] for e in body["entries"]]
    published = [
        e["state"] for e in body["entries"] if e["topic"].endswith(".Published")
    ]
    gates = [p["digest"] for p in published if p["name"] == "export"]
    assert len(gates) == 2  # the built-in gate acme first bound, and its own
    assert world.acme_digest in gates
    assert "domain.keys:SigningKeyRing.KeyAdded" in topics
    assert all(e["state"].get("tenant", "acme") == "acme" for e in body["entries"])
    assert body["tenant"] == "acme"
    assert_proven(body)
    everything = client.get("/v1/log?limit=1000", headers=OPERATOR).json()
    assert body["head"] == everything["head"]  # the global head, as in CT
    assert len(body["entries"]) < len(everything["entries"])
    assert int(page.headers["x-ig-position"]) >= body["head"]["position"]


def test_the_operator_reads_the_whole_log_exactly_as_before(
    client: TestClient[Any], world: World
) -> None:
    """audit.platform: every tenant's events, no slice fields, no proofs
    (``next`` is the paging convention's name for ``nextAfter``)."""
    body = client.get("/v1/log?limit=1000", headers=OPERATOR).json()
    assert set(body) == {"entries", "head", "nextAfter", "next"}
    assert body["next"] is None
    assert body["nextAfter"] is None
    assert [e["position"] for e in body["entries"]] == list(
        range(1, body["head"]["position"] + 1)
    )
    assert len(body["entries"]) == body["head"]["events"]
    text = json.dumps(body)
    assert GLOBEX_SECRET in text
    assert GLOBEX_RULE in text
    assert all("inclusion" not in e for e in body["entries"])
    assert world.globex_dataset in {e["originatorId"] for e in body["entries"]}


def test_slice_pages_chain_by_after_and_a_pinned_size_proves_them_alike(
    client: TestClient[Any], world: World
) -> None:
    """Pages of 3 give the one-page slice; ``size`` pins their checkpoint."""
    del world
    one = client.get("/v1/log?limit=1000", headers=ACME).json()
    size = one["checkpoint"]["size"]
    seen, after = [], 0
    while True:
        page = client.get(f"/v1/log?after={after}&limit=3&size={size}", headers=ACME)
        assert page.status_code == 200, page.text
        assert page.json()["checkpoint"] == one["checkpoint"]
        assert_proven(page.json(), keys_in(one["entries"]))
        seen += page.json()["entries"]
        if page.json()["nextAfter"] is None:
            break
        after = page.json()["nextAfter"]
    assert seen == one["entries"]
    missing = client.get("/v1/log?size=999999", headers=ACME)
    assert missing.status_code == 404
    assert "no signed checkpoint of size 999999" in missing.json()["detail"]


def test_the_slice_honours_x_ig_min_position(
    client: TestClient[Any], world: World
) -> None:
    """A position the log has not reached is a 503 with Retry-After; garbage 400."""
    del world
    ahead = client.get("/v1/log", headers={**ACME, "x-ig-min-position": "999999"})
    assert ahead.status_code == 503
    assert ahead.headers["retry-after"] == "1"
    assert ahead.json()["type"].endswith("/projection-lagging")
    bad = client.get("/v1/log", headers={**ACME, "x-ig-min-position": "soon"})
    assert bad.status_code == 400


def test_inclusion_proofs_are_served_only_for_the_callers_slice(
    client: TestClient[Any], world: World
) -> None:
    """Another tenant's position is a 404 like an absent one; the operator sees all."""
    everything = client.get("/v1/log?limit=1000", headers=OPERATOR).json()
    size = everything["head"]["events"]
    by_id = {e["originatorId"]: e["position"] for e in everything["entries"]}
    theirs, ours = by_id[world.globex_dataset], by_id[world.acme_dataset]
    hidden = client.get(
        f"/v1/ledger/inclusion?position={theirs}&size={size}", headers=ACME
    )
    absent = client.get(
        f"/v1/ledger/inclusion?position={size + 50}&size={size}", headers=ACME
    )
    assert hidden.status_code == absent.status_code == 404
    assert hidden.json()["detail"] == f"no event at position {theirs}"
    assert absent.json()["detail"] == f"no event at position {size + 50}"
    own = client.get(f"/v1/ledger/inclusion?position={ours}&size={size}", headers=ACME)
    assert own.status_code == 200, own.text
    operator = client.get(
        f"/v1/ledger/inclusion?position={theirs}&size={size}", headers=OPERATOR
    )
    assert operator.status_code == 200, operator.text
    assert operator.json()["position"] == theirs


def test_the_tenancy_view_equals_a_rebuild_from_the_log(
    client: TestClient[Any], world: World
) -> None:
    """Reset and catch up: the same slices for each tenant and the public part."""
    del world
    services = client.app.state.conductor
    runner = services.core.runners["tenancy"]
    head = services.core.ledger.head().position
    assert runner.wait(head, 5)

    def slices() -> dict[str, list[int]]:
        return {
            who: services.core.tenancy.slice(who, after=0, until=head, limit=10_000)
            for who in ("acme", "globex", PUBLIC, "nobody")
        }

    before = slices()
    assert all(before[who] for who in ("acme", "globex", PUBLIC))
    assert before["nobody"] == before[PUBLIC]
    assert set(before["acme"]) & set(before["globex"]) == set(before[PUBLIC])
    runner.stop()
    try:
        services.core.tenancy.reset()
        assert services.core.tenancy.slice("acme", after=0, until=head, limit=10) == []
        runner.catch_up()
        assert slices() == before
    finally:
        runner.start()


# -- the slice file ------------------------------------------------------------------


def export_tenant(settings: Settings, tenant: str, out: Path) -> None:
    done = cli(
        settings.resolved_database_url,
        settings.var_path,
        "audit",
        "export-log",
        "--out",
        str(out),
        "--tenant",
        tenant,
    )
    assert done.returncode == 0, done.stderr
    assert f"events of tenant {tenant} to {out}" in done.stdout


def replay(settings: Settings, log: Path) -> subprocess.CompletedProcess[str]:
    return cli(
        settings.resolved_database_url,
        settings.var_path,
        "audit",
        "replay",
        "--log",
        str(log),
        "--all",
    )


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_export_log_tenant_writes_a_slice_that_replays_and_verifies(
    client: TestClient[Any], settings: Settings, world: World, tmp_path: Path
) -> None:
    """The slice replays every acme decision; `verify` takes its keys."""
    out = tmp_path / "acme.jsonl"
    export_tenant(settings, "acme", out)
    lines = lines_of(out)
    assert lines[0]["slice"] == {"tenant": "acme"}
    assert GLOBEX_SECRET not in out.read_text()
    assert all("inclusion" in line for line in lines[1:])
    replayed = replay(settings, out)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "slice ok:" in replayed.stdout
    assert replayed.stdout.count(": matches") == len(world.acme_exports)
    bundle = settings.var_path / "exports" / world.acme_exports[1]
    verified = cli(
        settings.resolved_database_url,
        settings.var_path,
        "verify",
        str(bundle),
        "--keys",
        str(out),
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert client.get("/v1/log", headers=ACME).status_code == 200


def test_a_tampered_slice_is_named(
    client: TestClient[Any], settings: Settings, world: World, tmp_path: Path
) -> None:
    """An edited state, an altered proof, another tenant's record, a dropped
    event: each is named by position; a clean slice passes."""
    del client, world
    acme, globex = tmp_path / "acme.jsonl", tmp_path / "globex.jsonl"
    export_tenant(settings, "acme", acme)
    export_tenant(settings, "globex", globex)
    clean = lines_of(acme)
    _, verdict = read_checked(acme.read_text().splitlines())
    assert verdict.failure is None, verdict
    assert verdict.checked == len(clean) - 1
    foreign = next(
        line
        for line in lines_of(globex)
        if line.get("state", {}).get("name") == GLOBEX_SECRET
    )
    assert lines_of(globex)[0]["checkpoint"] == clean[0]["checkpoint"]
    registered = next(
        i for i, x in enumerate(clean) if x.get("topic", "").endswith("Registered")
    )
    cases = {
        "content does not match its hash": _edited(clean, registered),
        "not included in the signed checkpoint": _reproved(clean, registered),
        "belongs to tenant globex, not to acme's slice": _inserted(clean, foreign),
        "an event of it is missing": _dropped(clean),
    }
    for expected, lines in cases.items():
        path = write_lines(tmp_path / "tampered.jsonl", lines)
        _, verdict = read_checked(path.read_text().splitlines())
        assert verdict.failure is not None, expected
        assert expected in verdict.failure, verdict.failure
        assert verdict.failure.startswith("position "), verdict.failure
    replayed = replay(
        settings, write_lines(tmp_path / "t.jsonl", cases[next(iter(cases))])
    )
    assert replayed.returncode == 1
    assert "slice broken: position" in replayed.stdout


def _edited(lines: list[dict[str, Any]], at: int) -> list[dict[str, Any]]:
    changed: list[dict[str, Any]] = json.loads(json.dumps(lines))
    changed[at]["state"]["description"] = "edited after the fact"
    return changed


def _reproved(lines: list[dict[str, Any]], at: int) -> list[dict[str, Any]]:
    changed: list[dict[str, Any]] = json.loads(json.dumps(lines))
    proof = changed[at]["inclusion"]["proof"]
    proof[0] = "00" * 32
    return changed


def _inserted(
    lines: list[dict[str, Any]], foreign: dict[str, Any]
) -> list[dict[str, Any]]:
    records = sorted([*lines[1:], foreign], key=lambda x: x["position"])
    return [lines[0], *records]


def _dropped(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first of an aggregate's two events taken out (an export's Requested)."""
    decided = next(
        i for i, x in enumerate(lines) if x.get("topic", "").endswith("Decided")
    )
    requested = next(
        i
        for i, x in enumerate(lines)
        if x.get("originatorId") == lines[decided]["originatorId"] and i < decided
    )
    return [x for i, x in enumerate(lines) if i != requested]


def test_export_log_url_fetches_the_callers_slice_through_the_api(
    client: TestClient[Any], settings: Settings, world: World, tmp_path: Path
) -> None:
    """A tenant's token gets its slice (it replays); an operator's the whole log."""
    del client
    log = (tmp_path / "server.log").open("w")
    server = Server(settings.resolved_database_url, settings.var_path, log)
    try:
        tenant = _fetch(settings, server, tmp_path / "url.jsonl", ["audit.read"])
        assert lines_of(tenant)[0]["slice"] == {"tenant": "acme"}
        assert GLOBEX_SECRET not in tenant.read_text()
        replayed = replay(settings, tenant)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert replayed.stdout.count(": matches") == len(world.acme_exports)
        full = _fetch(settings, server, tmp_path / "all.jsonl", ["audit.platform"])
        assert lines_of(full)[0] == {"format": "conductor-log/v1"}
        assert GLOBEX_SECRET in full.read_text()
        assert "chain ok:" in replay(settings, full).stdout
    finally:
        server.stop()
        log.close()


def _fetch(settings: Settings, server: Server, out: Path, scopes: list[str]) -> Path:
    token = issue_token(
        SECRET,
        tenant="acme",
        scopes=scopes,
        ttl=timedelta(minutes=10),
        operator="audit.platform" in scopes,
    )
    done = subprocess.run(
        [*CLI, "audit", "export-log", "--out", str(out), "--url", server.base],
        env={
            **cli_env(settings.resolved_database_url, settings.var_path),
            "CONDUCTOR_TOKEN": token,
        },
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out
