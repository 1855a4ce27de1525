"""The export page's verify panel: `conductor verify`'s own check, shown per step.

The panel runs ``adapters.audit.proof_check.verify_bundle`` (the function the
CLI runs) on the bundle directory with the service's public keys, and sorts
its failure lines into the four things it checks, by the prefix each line
carries. Nothing is checked here: a step passes exactly when the auditor's
function reported no failure for it. The manifest's own figures (key id,
digests, checkpoint size) are shown beside each step so a person can compare
them with the downloaded files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.audit.proof_check import verify_bundle
from adapters.signing.dsse import payload_of
from domain.exports.export import PROOF_FILE

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

STEPS = (
    ("signature", "Signature", "the DSSE envelope is signed by a known key"),
    (
        "manifest",
        "Manifest hash",
        "the signed manifest's hash names the exported content",
    ),
    ("file", "File digest", "the file's SHA-256 and size match the manifest"),
    (
        "inclusion",
        "Inclusion in the signed checkpoint",
        "every authorizing event is in the Merkle tree of a signed checkpoint",
    ),
)
"""(key, title, what it means): the checks `conductor verify` prints as one."""


@dataclass
class Step:
    key: str
    title: str
    meaning: str
    failures: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class ProofReport:
    steps: list[Step]
    failures: list[str]
    """verify_bundle's lines, exactly as `conductor verify` prints them."""

    @property
    def ok(self) -> bool:
        return not self.failures


def step_of(line: str) -> str:
    """Which check a failure line of verify_bundle belongs to (its prefix)."""
    if line.startswith(("proof envelope:", "proof:")):
        return "signature"
    if line.startswith("manifest: hash"):
        return "manifest"
    if line.startswith(("exported file", "manifest: content.file")):
        return "file"
    return "inclusion"  # checkpoint:, manifest: checkpoint/events, "… event at …"


def check_proof(directory: Path, public_keys: Mapping[str, str]) -> ProofReport:
    """Run the auditor's check on one bundle and group its verdict by step."""
    failures = verify_bundle(directory, public_keys)
    steps = [Step(key, title, meaning) for key, title, meaning in STEPS]
    by_key = {s.key: s for s in steps}
    for line in failures:
        if line.startswith("proof: cannot read"):  # nothing else can be checked
            for step in steps:
                step.failures.append(line)
            continue
        by_key[step_of(line)].failures.append(line)
    _add_facts(directory, by_key)
    return ProofReport(steps=steps, failures=failures)


def _add_facts(directory: Path, by_key: dict[str, Step]) -> None:
    """What the manifest claims, for the person to compare (not a check)."""
    try:
        envelope = json.loads((directory / PROOF_FILE).read_bytes())
        manifest: dict[str, Any] = json.loads(payload_of(envelope))
    except (OSError, ValueError):
        return
    keyids = [str(s.get("keyid", "")) for s in envelope.get("signatures", [])]
    by_key["signature"].facts.append(("key id", ", ".join(keyids)))
    content = manifest.get("content") or {}
    by_key["manifest"].facts.append(("manifest hash", str(manifest.get("hash", ""))))
    by_key["file"].facts += [
        ("file", str(content.get("file", ""))),
        ("sha256", str(content.get("sha256", ""))),
        ("bytes", str(content.get("bytes", ""))),
    ]
    try:
        head = json.loads(payload_of(manifest.get("checkpoint") or {}))
    except (ValueError, TypeError, KeyError, AttributeError):
        head = {}
    events = manifest.get("authorizingEvents") or []
    by_key["inclusion"].facts += [
        ("checkpoint size", str(head.get("size", ""))),
        ("root hash", str(head.get("rootHash", ""))),
        (
            "events",
            ", ".join(
                f"{e.get('role')}@{e.get('position')}"
                for e in events
                if isinstance(e, dict)
            ),
        ),
    ]
