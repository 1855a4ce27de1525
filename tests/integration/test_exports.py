"""Governed exports end to end: real HTTP, real Rego, real DLP, real ECDSA.

Every export is requested through the app, runs in its background worker,
and is then checked the way an auditor would: `verify_bundle` (and the
`conductor verify` / `audit` commands as real processes) with nothing but
the bundle directory, the public keys and the exported log.
"""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from litestar.testing import TestClient

from adapters.audit.auditor import Replayer, check_chain, read_log
from adapters.audit.proof_check import verify_bundle
from adapters.exports.rego import RegoEngine
from adapters.ledger.merkle import proof_from_hex, verify_consistency, verify_inclusion
from api.app import create_app
from domain.exports.export import PROOF_FILE
from tests.conftest import bearer, dataset_body
from tests.integration.server import cli
from tests.integration.test_tamper import execute

if TYPE_CHECKING:
    from pathlib import Path

    from api.settings import Settings

pytestmark = pytest.mark.integration

ROWS = [
    ("alice@example.com", "Alice Liddell", "+44 20 7946 0958", "1990-04-01", "12"),
    ("bob@example.org", "Bob Stone", "+1 415 555 0100", "1985-12-31", "7"),
    ("carol@example.net", "Carol King", "+33 1 23 45 67 89", "2001-06-15", "30"),
]
COLUMNS = [
    {"name": "email", "classification": "pii.email"},
    {"name": "name", "classification": "pii.name"},
    {"name": "phone", "classification": "pii.phone"},
    {"name": "dob", "classification": "pii.dob"},
    {"name": "amount", "classification": "public"},
]
ALLOWED = {"preset": "tokenize_strict", "purpose": "investigation"}


def write_source(
    settings: Settings, name: str, text: str, tenant: str = "acme"
) -> None:
    root = settings.data_root_path / tenant
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text, encoding="utf-8")


def customers_csv() -> str:
    lines = ["email,name,phone,dob,amount"]
    lines += [",".join(f'"{v}"' if " " in v else v for v in row) for row in ROWS]
    return "\n".join(lines) + "\n"


def register(
    client: TestClient[Any], settings: Settings, name: str = "customers", **over: Any
) -> str:
    """A dataset whose location holds the customers CSV; returns its id."""
    write_source(settings, f"{name}.csv", customers_csv())
    body = dataset_body(name, location=f"{name}.csv", columns=COLUMNS, **over)
    response = client.post("/v1/datasets", json=body, headers=bearer())
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def request(client: TestClient[Any], dataset_id: str, **over: Any) -> Any:
    body = {"datasetId": dataset_id, **ALLOWED, "destinationRegion": "EU", **over}
    return client.post("/v1/exports", json=body, headers=bearer())


