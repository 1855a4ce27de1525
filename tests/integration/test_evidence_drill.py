"""The evidence bundle after a real DR drill: cited, proven, and tamper-evident.

One drill on a throwaway synchronous pair (its log in a SQLite file, as
`conductor dr drill` keeps it), then `conductor evidence build` and
`conductor verify`: the DR section cites the drill's DrillCompleted and
EvidenceSigned events with inclusion proofs under the signed checkpoint and
carries the signed drill evidence file; an edited drill file is refused, also
when an insider re-signs the manifest over it, and so is a bundle whose drill
evidence is missing or was edited at the source before the bundle was cut.
"""

from __future__ import annotations

import base64
import json
import shutil
from typing import TYPE_CHECKING, Any

import pytest

from adapters.audit.evidence_bundle import MANIFEST_TYPE
from adapters.ledger.merkle import proof_from_hex, verify_inclusion
from adapters.signing.dsse import payload_of
from adapters.signing.keystore import KeyStore
from api.settings import Settings
from api.tools.dr_drill import DrillOptions, run_drill
from tests.conftest import SECRET
from tests.integration.dr_support import pair_site
from tests.integration.server import cli

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from adapters.dr.site import Site

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SHORT = DrillOptions(write_rate=40, read_rate=80, baseline_s=1.0, window_s=1.0)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from pair_site(tmp_path_factory, "evidence-drill")


