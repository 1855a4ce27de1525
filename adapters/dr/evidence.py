"""Signed drill evidence: a JSON document carrying a DSSE signature over itself.

The signature covers the canonical JSON (sorted keys, compact) of every field
but ``signature``; `conductor verify EVIDENCE.json` checks it offline against
the public keys, so an edited timing or count fails verification.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from adapters.signing.dsse import payload_of, verify_envelope

if TYPE_CHECKING:
    from collections.abc import Mapping

    from adapters.signing.keystore import KeyStore

EVIDENCE_TYPE = "conductor.dr-evidence/v1"
PAYLOAD_TYPE = "application/vnd.conductor.dr-evidence+json"


def canonical(document: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def sign_evidence(document: dict[str, Any], keys: KeyStore) -> dict[str, Any]:
    """The document plus its ``signature`` envelope; returns sha256/key/sig too."""
    payload = canonical(document)
    envelope = keys.sign(PAYLOAD_TYPE, payload)
    return {**document, "signature": envelope}


def evidence_digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(document)).hexdigest()


def is_evidence(document: object) -> bool:
    return isinstance(document, dict) and document.get("type") == EVIDENCE_TYPE


def verify_evidence(
    document: Mapping[str, Any], public_keys: Mapping[str, str]
) -> list[str]:
    """Failure lines (empty: the signature holds and covers this very document)."""
    envelope = document.get("signature")
    if not isinstance(envelope, dict):
        return ["evidence: 'signature' is missing or not an envelope"]
    failures = [f"signature: {line}" for line in verify_envelope(envelope, public_keys)]
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        failures.append(f"signature: payloadType is not {PAYLOAD_TYPE}")
    try:
        signed = payload_of(envelope)
    except ValueError as error:
        return [*failures, f"signature: {error}"]
    if signed != canonical(document):
        failures.append("evidence: the document differs from what was signed")
    return failures
