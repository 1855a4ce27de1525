"""`conductor evidence build` and `conductor verify DIR`: built, verified, tampered."""

from __future__ import annotations

import base64
import json
import shutil
from typing import TYPE_CHECKING, Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from api.tools.autopilot_sim import SCENARIOS, simulate
from tests.conftest import SECRET, bearer
from tests.integration.server import cli
from tests.integration.test_er_cli import write_tiny
from tests.integration.test_exports import customers_csv, proven

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One log with an autopilot burst scenario (shaping, with its events), a
    proven export, an ER evaluation and a recorded gate run; its bundle."""
    var = tmp_path_factory.mktemp("evidence")
    simulate(SCENARIOS["burst"], var)  # writes var/burst.db through the real parts
    url = f"sqlite:///{var / 'burst.db'}"
    (var / "data").mkdir()
    settings = Settings(
        var=str(var),
        database_url=url,
        jwt_secret=SECRET,
        projection_poll_s=0.05,
        checkpoint_interval_s=3600.0,
        checkpoint_every_events=10**9,
        meter_flush_s=3600.0,
        autopilot_interval_s=3600.0,
    )
    with TestClient(create_app(settings)) as client:
        _, export_id, _ = proven(client, settings)
        run = client.post(
            "/v1/catalog/gate-runs",
            json={"repo": "acme/shop", "commit": "c0ffee", "findings": 1,
                  "findingsDigest": "sha256:" + "ab" * 32,
                  "datasets": ["customers", "ghost"], "failing": ["ghost"]},
            headers=bearer("acme", "catalog.write"),
        )  # fmt: skip
        assert run.status_code == 201, run.text
    records, links = write_tiny(var / "set")
    evaluated = cli(
        url, var, "er", "eval", "--records", str(records), "--links", str(links),
        "--blocking", "exact:postcode", "--k", "5",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    out = var / "bundle"
    done = cli(url, var, "evidence", "build", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return {"url": url, "var": var, "out": out, "export": export_id,
            "gate": run.json()["id"]}  # fmt: skip


def verify(built: dict[str, Any], *args: str) -> tuple[int, list[str]]:
    done = cli(built["url"], built["var"], "verify", *args)
    return done.returncode, done.stdout.splitlines()


def copy(built: dict[str, Any], tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(built["out"], target)
    return target


def envelope_of(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "manifest.dsse.json").read_text())  # type: ignore[no-any-return]


def manifest_of(bundle: Path) -> dict[str, Any]:
    return json.loads(base64.b64decode(envelope_of(bundle)["payload"]))  # type: ignore[no-any-return]


def test_the_bundle_cites_every_kind_of_evidence_and_verifies(
    built: dict[str, Any],
) -> None:
    out = built["out"]
    code, lines = verify(built, str(out))
    assert code == 0, lines
    assert lines[-1].startswith(f"ok: {out} verifies")
    manifest = manifest_of(out)
    kinds = {e["kind"] for e in manifest["events"]}
    assert {"shaping-engaged", "export-decision", "export-proof", "er-evaluation",
            "gate-run"} <= kinds  # fmt: skip
    files = {f["path"] for f in manifest["files"]}
    assert f"exports/proofs/{built['export']}.dsse.json" in files
    assert {"index.html", "catalog/coverage.json", "er/events.json",
            "autopilot/events.json", "exports/verifier.json"} <= files  # fmt: skip
    verdicts = json.loads((out / "exports" / "verifier.json").read_text())
    assert verdicts == [{"exportId": built["export"], "ok": True, "failures": []}]
    gate = json.loads((out / "catalog" / "events.json").read_text())
    assert [g["originatorId"] for g in gate] == [built["gate"]]
    # Coverage counts the gate run's datasets: customers (its file, exported,
    # named) and the unregistered ghost.
    (acme,) = json.loads((out / "catalog" / "coverage.json").read_text())
    assert (acme["tenant"], acme["activeDatasets"], acme["coverage"]) == (
        "acme", 2, 0.5,
    )  # fmt: skip
    assert acme["sources"]["gate"] == {"active": 2, "registered": 1}
    assert acme["sources"]["exports"] == {"active": 1, "registered": 1}
    (repo,) = acme["gateRepositories"]
    assert (repo["runId"], repo["datasets"], repo["failing"]) == (built["gate"], 2, 1)
    assert repo["repoSha256"] == gate[0]["figures"]["repoSha256"]
    assert repo["position"] == gate[0]["position"]
    index = (out / "index.html").read_text()
    assert "http://" not in index
    assert "https://" not in index
    assert "Autopilot actions" in index
    assert "<a href='exports/verifier.json'>" in index
    assert "<th>gate-named datasets registered acme</th><td>1 of 2</td>" in index


def test_the_bundle_holds_ids_and_hashes_never_record_values(
    built: dict[str, Any],
) -> None:
    """Not one exported value, repository name or dataset name is in any file."""
    text = "".join(
        p.read_text(errors="replace") for p in built["out"].rglob("*") if p.is_file()
    )
    for line in customers_csv().splitlines()[1:]:
        for value in line.split(","):
            if value.strip('"') and not value.replace(".", "").isdigit():
                assert value.strip('"') not in text, value
    assert "acme/shop" not in text
    assert "ghost" not in text


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("edit", "file er/events.json: edited (sha256 does not match the manifest)"),
        ("add", "file extra.txt: added (not in the signed manifest)"),
        ("remove", "file catalog/coverage.json: removed (listed in the signed "
         "manifest)"),
        ("swap-proof", "inclusion proof fails against the signed checkpoint"),
        ("edit-manifest", "manifest: signature 0 by key "),
        ("other-log", "checkpoint: signature 0: unknown key id "),
    ],
)  # fmt: skip
def test_each_tamper_is_refused_and_named(
    built: dict[str, Any], tmp_path: Path, tamper: str, expected: str
) -> None:
    bundle = copy(built, tmp_path)
    if tamper == "edit":
        path = bundle / "er" / "events.json"
        path.write_text(path.read_text().replace("er-evaluation", "er-evaluatioN"))
    elif tamper == "add":
        (bundle / "extra.txt").write_text("not part of the release")
    elif tamper == "remove":
        (bundle / "catalog" / "coverage.json").unlink()
    else:
        envelope = envelope_of(bundle)
        manifest = manifest_of(bundle)
        if tamper == "swap-proof":
            events = manifest["events"]
            assert len(events) >= 2
            events[0]["inclusion"], events[1]["inclusion"] = (
                events[1]["inclusion"], events[0]["inclusion"],
            )  # fmt: skip
            # Re-signed with the same key: only the proofs can catch it.
            envelope = _resign(built, manifest)
        elif tamper == "edit-manifest":
            manifest["events"] = manifest["events"][1:]
            envelope["payload"] = base64.b64encode(
                json.dumps(manifest).encode()
            ).decode()
        elif tamper == "other-log":
            envelope = _resign(built, {**manifest, "checkpoint": _other_checkpoint(
                tmp_path)})  # fmt: skip
        (bundle / "manifest.dsse.json").write_text(json.dumps(envelope))
    code, lines = verify(built, str(bundle))
    assert code == 1
    assert any(expected in line for line in lines), lines
    assert not any(line.startswith("ok:") for line in lines)


def _resign(built: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest signed again by this machine's key (an insider's forgery)."""
    from adapters.audit.evidence_bundle import MANIFEST_TYPE  # noqa: PLC0415
    from adapters.signing.keystore import KeyStore  # noqa: PLC0415

    payload = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return KeyStore(built["var"] / "keys").sign(MANIFEST_TYPE, payload)


