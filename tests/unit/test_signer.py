"""Signed manifests: DSSE envelopes from the key store, verified as an auditor would."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import ecdsa
import ecdsa.util
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.signing.dsse import build_envelope, pae, payload_of, verify_envelope
from adapters.signing.keystore import KeyStore

ROOT = Path(__file__).resolve().parents[2]
TYPE = "application/vnd.conductor.export-proof+json"
PAYLOAD = b'{"export":"e-1","sha256":"ab12"}'


def short(kid: str) -> str:
    return kid[:12] + "…"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyStore, KeyStore]:
    """Two independent services: ours, and one whose keys are not published."""
    root = tmp_path_factory.mktemp("keys")
    return KeyStore(root / "ours"), KeyStore(root / "theirs")


def test_pae_matches_the_dsse_spec_example() -> None:
    """Lengths are decimal byte counts, UTF-8 for the type."""
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("tÿpe", b"") == b"DSSEv1 5 t\xc3\xbfpe 0 "


def test_an_envelope_signed_by_the_store_verifies_against_its_published_keys(
    stores: tuple[KeyStore, KeyStore],
) -> None:
    """The JSON round trip an auditor does changes nothing."""
    ours, _ = stores
    envelope = json.loads(json.dumps(ours.sign(TYPE, PAYLOAD)))
    assert set(envelope) == {"payloadType", "payload", "signatures"}
    assert envelope["payloadType"] == TYPE
    assert envelope["signatures"][0]["keyid"] == ours.active_key_id()
    assert verify_envelope(envelope, ours.public_keys()) == []
    assert payload_of(envelope) == PAYLOAD


def test_a_cryptography_signature_verifies_with_plain_ecdsa(
    stores: tuple[KeyStore, KeyStore],
) -> None:
    """The store signs with OpenSSL; the auditor's pure-Python check accepts it."""
    ours, _ = stores
    envelope = ours.sign(TYPE, PAYLOAD)
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    vk = ecdsa.VerifyingKey.from_pem(ours.active().public_key_pem)
    assert vk.verify(
        sig,
        pae(TYPE, PAYLOAD),
        hashfunc=hashlib.sha256,
        sigdecode=ecdsa.util.sigdecode_der,
    )


def test_an_ecdsa_signature_verifies_with_cryptography(
    stores: tuple[KeyStore, KeyStore],
) -> None:
    """Same curve, hash and DER encoding on both sides, in the other direction."""
    ours, _ = stores
    kid = ours.active_key_id()
    private_pem = (ours._dir / f"{kid}.pem").read_text()
    sk = ecdsa.SigningKey.from_pem(private_pem)
    sig = sk.sign_deterministic(
        pae(TYPE, PAYLOAD),
        hashfunc=hashlib.sha256,
        sigencode=ecdsa.util.sigencode_der,
    )
    public = serialization.load_pem_public_key(ours.active().public_key_pem.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(sig, pae(TYPE, PAYLOAD), ec.ECDSA(hashes.SHA256()))  # raises if bad
    envelope = build_envelope(TYPE, PAYLOAD, [(kid, sig)])
    assert verify_envelope(envelope, ours.public_keys()) == []


def _payload(env: dict[str, Any], other: dict[str, Any]) -> None:
    env["payload"] = b64(PAYLOAD.replace(b"ab12", b"ab13"))


def _payload_type(env: dict[str, Any], other: dict[str, Any]) -> None:
    env["payloadType"] = "application/vnd.conductor.dr-evidence+json"


def _swapped_sig(env: dict[str, Any], other: dict[str, Any]) -> None:
    env["signatures"][0]["sig"] = other["signatures"][0]["sig"]


def _extra_bad_sig(env: dict[str, Any], other: dict[str, Any]) -> None:
    env["signatures"].append(dict(other["signatures"][0]))


def _truncated_payload(env: dict[str, Any], other: dict[str, Any]) -> None:
    env["payload"] = env["payload"][:-1]


def _garbage_sig(env: dict[str, Any], other: dict[str, Any]) -> None:
    env["signatures"][0]["sig"] = "not base64!"


def _not_der(env: dict[str, Any], other: dict[str, Any]) -> None:
    env["signatures"][0]["sig"] = b64(b"\x30\x02junk")


def _no_signatures(env: dict[str, Any], other: dict[str, Any]) -> None:
    env["signatures"] = []


def _missing_type(env: dict[str, Any], other: dict[str, Any]) -> None:
    del env["payloadType"]


MISMATCH = "signature {i} by key {kid}: signature does not match the payload"


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (_payload, MISMATCH.format(i=0, kid="{kid}")),
        (_payload_type, MISMATCH.format(i=0, kid="{kid}")),
        (_swapped_sig, MISMATCH.format(i=0, kid="{kid}")),
        (_extra_bad_sig, MISMATCH.format(i=1, kid="{kid}")),
        (_truncated_payload, "envelope: 'payload' is not valid base64"),
        (_garbage_sig, "signature 0: 'sig' is not valid base64"),
        (
            _not_der,
            "signature 0: 'sig' is not a DER-encoded ECDSA signature",
        ),
        (_no_signatures, "envelope has no signatures"),
        (_missing_type, "envelope: 'payloadType' is missing or not a string"),
    ],
)
def test_tampering_with_an_envelope_is_reported_precisely(
    stores: tuple[KeyStore, KeyStore], tamper: Any, expected: str
) -> None:
    """Each edit yields exactly one line naming what is wrong and where."""
    ours, _ = stores
    env = json.loads(json.dumps(ours.sign(TYPE, PAYLOAD)))
    other = ours.sign(TYPE, b'{"export":"e-2"}')
    tamper(env, other)
    kid = short(ours.active_key_id())
    assert verify_envelope(env, ours.public_keys()) == [expected.format(kid=kid)]