def settle(client: TestClient[Any], export_id: str, timeout: float = 30.0) -> Any:
    """The export once it stops moving (proven, failed or denied)."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/exports/{export_id}", headers=bearer()).json()
        if body["status"] in {"proven", "failed", "denied"}:
            return body
        assert time.monotonic() < deadline, f"export stuck at {body['status']}"
        time.sleep(0.05)


def keys_of(client: TestClient[Any]) -> dict[str, str]:
    return {
        k["keyid"]: k["publicKeyPem"] for k in client.get("/v1/keys").json()["keys"]
    }


def bundle(settings: Settings, export_id: str) -> Path:
    return settings.var_path / "exports" / export_id


def manifest_of(directory: Path) -> dict[str, Any]:
    envelope = json.loads((directory / PROOF_FILE).read_bytes())
    return json.loads(base64.b64decode(envelope["payload"]))  # type: ignore[no-any-return]


def rewrite_manifest(directory: Path, change: Any) -> None:
    """Edit the manifest inside the envelope, keeping the old signature."""
    path = directory / PROOF_FILE
    envelope = json.loads(path.read_bytes())
    manifest = json.loads(base64.b64decode(envelope["payload"]))
    change(manifest)
    envelope["payload"] = base64.b64encode(json.dumps(manifest).encode()).decode()
    path.write_text(json.dumps(envelope))


def proven(client: TestClient[Any], settings: Settings) -> tuple[str, str, Path]:
    """(dataset id, export id, bundle directory) of one proven export."""
    dataset_id = register(client, settings)
    response = request(client, dataset_id)
    assert response.status_code == 201, response.text
    export_id = response.json()["id"]
    final = settle(client, export_id)
    assert final["status"] == "proven", final
    return dataset_id, export_id, bundle(settings, export_id)


# -- allow, deliver, prove ---------------------------------------------------------


def test_an_allowed_export_is_transformed_proven_and_verifies_offline(
    client: TestClient[Any], settings: Settings
) -> None:
    """201 with the decision; the file holds tokens, not identifiers; the
    bundle checks."""
    dataset_id = register(client, settings)
    response = request(client, dataset_id)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/exports/{body['id']}"
    assert body["decision"]["allow"] is True
    assert body["decision"]["reasons"] == []
    assert len(body["decision"]["inputDigest"]) == 64
    decided_at = client.get(
        f"/v1/log?after={body['position'] - 1}&limit=1",
        headers=bearer("acme", "audit.read"),
    ).json()["entries"][0]
    assert decided_at["topic"].endswith("Export.Decided")

    final = settle(client, body["id"])
    assert final["status"] == "proven"
    assert final["delivery"]["rows"] == len(ROWS)
    assert final["proof"] == f"/v1/exports/{body['id']}/proof"
    directory = bundle(settings, body["id"])
    exported = (directory / "customers.csv").read_text()
    for email, name, phone, dob, amount in ROWS:
        assert email not in exported
        assert name not in exported
        assert phone not in exported
        assert dob not in exported
        assert dob[:4] in exported  # generalised to the year
        assert amount in exported
    assert verify_bundle(directory, keys_of(client)) == []

    manifest = manifest_of(directory)
    assert manifest["exportId"] == body["id"]
    assert manifest["tenant"] == "acme"
    assert manifest["dlpPreset"] == "tokenize_strict"
    assert manifest["dataset"] == f"{dataset_id}@1"
    assert manifest["decision"]["inputDigest"] == body["decision"]["inputDigest"]
    assert [e["role"] for e in manifest["authorizingEvents"]] == [
        "dataset",
        "platform-policy",
        "policy",
        "request",
        "decision",
    ]
    served = client.get(f"/v1/exports/{body['id']}/proof", headers=bearer())
    assert served.status_code == 200
    assert served.content == (directory / PROOF_FILE).read_bytes()


def test_tokens_are_deterministic_per_purpose_and_differ_across_purposes(
    client: TestClient[Any], settings: Settings
) -> None:
    """Two exports for one purpose join on tokens; another purpose cannot."""
    dataset_id = register(
        client, settings, purposes=["investigation", "fraud"], tags=["x"]
    )
    files = []
    for purpose in ("investigation", "investigation", "fraud"):
        export_id = request(client, dataset_id, purpose=purpose).json()["id"]
        assert settle(client, export_id)["status"] == "proven"
        files.append((bundle(settings, export_id) / "customers.csv").read_text())
    assert files[0] == files[1]
    first = {line.split(",")[0] for line in files[0].splitlines()[1:]}
    other = {line.split(",")[0] for line in files[2].splitlines()[1:]}
    assert len(first) == len(ROWS)
    assert first.isdisjoint(other)


# -- deny reasons ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset_over", "request_over", "reason"),
    [
        ({"license": "Embargoed"}, {}, "license_embargoed"),
        ({}, {"purpose": "marketing"}, "purpose_not_permitted"),
        ({}, {"preset": "none"}, "dlp_preset_none"),
        ({"region": "EU"}, {"destinationRegion": "US"}, "residency_violation"),
        ({"contractStatus": "suspended"}, {}, "contract_not_active"),
    ],
)
def test_each_deny_reason_is_a_403_and_the_decision_is_recorded(
    client: TestClient[Any],
    settings: Settings,
    dataset_over: dict[str, Any],
    request_over: dict[str, Any],
    reason: str,
) -> None:
    """The problem names the reason; the denied export is in the log all the same."""
    dataset_id = register(client, settings, **dataset_over)
    before = client.get("/v1/log", headers=bearer("acme", "audit.read")).json()

    response = request(client, dataset_id, **request_over)

    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("/export-denied")
    assert problem["reasons"] == [reason]
    assert reason in problem["detail"]
    recorded = client.get(f"/v1/exports/{problem['exportId']}", headers=bearer())
    assert recorded.status_code == 200
    assert recorded.json()["status"] == "denied"
    assert recorded.json()["decision"]["reasons"] == [reason]
    after = client.get("/v1/log", headers=bearer("acme", "audit.read")).json()
    assert after["head"]["events"] > before["head"]["events"]
    assert not bundle(settings, problem["exportId"]).exists()
    early = client.get(f"/v1/exports/{problem['exportId']}/proof", headers=bearer())
    assert early.status_code == 409
    assert early.json()["type"].endswith("/no-proof")


def test_a_retired_dataset_cannot_be_exported(
    client: TestClient[Any], settings: Settings
) -> None:
    dataset_id = register(client, settings)
    assert (
        client.delete(f"/v1/datasets/{dataset_id}", headers=bearer()).status_code == 200
    )
    response = request(client, dataset_id)
    assert response.status_code == 403, response.text
    assert response.json()["reasons"] == ["dataset_retired"]


def test_a_published_policy_decides_from_then_on_and_is_served_by_digest(
    client: TestClient[Any], settings: Settings
) -> None:
    """A tenant's own Rego (here: nothing leaves on Fridays... or ever)
    replaces the gate."""
    dataset_id = register(client, settings)
    module = (
        "package conductor.export\nimport rego.v1\n"
        'deny contains "frozen" if true\n'
        "default allow := false\nallow if count(deny) == 0\n"
        'decision := {"allow": allow, "deny": sort(deny)}\n'
    )
    published = client.post(
        "/v1/policies",
        json={"name": "export", "modules": [{"name": "frozen.rego", "source": module}]},
        headers=bearer("acme", "export.approve"),
    )
    assert published.status_code == 201, published.text
    digest = published.json()["digest"]

    denied = request(client, dataset_id)
    assert denied.status_code == 403
    assert denied.json()["reasons"] == ["frozen"]
    assert denied.json()["policyDigest"] == digest
    served = client.get(f"/v1/policies/{digest}", headers=bearer())
    assert served.status_code == 200
    assert served.json()["modules"] == [{"name": "frozen.rego", "source": module}]
    other = request(client, dataset_id, purpose="marketing")
    assert other.json()["policyDigest"] == digest  # the other tenant is untouched
    foreign = client.post(
        "/v1/exports",
        json={"datasetId": dataset_id, **ALLOWED, "destinationRegion": "EU"},
        headers=bearer("globex"),
    )
    assert foreign.status_code == 404


def test_a_policy_published_by_another_process_decides_the_next_request_here(
    client: TestClient[Any], settings: Settings
) -> None:
    """The binding is cached per process, but never served stale: the next
    request after another API process publishes is judged by the new policy."""
    dataset_id = register(client, settings)
    assert request(client, dataset_id).status_code == 201  # default gate, cached
    module = (
        "package conductor.export\nimport rego.v1\n"
        'deny contains "frozen" if true\n'
        "default allow := false\nallow if count(deny) == 0\n"
        'decision := {"allow": allow, "deny": sort(deny)}\n'
    )
    with TestClient(create_app(settings)) as elsewhere:
        published = elsewhere.post(
            "/v1/policies",
            json={"name": "export", "modules": [{"name": "f.rego", "source": module}]},
            headers=bearer("acme", "export.approve"),
        )
        assert published.status_code == 201, published.text
    denied = request(client, dataset_id)
    assert denied.status_code == 403, denied.text
    assert denied.json()["reasons"] == ["frozen"]
    assert denied.json()["policyDigest"] == published.json()["digest"]


def test_a_policy_that_does_not_compile_is_a_422_naming_the_modules(
    client: TestClient[Any],
) -> None:
    before = client.get("/v1/log", headers=bearer("acme", "audit.read")).json()
    response = client.post(
        "/v1/policies",
        json={"name": "export", "modules": [{"name": "bad.rego", "source": "package"}]},
        headers=bearer("acme", "export.approve"),
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "modules"
    assert response.json()["errors"][0]["rule"] == "rego-compile"
    after = client.get("/v1/log", headers=bearer("acme", "audit.read")).json()
    assert after["head"] == before["head"]


def test_publishing_a_policy_needs_the_approve_scope(client: TestClient[Any]) -> None:
    response = client.post(
        "/v1/policies",
        json={"name": "export", "modules": [{"name": "p.rego", "source": "package x"}]},
        headers=bearer("acme", "export.request"),
    )
    assert response.status_code == 403


# -- refusals at the source and in the DLP -------------------------------------------


def test_a_location_outside_the_data_root_is_refused_with_422(
    client: TestClient[Any], settings: Settings, tmp_path: Path
) -> None:
    """A symlink out of the tenant's root is refused before anything is recorded."""
    outside = tmp_path / "outside.csv"
    outside.write_text(customers_csv())
    root = settings.data_root_path / "acme"
    root.mkdir(parents=True, exist_ok=True)
    (root / "leak.csv").symlink_to(outside)
    body = dataset_body("leak", location="leak.csv", columns=COLUMNS)
    dataset_id = client.post("/v1/datasets", json=body, headers=bearer()).json()["id"]
    before = client.get("/v1/log", headers=bearer("acme", "audit.read")).json()

    response = request(client, dataset_id)

    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["field"] == "datasetId"
    assert error["rule"] == "location-outside-data-root"
    after = client.get("/v1/log", headers=bearer("acme", "audit.read")).json()
    assert after["head"] == before["head"]


