"""Offline verification of an export's proof bundle (no service, no database).

Needs only the standard library, `ecdsa` (through adapters.signing.dsse) and
adapters.ledger.merkle: an auditor checks, from the bundle directory and the public
keys alone, the envelope's signature, the manifest, the exported file's digest
and the inclusion of every authorizing event under a signed checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from adapters.ledger.checkpoints import CHECKPOINT_TYPE
from adapters.ledger.merkle import proof_from_hex, verify_inclusion
from adapters.signing.dsse import payload_of, verify_envelope
from domain.exports.export import PROOF_FILE, PROOF_TYPE

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

ROLES = ("dataset", "policy", "request", "decision")
"""Every proof's authorizing events; a decision judged by the platform floor
adds "platform-policy", and one held for manual review adds its "review"."""


def verify_bundle(
    directory: Path,
    public_keys: Mapping[str, str],
    checked: dict[str, list[str]] | None = None,
) -> list[str]:
    """Every failure found in the bundle, one line each (empty: the bundle is valid).

    ``checked`` memoises checkpoint signature results across bundles (many
    proofs share a checkpoint); pass the same dict for one set of keys only.
    """
    try:
        envelope = json.loads((directory / PROOF_FILE).read_bytes())
        manifest = json.loads(payload_of(envelope))
    except (OSError, ValueError) as error:
        return [f"proof: cannot read {PROOF_FILE}: {error}"]
    failures = [
        f"proof envelope: {line}" for line in verify_envelope(envelope, public_keys)
    ]
    if envelope.get("payloadType") != PROOF_TYPE:
        failures.append(f"proof envelope: payloadType is not {PROOF_TYPE}")
    failures += _check_content(directory, manifest)
    failures += _check_inclusion(manifest, public_keys, checked)
    return failures


def _check_content(directory: Path, manifest: Mapping[str, Any]) -> list[str]:
    content = manifest.get("content") or {}
    name = str(content.get("file", ""))
    if not name or "/" in name or name.startswith("."):
        return ["manifest: content.file is missing or not a plain file name"]
    path = directory / name
    if not path.is_file():
        return [f"exported file {name}: missing from the bundle"]
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    failures = []
    if digest.hexdigest() != content.get("sha256"):
        failures.append(f"exported file {name}: sha256 does not match the manifest")
    if size != content.get("bytes"):
        failures.append(
            f"exported file {name}: {size} bytes, the manifest says "
            f"{content.get('bytes')}"
        )
    if manifest.get("hash") != f"sha256-{content.get('sha256')}":
        failures.append("manifest: hash does not match content.sha256")
    return failures


def _check_inclusion(
    manifest: Mapping[str, Any],
    public_keys: Mapping[str, str],
    checked: dict[str, list[str]] | None,
) -> list[str]:
    checkpoint = manifest.get("checkpoint")
    if not isinstance(checkpoint, dict):
        return ["manifest: no signed checkpoint"]
    failures = _checkpoint_signature(checkpoint, public_keys, checked)
    try:
        head = json.loads(payload_of(checkpoint))
        size, root = int(head["size"]), bytes.fromhex(head["rootHash"])
    except (ValueError, KeyError, TypeError):
        return [*failures, "checkpoint: payload is not a tree head"]
    if checkpoint.get("payloadType") != CHECKPOINT_TYPE:
        failures.append(f"checkpoint: payloadType is not {CHECKPOINT_TYPE}")
    events = manifest.get("authorizingEvents") or []
    roles = sorted(str(e.get("role")) for e in events if isinstance(e, dict))
    expected = sorted(_roles(manifest.get("decision") or {}))
    if roles != expected:
        failures.append(
            f"manifest: authorizing events are {roles}, expected {expected}"
        )
    for event in events:
        failures += _check_event(event, size, root)
    return failures


def _roles(decision: Mapping[str, Any]) -> list[str]:
    """The events a decision needs under the checkpoint, from what it claims."""
    roles = list(ROLES)
    if decision.get("platformPolicyDigest"):
        roles.append("platform-policy")
    if decision.get("review"):
        roles.append("review")
    return roles


def _checkpoint_signature(
    checkpoint: dict[str, Any],
    public_keys: Mapping[str, str],
    checked: dict[str, list[str]] | None,
) -> list[str]:
    if checked is None:
        return [f"checkpoint: {x}" for x in verify_envelope(checkpoint, public_keys)]
    key = hashlib.sha256(
        json.dumps(checkpoint, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    if key not in checked:
        checked[key] = [
            f"checkpoint: {x}" for x in verify_envelope(checkpoint, public_keys)
        ]
    return list(checked[key])


def _check_event(event: Mapping[str, Any], size: int, root: bytes) -> list[str]:
    what = f"{event.get('role')} event at position {event.get('position')}"
    inclusion = event.get("inclusion") or {}
    try:
        leaf = bytes.fromhex(str(event["hash"]))
        index = int(inclusion["leafIndex"])
        proof = proof_from_hex(inclusion["proof"])
        tree_size = int(inclusion["treeSize"])
    except (KeyError, ValueError, TypeError):
        return [f"{what}: no well-formed inclusion proof"]
    if tree_size != size:
        return [f"{what}: proved against a tree of {tree_size}, checkpoint has {size}"]
    if not verify_inclusion(leaf, index, size, proof, root):
        return [f"{what}: not included in the signed checkpoint (proof fails)"]
    return []