def test_a_signature_by_an_unpublished_key_is_refused(
    stores: tuple[KeyStore, KeyStore],
) -> None:
    """A valid signature proves nothing unless its key was published by us."""
    ours, theirs = stores
    envelope = theirs.sign(TYPE, PAYLOAD)
    assert verify_envelope(envelope, ours.public_keys()) == [
        f"signature 0: unknown key id {short(theirs.active_key_id())} "
        "(not in the published keys)"
    ]


def test_a_published_key_replaced_under_the_same_id_is_refused(
    stores: tuple[KeyStore, KeyStore],
) -> None:
    """Key ids are hashes of the key, so a substituted PEM cannot hide."""
    ours, theirs = stores
    envelope = theirs.sign(TYPE, PAYLOAD)  # the forger signs with its own key
    kid, forged = ours.active_key_id(), theirs.active_key_id()
    envelope["signatures"][0]["keyid"] = kid
    published = {kid: theirs.public_keys()[forged]}
    assert verify_envelope(envelope, published) == [
        f"signature 0 by key {short(kid)}: published public key hashes to "
        f"{short(forged)}, not to its key id (key replaced?)"
    ]


def test_an_envelope_that_is_not_an_object_is_malformed() -> None:
    """Whatever json.load returned, verification reports instead of crashing."""
    assert verify_envelope([], {}) == ["envelope is not a JSON object"]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not valid base64"):
        payload_of({"payload": "%%%"})


def test_rotation_signs_with_the_new_key_and_old_envelopes_still_verify(
    tmp_path: Path,
) -> None:
    """Old keys stay published; exactly one is active."""
    store = KeyStore(tmp_path / "keys")
    old_id = store.active_key_id()
    old_envelope = store.sign(TYPE, PAYLOAD)
    new_id = store.rotate()
    assert new_id != old_id
    assert store.sign(TYPE, PAYLOAD)["signatures"][0]["keyid"] == new_id
    assert verify_envelope(old_envelope, store.public_keys()) == []
    manifest = json.loads((tmp_path / "keys" / "keys.json").read_text())
    assert manifest["active"] == new_id
    assert [k["keyid"] for k in manifest["keys"]] == [old_id, new_id]
    infos = KeyStore(tmp_path / "keys").keys()  # a fresh reader agrees
    assert [(k.keyid, k.active) for k in infos] == [(old_id, False), (new_id, True)]
    assert store.sign_with(old_id, TYPE, PAYLOAD)["signatures"][0]["keyid"] == old_id
    with pytest.raises(KeyError):
        store.sign_with("0" * 64, TYPE, PAYLOAD)


def test_key_files_are_private_and_a_readable_key_is_refused(tmp_path: Path) -> None:
    """0700 directory, 0600 keys; a key chmod'ed 0644 is never used."""
    directory = tmp_path / "keys"
    kid = KeyStore(directory).active_key_id()
    key_file = directory / f"{kid}.pem"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_file.chmod(0o644)
    with pytest.raises(PermissionError, match=r"mode 0644 lets group/others"):
        KeyStore(directory).sign(TYPE, PAYLOAD)


def test_a_corrupt_key_list_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    """Silently starting over would orphan every published signature."""
    directory = tmp_path / "keys"
    KeyStore(directory).active_key_id()
    (directory / "keys.json").write_text("{")
    with pytest.raises(ValueError, match="is corrupt"):
        KeyStore(directory).sign(TYPE, PAYLOAD)
    assert len(list(directory.glob("*.pem"))) == 1


CHILD = """
import sys, time
from pathlib import Path
from adapters.signing.keystore import KeyStore
directory, go = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.0005)
print(KeyStore(directory).active_key_id(), flush=True)
"""


def test_processes_creating_the_store_at_once_end_with_one_key(tmp_path: Path) -> None:
    """The flock makes first use race-free across processes."""
    directory, go = tmp_path / "keys", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(directory), str(go)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for child in children:  # all imported and waiting: start them together
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    go.touch()
    ids = {child.communicate(timeout=30)[0].strip() for child in children}
    assert all(child.returncode == 0 for child in children)
    assert len(ids) == 1
    assert len(list(directory.glob("*.pem"))) == 1
    assert len(json.loads((directory / "keys.json").read_text())["keys"]) == 1


def test_the_verifier_module_imports_only_the_standard_library_and_ecdsa() -> None:
    """Auditors copy adapters/signing/dsse.py alone and install nothing but ecdsa."""
    tree = ast.parse((ROOT / "adapters" / "signing" / "dsse.py").read_text())
    names = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert names - set(sys.stdlib_module_names) - {"__future__"} == {"ecdsa"}