def test_an_unclassified_column_fails_a_strict_export_without_a_file(
    client: TestClient[Any], settings: Settings
) -> None:
    write_source(settings, "extra.csv", customers_csv().replace("amount", "notes"))
    columns = [c for c in COLUMNS if c["name"] != "amount"]
    body = dataset_body("extra", location="extra.csv", columns=columns)
    dataset_id = client.post("/v1/datasets", json=body, headers=bearer()).json()["id"]

    export_id = request(client, dataset_id).json()["id"]
    final = settle(client, export_id)

    assert final["status"] == "failed"
    assert "unclassified_columns" in final["failure"]
    assert "notes" in final["failureDetail"]
    assert not bundle(settings, export_id).exists()


def test_residual_pii_blocks_the_proof(
    client: TestClient[Any], settings: Settings
) -> None:
    """A 'public' column that holds e-mail addresses: found on re-scan, no proof."""
    write_source(settings, "leaky.csv", "amount,memo\n1,mail alice@example.com\n")
    columns = [
        {"name": "amount", "classification": "public"},
        {"name": "memo", "classification": "public"},
    ]
    body = dataset_body("leaky", location="leaky.csv", columns=columns)
    dataset_id = client.post("/v1/datasets", json=body, headers=bearer()).json()["id"]

    export_id = request(client, dataset_id).json()["id"]
    final = settle(client, export_id)

    assert final["status"] == "failed"
    assert "residual_pii" in final["failure"]
    assert not bundle(settings, export_id).exists()
    proof = client.get(f"/v1/exports/{export_id}/proof", headers=bearer())
    assert proof.status_code == 409
    metrics = client.get("/metrics").text
    assert 'export_proof_failures_total{reason="asked_too_early"}' in metrics


