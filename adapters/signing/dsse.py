"""DSSE v1 envelopes: build them, and verify them offline with pure-Python ecdsa.

Self-contained on purpose: only the standard library and ``ecdsa`` are imported,
so auditors can copy this file into their own tooling and check Conductor's
signed manifests without trusting (or installing) anything else of ours.

Envelope shape (https://github.com/secure-systems-lab/dsse, protocol v1)::

    {"payloadType": "application/vnd.conductor...+json",
     "payload": "<standard base64 of the payload bytes>",
     "signatures": [{"keyid": "<sha256 hex of the DER SPKI>",
                     "sig": "<standard base64 of the DER ECDSA P-256 signature>"}]}

Signatures are ECDSA P-256 with SHA-256 over ``pae(payloadType, payload)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import ecdsa
import ecdsa.der
import ecdsa.ellipticcurve
import ecdsa.util

__all__ = ["build_envelope", "key_id", "pae", "payload_of", "verify_envelope"]

_SHORT = 12  # hex digits of a key id shown in messages; enough to tell keys apart


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: the exact bytes that get signed.

    Args:
        payload_type: The envelope's payloadType.
        payload: The raw (not base64) payload bytes.

    Returns:
        ``b"DSSEv1 <len(type)> <type> <len(payload)> <payload>"``, lengths being
        ASCII decimal byte counts, so type and payload cannot be confused.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def key_id(public_key_der: bytes) -> str:
    """Key id: lowercase hex SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(public_key_der).hexdigest()


def build_envelope(
    payload_type: str, payload: bytes, signatures: Sequence[tuple[str, bytes]]
) -> dict[str, Any]:
    """Assemble a JSON-able envelope from (keyid, DER signature) pairs.

    Args:
        payload_type: The payloadType that was signed.
        payload: The raw payload bytes that were signed.
        signatures: (keyid, DER-encoded ECDSA signature over the PAE) pairs.

    Returns:
        The envelope dict; ``json.dumps`` it as is.
    """
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {"keyid": kid, "sig": base64.b64encode(sig).decode("ascii")}
            for kid, sig in signatures
        ],
    }


def payload_of(envelope: Mapping[str, Any]) -> bytes:
    """The decoded payload, NOT verified: call ``verify_envelope`` first.

    Raises:
        ValueError: The envelope or its payload is malformed.
    """
    # ValueError, not TypeError: to callers every malformed input is alike.
    if not isinstance(envelope, Mapping):
        raise ValueError("envelope is not a JSON object")  # noqa: TRY004
    payload = envelope.get("payload")
    if not isinstance(payload, str):
        raise ValueError("envelope: 'payload' is missing or not a string")  # noqa: TRY004
    decoded = _b64decode(payload)
    if decoded is None:
        raise ValueError("envelope: 'payload' is not valid base64")
    return decoded


def verify_envelope(
    envelope: Mapping[str, Any], public_keys: Mapping[str, str]
) -> list[str]:
    """Check every signature of an envelope against the published keys.

    Valid means: at least one signature, each by a published key whose PEM
    hashes to its key id, and each matching the payload and payloadType.

    Args:
        envelope: The parsed envelope JSON (anything ``json.load`` returns).
        public_keys: keyid -> PEM public key, as published by the service.

    Returns:
        Human-readable failure lines; an empty list means the envelope is valid.
    """
    if not isinstance(envelope, Mapping):
        return ["envelope is not a JSON object"]
    problems: list[str] = []
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str):
        problems.append("envelope: 'payloadType' is missing or not a string")
    try:
        payload: bytes | None = payload_of(envelope)
    except ValueError as error:
        payload = None
        problems.append(str(error))
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list):
        problems.append("envelope: 'signatures' is missing or not a list")
    elif not signatures:
        problems.append("envelope has no signatures")
    if problems or payload is None or not isinstance(payload_type, str):
        return problems
    assert isinstance(signatures, list)  # checked above; tells the type checker
    signed = pae(payload_type, payload)
    for index, entry in enumerate(signatures):
        problem = _check_signature(index, entry, signed, public_keys)
        if problem is not None:
            problems.append(problem)
    return problems