def _other_checkpoint(tmp_path: Path) -> dict[str, Any]:
    """A checkpoint signed by another Conductor, over another log."""
    var = tmp_path / "other"
    url = f"sqlite:///{var / 'conductor.db'}"
    (var / "data").mkdir(parents=True)
    assert cli(url, var, "init").returncode == 0
    with TestClient(create_app(Settings(var=str(var), database_url=url,
                                        jwt_secret=SECRET))) as client:  # fmt: skip
        client.post(
            "/v1/catalog/gate-runs",
            json={"repo": "x", "commit": "y", "findings": 0,
                  "findingsDigest": "sha256:" + "00" * 32, "datasets": []},
            headers=bearer("acme", "catalog.write"),
        )  # fmt: skip
    out = var / "bundle"
    assert cli(url, var, "evidence", "build", "--out", str(out)).returncode == 0
    return manifest_of(out)["checkpoint"]  # type: ignore[no-any-return]


def test_previous_bundle_consistency(built: dict[str, Any], tmp_path: Path) -> None:
    """A later bundle built with --previous proves the log only grew; without
    the proof, or against another log's bundle, verify says so."""
    url, var = built["url"], built["var"]
    with TestClient(create_app(Settings(var=str(var), database_url=url,
                                        jwt_secret=SECRET))) as client:  # fmt: skip
        client.post(
            "/v1/catalog/gate-runs",
            json={"repo": "acme/shop", "commit": "beef", "findings": 0,
                  "findingsDigest": "sha256:" + "cd" * 32, "datasets": ["customers"]},
            headers=bearer("acme", "catalog.write"),
        )  # fmt: skip
    later = tmp_path / "later"
    done = cli(url, var, "evidence", "build", "--out", str(later), "--previous",
               str(built["out"]))  # fmt: skip
    assert done.returncode == 0, done.stderr
    code, lines = verify(built, str(later), "--previous", str(built["out"]))
    assert code == 0, lines
    assert "consistent with" in lines[-1]
    alone = tmp_path / "alone"
    assert cli(url, var, "evidence", "build", "--out", str(alone)).returncode == 0
    code, lines = verify(built, str(alone), "--previous", str(built["out"]))
    assert code == 1
    assert any("no proof from the previous bundle's checkpoint" in x for x in lines)