# -- change after the fact ------------------------------------------------------------


def test_embargoing_after_an_export_keeps_the_old_proof_and_its_decision(
    client: TestClient[Any], settings: Settings, tmp_path: Path
) -> None:
    """Amend to Embargoed: the old bundle verifies, replay rebuilds the old allow."""
    dataset_id, export_id, directory = proven(client, settings)
    amended = client.patch(
        f"/v1/datasets/{dataset_id}",
        json={"license": "Embargoed"},
        headers={**bearer(), "If-Match": '"1"'},
    )
    assert amended.status_code == 200, amended.text
    denied = request(client, dataset_id)
    assert denied.status_code == 403
    assert denied.json()["reasons"] == ["license_embargoed"]

    assert verify_bundle(directory, keys_of(client)) == []
    log = tmp_path / "log.jsonl"
    done = cli(
        settings.resolved_database_url,
        settings.var_path,
        "audit",
        "export-log",
        "--out",
        str(log),
    )
    assert done.returncode == 0, done.stderr
    records = list(read_log(log.read_text().splitlines()))
    assert check_chain(records)[1] is None
    replayer = Replayer(records, RegoEngine())
    old = replayer.replay(__import__("uuid").UUID(export_id))
    assert old.matches, old.mismatches
    assert old.allow is True
    assert old.input["dataset"]["license"] == "Restricted-TOS"
    assert old.dataset == f"{dataset_id}@1"
    new = replayer.replay(__import__("uuid").UUID(denied.json()["exportId"]))
    assert new.matches
    assert new.reasons == ("license_embargoed",)

    replayed = cli(
        settings.resolved_database_url,
        settings.var_path,
        "audit",
        "replay",
        "--log",
        str(log),
        "--all",
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert f"{export_id} dataset {dataset_id}@1" in replayed.stdout
    assert "0 mismatch(es)" in replayed.stdout


def test_key_rotation_signs_new_proofs_and_old_ones_still_verify(
    client: TestClient[Any], settings: Settings
) -> None:
    dataset_id, _, first = proven(client, settings)
    old_key = manifest_key(first)
    done = cli(settings.resolved_database_url, settings.var_path, "keys", "rotate")
    assert done.returncode == 0, done.stderr

    export_id = request(client, dataset_id).json()["id"]
    assert settle(client, export_id)["status"] == "proven"
    second = bundle(settings, export_id)
    assert manifest_key(second) != old_key
    keys = keys_of(client)
    assert set(keys) == {old_key, manifest_key(second)}
    assert verify_bundle(first, keys) == []
    assert verify_bundle(second, keys) == []


def manifest_key(directory: Path) -> str:
    envelope = json.loads((directory / PROOF_FILE).read_bytes())
    return str(envelope["signatures"][0]["keyid"])


# -- tampering, each caught with a precise message -------------------------------------


def test_an_edited_exported_file_is_named(
    client: TestClient[Any], settings: Settings
) -> None:
    _, _, directory = proven(client, settings)
    path = directory / "customers.csv"
    path.write_text(path.read_text().replace("1990", "1991"))
    assert verify_bundle(directory, keys_of(client)) == [
        "exported file customers.csv: sha256 does not match the manifest"
    ]


def test_a_swapped_signature_is_named(
    client: TestClient[Any], settings: Settings
) -> None:
    """The signature of another valid bundle does not sign this one."""
    dataset_id, _, first = proven(client, settings)
    export_id = request(client, dataset_id).json()["id"]
    settle(client, export_id)
    second = bundle(settings, export_id)
    one = json.loads((first / PROOF_FILE).read_bytes())
    two = json.loads((second / PROOF_FILE).read_bytes())
    one["signatures"] = two["signatures"]
    (first / PROOF_FILE).write_text(json.dumps(one))
    failures = verify_bundle(first, keys_of(client))
    assert len(failures) == 1
    assert failures[0].startswith("proof envelope:")
    assert "signature" in failures[0]


def test_a_replaced_key_is_named(client: TestClient[Any], settings: Settings) -> None:
    """The right key id with another public key behind it does not verify."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    _, _, directory = proven(client, settings)
    impostor = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode()
    )
    keys = dict.fromkeys(keys_of(client), impostor)
    failures = verify_bundle(directory, keys)
    assert failures
    assert all("key" in line for line in failures), failures


def test_an_edited_manifest_breaks_the_signature(
    client: TestClient[Any], settings: Settings
) -> None:
    _, _, directory = proven(client, settings)

    def widen(manifest: dict[str, Any]) -> None:
        manifest["purposes"].append("marketing")

    rewrite_manifest(directory, widen)
    failures = verify_bundle(directory, keys_of(client))
    assert len(failures) == 1, failures
    assert failures[0].startswith("proof envelope: signature 0 by key ")
    assert failures[0].endswith(": signature does not match the payload")


def test_a_forged_checkpoint_is_named(
    client: TestClient[Any], settings: Settings
) -> None:
    """A checkpoint whose root was changed no longer carries a valid signature."""
    _, _, directory = proven(client, settings)
    manifest = manifest_of(directory)
    checkpoint = manifest["checkpoint"]
    head = json.loads(base64.b64decode(checkpoint["payload"]))
    head["rootHash"] = "00" * 32
    checkpoint["payload"] = base64.b64encode(json.dumps(head).encode()).decode()
    failures = _verify_with_checkpoint(client, settings, directory, checkpoint)
    assert any(line.startswith("checkpoint: ") for line in failures), failures
    assert any("not included in the signed checkpoint" in f for f in failures)


def test_a_truncated_checkpoint_is_named(
    client: TestClient[Any], settings: Settings
) -> None:
    """A genuine older checkpoint, too small to hold the events, fails inclusion."""
    _, _, directory = proven(client, settings)
    services = client.app.state.conductor
    small = services.core.checkpoints.at(1) or _sign_at_one(services)
    failures = _verify_with_checkpoint(client, settings, directory, small.envelope)
    assert failures
    assert all("proved against a tree of" in line for line in failures), failures


def _sign_at_one(services: Any) -> Any:
    """A properly signed checkpoint of the first event alone."""
    from adapters.ledger.checkpoints import CHECKPOINT_TYPE, Checkpoint  # noqa: PLC0415

    services.core.checkpoints.sync()
    root = services.core.checkpoints._tree.root(1).hex()  # the test's forgery kit
    payload = json.dumps(
        {"origin": "conductor", "size": 1, "rootHash": root, "lastPosition": 1},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return Checkpoint(1, root, 1, services.core.keys.sign(CHECKPOINT_TYPE, payload))


def _verify_with_checkpoint(
    client: TestClient[Any], settings: Settings, directory: Path, checkpoint: Any
) -> list[str]:
    """Re-sign the manifest with the service's key, around another checkpoint.

    The signer is honest here, so only the checkpoint can be what fails.
    """
    from domain.exports.export import PROOF_TYPE  # noqa: PLC0415

    manifest = manifest_of(directory)
    manifest["checkpoint"] = checkpoint
    envelope = client.app.state.conductor.core.keys.sign(
        PROOF_TYPE, json.dumps(manifest).encode()
    )
    (directory / PROOF_FILE).write_text(json.dumps(envelope))
    return verify_bundle(directory, keys_of(client))


def test_an_event_dropped_from_the_exported_log_is_named(
    client: TestClient[Any], settings: Settings, tmp_path: Path
) -> None:
    _dataset_id, export_id, _ = proven(client, settings)
    log = tmp_path / "log.jsonl"
    done = cli(
        settings.resolved_database_url,
        settings.var_path,
        "audit",
        "export-log",
        "--out",
        str(log),
    )
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    dropped = json.loads(lines[3])
    del lines[3]
    log.write_text("\n".join(lines) + "\n")

    replayed = cli(
        settings.resolved_database_url,
        settings.var_path,
        "audit",
        "replay",
        "--log",
        str(log),
        "--export",
        export_id,
    )

    assert replayed.returncode == 1
    assert replayed.stdout.startswith(
        f"chain broken: position {dropped['position'] + 1}: prev_hash does not match"
    ), replayed.stdout


def test_one_changed_byte_in_the_database_is_caught_by_replay(
    client: TestClient[Any], settings: Settings, tmp_path: Path
) -> None:
    """The dataset's state changed behind the log's back: replay names its position."""
    _dataset_id, _export_id, directory = proven(client, settings)
    position = manifest_of(directory)["authorizingEvents"][0]["position"]
    url = settings.resolved_database_url
    row = execute(
        url,
        "SELECT state FROM stored_events WHERE rowid=?",
        "SELECT state FROM stored_events WHERE notification_id=%s",
        position,
    )
    state = bytes(row[0])
    tampered = state.replace(b"Restricted-TOS", b"Restricted-TOs", 1)
    assert sum(a != b for a, b in zip(state, tampered, strict=True)) == 1
    execute(
        url,
        "UPDATE stored_events SET state=? WHERE rowid=?",
        "UPDATE stored_events SET state=%s WHERE notification_id=%s",
        tampered,
        position,
    )
    log = tmp_path / "log.jsonl"
    assert (
        cli(url, settings.var_path, "audit", "export-log", "--out", str(log)).returncode
        == 0
    )

    replayed = cli(
        url, settings.var_path, "audit", "replay", "--log", str(log), "--all"
    )

    assert replayed.returncode == 1
    assert replayed.stdout.strip() == (
        f"chain broken: position {position}: content does not match its hash "
        f"({position - 1:,} events verified before it)"
    )


# -- the CLI, as an auditor runs it ----------------------------------------------------


def test_conductor_verify_exits_0_on_a_bundle_and_1_naming_each_failure(
    client: TestClient[Any], settings: Settings, tmp_path: Path
) -> None:
    """Keys taken from the exported log alone; no service, no database needed."""
    _, _export_id, directory = proven(client, settings)
    log = tmp_path / "log.jsonl"
    url = settings.resolved_database_url
    assert (
        cli(url, settings.var_path, "audit", "export-log", "--out", str(log)).returncode
        == 0
    )
    elsewhere = tmp_path / "auditor"
    elsewhere.mkdir()
    offline = "sqlite:///" + str(elsewhere / "none.db")

    good = cli(offline, elsewhere, "verify", str(directory), "--keys", str(log))
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith(f"ok: {directory} verifies")
    assert not (elsewhere / "none.db").exists()  # the auditor's run touched no database

    (directory / "customers.csv").write_text("email\n")
    rewrite_manifest(directory, lambda m: m.update(tenant="globex"))
    bad = cli(offline, elsewhere, "verify", str(directory), "--keys", str(log))
    assert bad.returncode == 1
    lines = bad.stdout.strip().splitlines()
    assert lines[0].startswith("proof envelope: signature 0 by key "), lines
    assert lines[0].endswith(": signature does not match the payload"), lines
    assert "exported file customers.csv: sha256 does not match the manifest" in lines
    assert any(
        line.startswith("exported file customers.csv: ") and "bytes" in line
        for line in lines
    )


def test_listing_filters_by_status_and_dataset_and_pages_with_a_cursor(
    client: TestClient[Any], settings: Settings
) -> None:
    dataset_id = register(client, settings)
    other = register(client, settings, "suppliers")
    ids = [request(client, dataset_id).json()["id"] for _ in range(3)]
    denied = request(client, other, purpose="marketing").json()["exportId"]
    for export_id in ids:
        settle(client, export_id)
    head = client.get("/v1/log", headers=bearer("acme", "audit.read")).json()["head"]
    headers = {**bearer(), "x-ig-min-position": str(head["position"])}

    proven_rows = client.get("/v1/exports?status=proven", headers=headers).json()
    assert {i["id"] for i in proven_rows["items"]} == set(ids)
    by_dataset = client.get(f"/v1/exports?datasetId={other}", headers=headers).json()
    assert [i["id"] for i in by_dataset["items"]] == [denied]
    seen: list[str] = []
    url = "/v1/exports?limit=2"
    while url:
        page = client.get(url, headers=headers).json()
        seen += [i["id"] for i in page["items"]]
        url = f"/v1/exports?limit=2&after={page['next']}" if page["next"] else ""
    assert sorted(seen) == sorted([*ids, denied])
    assert len(seen) == len(set(seen))
    bad = client.get("/v1/exports?after=nonsense", headers=headers)
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "after"


def test_each_listed_row_agrees_with_its_detail_field_by_field(
    client: TestClient[Any], settings: Settings
) -> None:
    """Proven, failed and denied exports: every field a listed row shows (the
    delivered file's name, a failure's detail and the latest log position
    among them) is what the export's own page shows."""
    dataset_id = register(client, settings)
    write_source(settings, "extra.csv", customers_csv().replace("amount", "notes"))
    columns = [c for c in COLUMNS if c["name"] != "amount"]
    body = dataset_body("extra", location="extra.csv", columns=columns)
    failing = client.post("/v1/datasets", json=body, headers=bearer()).json()["id"]
    proven_id = request(client, dataset_id).json()["id"]
    failed_id = request(client, failing).json()["id"]
    denied_id = request(client, dataset_id, purpose="marketing").json()["exportId"]
    for export_id in (proven_id, failed_id):
        settle(client, export_id)
    head = client.get("/v1/log", headers=bearer("acme", "audit.read")).json()["head"]
    headers = {**bearer(), "x-ig-min-position": str(head["position"])}

    items = client.get("/v1/exports", headers=headers).json()["items"]

    assert {i["id"] for i in items} == {proven_id, failed_id, denied_id}
    by_status = {i["status"]: i for i in items}
    assert set(by_status) == {"proven", "failed", "denied"}
    assert by_status["proven"]["delivery"]["file"]
    assert "notes" in by_status["failed"]["failureDetail"]
    for item in items:
        detail = client.get(f"/v1/exports/{item['id']}", headers=bearer()).json()
        assert detail["position"] is not None
        assert {k: detail.get(k) for k in item} == item, item["status"]
    positions = [i["position"] for i in items]
    assert len(set(positions)) == len(positions)  # each its own latest event


def test_ledger_endpoints_serve_proofs_that_check_against_signed_heads(
    client: TestClient[Any], settings: Settings
) -> None:
    """Inclusion and consistency proofs from the API verify with the Merkle module."""
    dataset_id, _, _ = proven(client, settings)
    headers = bearer("acme", "audit.read")
    first = client.get("/v1/ledger/checkpoints/latest", headers=headers).json()
    export_id = request(client, dataset_id).json()["id"]
    settle(client, export_id)
    second = client.get("/v1/ledger/checkpoints/latest", headers=headers).json()
    assert second["size"] > first["size"]

    inclusion = client.get(
        f"/v1/ledger/inclusion?position=2&size={second['size']}", headers=headers
    ).json()
    leaf = bytes.fromhex(_hash_at(client, 2))
    assert verify_inclusion(
        leaf,
        inclusion["leafIndex"],
        second["size"],
        proof_from_hex(inclusion["proof"]),
        bytes.fromhex(second["rootHash"]),
    ), inclusion
    consistency = client.get(
        f"/v1/ledger/consistency?from={first['size']}&to={second['size']}",
        headers=headers,
    ).json()
    assert verify_consistency(
        first["size"],
        second["size"],
        bytes.fromhex(first["rootHash"]),
        bytes.fromhex(second["rootHash"]),
        proof_from_hex(consistency["proof"]),
    )
    missing = client.get(
        f"/v1/ledger/inclusion?position=999999&size={second['size']}", headers=headers
    )
    assert missing.status_code == 404


def _hash_at(client: TestClient[Any], position: int) -> str:
    services = client.app.state.conductor
    entries = services.core.ledger.entries(after=position - 1, limit=1)
    return str(entries[0].hash)


def test_a_repeated_idempotency_key_replays_the_first_decision(
    client: TestClient[Any], settings: Settings
) -> None:
    dataset_id = register(client, settings)
    body = {"datasetId": dataset_id, **ALLOWED, "destinationRegion": "EU"}
    headers = {**bearer(), "Idempotency-Key": "export-1"}
    first = client.post("/v1/exports", json=body, headers=headers)
    again = client.post("/v1/exports", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    changed = client.post(
        "/v1/exports", json={**body, "purpose": "fraud"}, headers=headers
    )
    assert changed.status_code == 422


def test_conductor_verify_takes_many_bundles_and_names_the_bad_one(
    client: TestClient[Any], settings: Settings, tmp_path: Path
) -> None:
    dataset_id, _, first = proven(client, settings)
    export_id = request(client, dataset_id).json()["id"]
    assert settle(client, export_id)["status"] == "proven"
    second = bundle(settings, export_id)
    keys = tmp_path / "keys.json"
    keys.write_text(client.get("/v1/keys").text)
    offline = "sqlite:///" + str(tmp_path / "none.db")

    good = cli(
        offline, tmp_path, "verify", str(first), str(second), "--keys", str(keys)
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith("2 of 2 bundles verify (")

    (second / "customers.csv").write_text("tampered\n")
    bad = cli(offline, tmp_path, "verify", str(first), str(second), "--keys", str(keys))
    assert bad.returncode == 1
    lines = bad.stdout.strip().splitlines()
    assert lines[0] == (
        f"{second}: exported file customers.csv: sha256 does not match the manifest"
    )
    assert lines[-1].startswith("1 of 2 bundles verify (")