@pytest.fixture(scope="module")
def drilled(site: Site, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A drill whose evidence lands in VAR/dr-evidence; the bundle cut after it."""
    var = tmp_path_factory.mktemp("evidence-drill-var")
    (var / "data").mkdir()
    url = f"sqlite:///{var / 'conductor.db'}"
    settings = Settings(
        var=str(var),
        database_url=url,
        jwt_secret=SECRET,
        dr_root=str(site.pair.root),
        dr_region="B",
        checkpoint_interval_s=3600.0,
    )
    evidence = run_drill(site, settings, SHORT, out_dir=var / "dr-evidence")
    assert evidence["met"]["rto"], evidence
    out = var / "bundle"
    done = cli(url, var, "evidence", "build", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return {"url": url, "var": var, "out": out, "evidence": evidence}


def verify(drilled: dict[str, Any], bundle: Path) -> tuple[int, list[str]]:
    done = cli(drilled["url"], drilled["var"], "verify", str(bundle))
    return done.returncode, done.stdout.splitlines()


def manifest_of(bundle: Path) -> dict[str, Any]:
    envelope = json.loads((bundle / "manifest.dsse.json").read_text())
    return json.loads(base64.b64decode(envelope["payload"]))  # type: ignore[no-any-return]


def resign(drilled: dict[str, Any], bundle: Path, manifest: dict[str, Any]) -> None:
    """An insider's forgery: the manifest signed again by this machine's key."""
    payload = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    envelope = KeyStore(drilled["var"] / "keys").sign(MANIFEST_TYPE, payload)
    (bundle / "manifest.dsse.json").write_text(json.dumps(envelope))


def drill_file(drilled: dict[str, Any]) -> str:
    return f"dr/drills/dr-evidence-{drilled['evidence']['drill_id']}.json"


def test_the_dr_section_cites_the_drill_with_inclusion_proofs_and_verifies(
    drilled: dict[str, Any],
) -> None:
    out, evidence = drilled["out"], drilled["evidence"]
    code, lines = verify(drilled, out)
    assert code == 0, lines
    assert lines[-1].startswith(f"ok: {out} verifies")
    manifest = manifest_of(out)
    head = json.loads(payload_of(manifest["checkpoint"]))
    root = bytes.fromhex(head["rootHash"])
    cited = {
        e["kind"]: e for e in manifest["events"] if e["section"] == "dr"
    }  # one drill: one of each
    assert set(cited) == {"drill-completed", "drill-evidence-signed"}
    for event in cited.values():
        assert event["originatorId"] == evidence["drill_id"]
        inclusion = event["inclusion"]
        assert inclusion["treeSize"] == head["size"]
        assert verify_inclusion(
            bytes.fromhex(event["hash"]),
            inclusion["leafIndex"],
            head["size"],
            proof_from_hex(inclusion["proof"]),
            root,
        )
    listed = json.loads((out / "dr" / "events.json").read_text())
    section = {e["kind"]: e for e in listed}
    completed = section["drill-completed"]["figures"]
    assert completed["rto_ms"] == evidence["rto_ms"]
    assert completed["rpo_commands"] == evidence["rpo_commands"] == 0
    signed = section["drill-evidence-signed"]["figures"]
    name = drill_file(drilled)
    source = drilled["var"] / "dr-evidence" / name.rsplit("/", 1)[1]
    assert (out / name).read_bytes() == source.read_bytes()
    assert name in {f["path"] for f in manifest["files"]}
    assert signed["evidenceSha256"]
    verdicts = json.loads((out / "dr" / "verifier.json").read_text())
    assert verdicts == [{"file": name, "ok": True, "failures": []}]
    index = (out / "index.html").read_text()
    assert "<th>drills completed</th><td>1</td>" in index
    assert "<th>signed evidence files verified</th><td>1 of 1</td>" in index
    assert f"<th>worst RTO (ms)</th><td>{evidence['rto_ms']}</td>" in index


def _edit_rto(path: Path) -> None:
    document = json.loads(path.read_text())
    document["rto_ms"] = 1  # a better RTO than the drill measured
    path.write_text(json.dumps(document, indent=2))


def test_an_edited_drill_file_is_refused(
    drilled: dict[str, Any], tmp_path: Path
) -> None:
    """The manifest's digest and the drill's own signature both catch it."""
    bundle = tmp_path / "edited"
    shutil.copytree(drilled["out"], bundle)
    name = drill_file(drilled)
    _edit_rto(bundle / name)
    code, lines = verify(drilled, bundle)
    assert code == 1
    assert any(f"file {name}: edited (sha256 does not match" in x for x in lines)
    assert any(
        f"file {name}: evidence: the document differs from what was signed" in x
        for x in lines
    ), lines
    assert not any(x.startswith("ok:") for x in lines)


def test_a_resigned_manifest_over_an_edited_drill_file_is_still_refused(
    drilled: dict[str, Any], tmp_path: Path
) -> None:
    """An insider re-signs the manifest with the edited file's digest: the
    drill's signature and the log's EvidenceSigned digest still refuse it."""
    import hashlib  # noqa: PLC0415

    bundle = tmp_path / "forged"
    shutil.copytree(drilled["out"], bundle)
    name = drill_file(drilled)
    _edit_rto(bundle / name)
    manifest = manifest_of(bundle)
    data = (bundle / name).read_bytes()
    for item in manifest["files"]:
        if item["path"] == name:
            item.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    resign(drilled, bundle, manifest)
    code, lines = verify(drilled, bundle)
    assert code == 1
    assert not any("edited (sha256" in x for x in lines), lines  # the forgery holds
    assert any("the document differs from what was signed" in x for x in lines)
    assert any("no cited EvidenceSigned event names its digest" in x for x in lines)


def test_a_bundle_without_the_signed_drill_evidence_is_refused(
    drilled: dict[str, Any], tmp_path: Path
) -> None:
    """The file removed and the manifest re-signed without it: the cited
    EvidenceSigned event has no evidence in the bundle."""
    bundle = tmp_path / "dropped"
    shutil.copytree(drilled["out"], bundle)
    name = drill_file(drilled)
    (bundle / name).unlink()
    manifest = manifest_of(bundle)
    manifest["files"] = [f for f in manifest["files"] if f["path"] != name]
    resign(drilled, bundle, manifest)
    (position,) = (
        e["position"]
        for e in manifest["events"]
        if e["kind"] == "drill-evidence-signed"
    )
    code, lines = verify(drilled, bundle)
    assert code == 1
    assert any(
        f"dr: the drill evidence signed at position {position}" in x
        and "is not in the bundle" in x
        for x in lines
    ), lines


def test_drill_evidence_edited_before_the_bundle_is_cut_is_refused(
    drilled: dict[str, Any], tmp_path: Path
) -> None:
    """Edited in VAR/dr-evidence after signing: the builder leaves it out and
    says why in dr/verifier.json; verify refuses the bundle."""
    var = drilled["var"]
    source = var / "dr-evidence" / drill_file(drilled).rsplit("/", 1)[1]
    original = source.read_bytes()
    try:
        _edit_rto(source)
        out = tmp_path / "cut-after-edit"
        done = cli(drilled["url"], var, "evidence", "build", "--out", str(out))
        assert done.returncode == 0, done.stderr
    finally:
        source.write_bytes(original)
    assert not (out / drill_file(drilled)).exists()
    verdicts = json.loads((out / "dr" / "verifier.json").read_text())
    assert verdicts == [
        {
            "drillId": drilled["evidence"]["drill_id"],
            "ok": False,
            "failures": [
                f"{source.name} does not match the digest the log signed "
                "(edited after signing)"
            ],
        }
    ]
    assert (
        "<th>signed evidence files verified</th><td>0 of 1</td>"
        in (out / "index.html").read_text()
    )
    code, lines = verify(drilled, out)
    assert code == 1
    assert any("is not in the bundle" in x for x in lines), lines