def _check_signature(
    index: int, entry: object, signed: bytes, public_keys: Mapping[str, str]
) -> str | None:
    """One failure line for signature ``index``, or None when it verifies."""
    where = f"signature {index}"
    parsed = _parse_signature(entry)
    if isinstance(parsed, str):
        return f"{where}: {parsed}"
    kid, sig = parsed
    pem = public_keys.get(kid)
    if pem is None:
        return f"{where}: unknown key id {_short(kid)} (not in the published keys)"
    where = f"{where} by key {_short(kid)}"
    verifying_key = _published_key(kid, pem)
    if isinstance(verifying_key, str):
        return f"{where}: {verifying_key}"
    try:
        verifying_key.verify(
            sig, signed, hashfunc=hashlib.sha256, sigdecode=ecdsa.util.sigdecode_der
        )
    except ecdsa.BadSignatureError:
        return f"{where}: signature does not match the payload"
    return None


def _parse_signature(entry: object) -> tuple[str, bytes] | str:
    """(keyid, DER signature) of one signatures[] entry, or what is wrong."""
    if not isinstance(entry, Mapping):
        return "not a JSON object"
    kid, sig_b64 = entry.get("keyid"), entry.get("sig")
    if not isinstance(kid, str) or not isinstance(sig_b64, str):
        return "'keyid' and 'sig' must both be strings"
    sig = _b64decode(sig_b64)
    if sig is None:
        return "'sig' is not valid base64"
    try:
        # verify() folds bad encodings into BadSignatureError; tell them apart.
        ecdsa.util.sigdecode_der(sig, ecdsa.NIST256p.order)
    except Exception:
        return "'sig' is not a DER-encoded ECDSA signature"
    return kid, sig


def _published_key(kid: str, pem: str) -> Any:
    """The VerifyingKey published under ``kid``, or what is wrong with it."""
    try:
        verifying_key, own_id = _verifying_key(pem)
    except Exception as error:
        why = str(error) or type(error).__name__
        return f"published public key cannot be read ({why})"
    if own_id != kid:
        # The published map was edited: a different key sits under this id.
        return (
            f"published public key hashes to {_short(own_id)}, "
            "not to its key id (key replaced?)"
        )
    return verifying_key


@lru_cache(maxsize=256)
def _verifying_key(pem: str) -> tuple[Any, str]:
    """Parse a P-256 public key PEM once; precompute speeds up every verify.

    Returns:
        The precomputed ``ecdsa.VerifyingKey`` and the key id of its DER.

    Raises:
        ValueError: Not a P-256 public key.
    """
    parsed = ecdsa.VerifyingKey.from_pem(pem)
    curve = ecdsa.NIST256p
    if parsed.curve != curve:
        raise ValueError(f"not a P-256 key (curve {parsed.curve.name})")
    # ecdsa 0.19.2 leaves the curve order off points parsed from PEM/DER, and
    # precompute() then fails an assert; rebuild the (validated) point with it.
    point = ecdsa.ellipticcurve.PointJacobi(
        curve.curve, parsed.pubkey.point.x(), parsed.pubkey.point.y(), 1, curve.order
    )
    verifying_key = ecdsa.VerifyingKey.from_public_point(
        point, curve=curve, hashfunc=hashlib.sha256
    )
    verifying_key.precompute()
    # Hash the DER exactly as published rather than a re-encoding of the point.
    return verifying_key, key_id(ecdsa.der.unpem(pem))


def _b64decode(text: str) -> bytes | None:
    """Strict base64 (standard, or URL-safe as DSSE permits); None if invalid."""
    try:
        if "-" in text or "_" in text:
            return base64.b64decode(text, altchars=b"-_", validate=True)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _short(kid: str) -> str:
    """Abbreviated, printable key id for messages (ids may be attacker-chosen)."""
    clean = "".join(c if c.isprintable() else "?" for c in kid[:_SHORT])
    return clean + "…" if len(kid) > _SHORT else clean
