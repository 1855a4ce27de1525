"""A release's evidence bundle: sections cut from the log, a signed manifest.

``collect`` reads the log's events (after a position) into sections of ids,
hashes and figures: DR drills, ER evaluations, catalog gate runs, export
decisions and proofs, autopilot actions. ``write_bundle`` writes the section
files, an offline ``index.html`` and ``manifest.dsse.json``: a DSSE envelope
(the existing key ring) over every file's SHA-256, the signed checkpoint the
bundle was cut at, and each cited event's position, hash and RFC 9162
inclusion proof under it. ``verify_evidence_bundle`` checks all of that from
the folder and the public keys alone, and names each failure; it also checks
each signed drill evidence file (``dr/drills/``) against its own signature and
against the EvidenceSigned event that names its digest.

Nothing here copies a record's values: events are cited by id, position and
hash; figures are counts, timings, ratios and digests.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import NAMESPACE_URL, uuid5

from adapters.dr.evidence import evidence_digest, is_evidence, verify_evidence
from adapters.ledger.checkpoints import CHECKPOINT_TYPE
from adapters.ledger.merkle import proof_from_hex, verify_consistency, verify_inclusion
from adapters.signing.dsse import payload_of, verify_envelope

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path

    from application.ports import LogEntry

MANIFEST_FILE = "manifest.dsse.json"
MANIFEST_TYPE = "application/vnd.conductor.evidence-bundle+json"
BUNDLE_FORMAT = "conductor.evidence-bundle/v1"
SECTIONS = ("dr", "er", "catalog", "exports", "autopilot", "acceptance")
TITLES = {
    "dr": "DR drills: RTO, RPO and timings",
    "er": "ER evaluations: candidate recall at equal precision",
    "catalog": "Catalog conformance: CI gate runs and coverage",
    "exports": "Export proofs and the verifier's output",
    "autopilot": "Autopilot actions and their reasons",
    "acceptance": "Acceptance packs",
}

_CITED = {
    ":Failover.DrillCompleted": ("dr", "drill-completed"),
    ":Failover.EvidenceSigned": ("dr", "drill-evidence-signed"),
    ":ErEvaluation.Evaluated": ("er", "er-evaluation"),
    ":CatalogGateRan.Ran": ("catalog", "gate-run"),
    ":Export.Decided": ("exports", "export-decision"),
    ":Export.ProofIssued": ("exports", "export-proof"),
    ":TenantBudget.CapAdjusted": ("autopilot", "cap-adjusted"),
    ":TenantBudget.ShapingEngaged": ("autopilot", "shaping-engaged"),
    ":TenantBudget.ShapingReleased": ("autopilot", "shaping-released"),
}
"""The events a bundle cites (topic suffix -> section, kind)."""


def _plain(value: Any) -> Any:
    """A stored value without the transcoder's type wrappers (decimals as text)."""
    if isinstance(value, dict):
        if set(value) == {"_type_", "_data_"}:
            return _plain(value["_data_"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def value_digest(value: Any) -> str:
    """sha256 of a value's canonical JSON: how a bundle names a repository."""
    body = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


_digest = value_digest


def _figures(kind: str, state: dict[str, Any]) -> dict[str, Any]:  # noqa: PLR0911
    """The figures (no record values) of one cited event."""
    s = _plain(state)
    if kind == "drill-completed":
        drill = ("rto_ms", "rpo_commands", "rpo_ms", "read_p95_baseline_ms")
        return {k: s.get(k) for k in (*drill, "read_p95_window_ms")}
    if kind == "drill-evidence-signed":
        return {"evidenceSha256": s.get("sha256"), "keyId": s.get("key_id")}
    if kind == "er-evaluation":
        keys = (
            "labelled_set", "labelled_sha256", "records", "true_pairs", "blocking",
            "gate_digest", "baseline_candidate_recall", "assist_candidate_recall",
            "baseline_precision", "assist_precision", "recall_gain", "recall_delta",
        )  # fmt: skip
        return {k: s.get(k) for k in keys}
    if kind == "gate-run":
        tenant = str(s.get("tenant", ""))

        def ids(names: Sequence[str]) -> list[str]:
            key = "/tenants/{}/datasets/{}"
            return sorted(
                str(uuid5(NAMESPACE_URL, key.format(tenant, n))) for n in names
            )

        return {
            "tenant": tenant,
            "repoSha256": _digest(s.get("repo")),
            "commit": s.get("commit"),
            "findingsDigest": s.get("findings_digest"),
            "findings": s.get("findings"),
            "datasetIds": ids(s.get("datasets", [])),
            "failingDatasetIds": ids(s.get("failing", [])),
        }
    if kind == "export-decision":
        return {
            "allow": s.get("allow"),
            "reasons": s.get("reasons"),
            "policyDigest": s.get("policy_digest"),
            "floorDigest": s.get("floor_digest"),
            "inputDigest": s.get("input_digest"),
        }
    if kind == "export-proof":
        return {
            "manifestSha256": s.get("manifest_sha256"),
            "keyId": s.get("key_id"),
            "checkpointSize": s.get("checkpoint_size"),
        }
    # autopilot actions
    return {
        "reason": s.get("reason"),
        "old": s.get("old"),
        "new": s.get("new"),
        "rate": s.get("rate"),
        "burnRate": s.get("burn_rate"),
        "atMs": s.get("at_ms"),
        "evidenceDigest": _digest(s.get("evidence")),
    }


@dataclass
class Collected:
    """The cited events by section, and every tenant they name."""

    events: list[dict[str, Any]] = field(default_factory=list)
    tenants: set[str] = field(default_factory=set)

    def in_section(self, section: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["section"] == section]


def collect(entries: Iterable[LogEntry]) -> Collected:
    """The events a bundle cites, oldest first, with their figures."""
    found = Collected()
    for e in entries:
        suffix = e.topic[e.topic.find(":") :]
        cited = _CITED.get(suffix)
        if cited is None:
            continue
        state = json.loads(e.state)
        tenant = state.get("tenant")
        if isinstance(tenant, str):
            found.tenants.add(tenant)
        found.events.append(
            {
                "section": cited[0],
                "kind": cited[1],
                "originatorId": str(e.originator_id),
                "version": e.version,
                "position": e.position,
                "hash": e.hash,
                "figures": _figures(cited[1], state),
            }
        )
    return found


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_bundle(
    out: Path,
    *,
    files: Mapping[str, bytes],
    cited: Sequence[dict[str, Any]],
    checkpoint: dict[str, Any],
    inclusions: Sequence[dict[str, Any]],
    sign: Callable[[str, bytes], dict[str, Any]],
    origin: str,
    since: int,
    consistency: dict[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the files, index.html and the signed manifest; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    everything = dict(files)
    everything["index.html"] = _index_html(files, cited, checkpoint, summary or {})
    for name, data in everything.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    events = [
        {
            "section": c["section"],
            "kind": c["kind"],
            "originatorId": c["originatorId"],
            "position": c["position"],
            "hash": c["hash"],
            "inclusion": {
                "leafIndex": i["leafIndex"],
                "treeSize": i["treeSize"],
                "proof": i["proof"],
            },
        }
        for c, i in zip(cited, inclusions, strict=True)
    ]
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "origin": origin,
        "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "since": since,
        "files": [
            {"path": name, "sha256": _sha256(data), "bytes": len(data)}
            for name, data in sorted(everything.items())
        ],
        "checkpoint": checkpoint,
        "events": events,
    }
    if consistency is not None:
        manifest["consistency"] = consistency
    envelope = sign(MANIFEST_TYPE, _canonical(manifest))
    (out / MANIFEST_FILE).write_text(json.dumps(envelope, indent=2) + "\n")
    return manifest


def _index_html(
    files: Mapping[str, bytes],
    cited: Sequence[dict[str, Any]],
    checkpoint: dict[str, Any],
    summary: Mapping[str, Any],
) -> bytes:
    """One offline page: each section's figures and links to its files."""
    esc = html.escape
    head = json.loads(payload_of(checkpoint))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Conductor evidence bundle</title>",
        "<style>body{font:14px/1.45 system-ui,sans-serif;margin:2rem;max-width:70rem}"
        "table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}"
        "code{font-size:12px}.bad{color:#a00}.ok{color:#070}</style>",
        "</head><body><h1>Conductor evidence bundle</h1>",
        f"<p>Cut at checkpoint: origin <code>{esc(str(head.get('origin')))}</code>, "
        f"tree size {esc(str(head.get('size')))}, root "
        f"<code>{esc(str(head.get('rootHash')))}</code>, last position "
        f"{esc(str(head.get('lastPosition')))}. Check it with "
        "<code>conductor verify THIS_FOLDER</code>.</p>",
    ]
    for section in SECTIONS:
        names = sorted(n for n in files if n.startswith(f"{section}/"))
        events = [c for c in cited if c["section"] == section]
        parts.append(f"<h2 id='{section}'>{esc(TITLES[section])}</h2>")
        figures = summary.get(section)
        if figures:
            parts.append("<table>")
            for key, value in figures.items():
                parts.append(
                    f"<tr><th>{esc(str(key))}</th><td>{esc(str(value))}</td></tr>"
                )
            parts.append("</table>")
        parts.append(f"<p>{len(events)} cited event(s).</p>")
        if names:
            links = "".join(f"<li><a href='{esc(n)}'>{esc(n)}</a></li>" for n in names)
            parts.append(f"<ul>{links}</ul>")
        else:
            parts.append("<p>No files in this section.</p>")
    parts.append("</body></html>\n")
    return "".join(parts).encode()


# ---------------------------------------------------------------- verifying


def _listed(directory: Path) -> set[str]:
    """Every file in the bundle but the manifest itself."""
    return {
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p != directory / MANIFEST_FILE
    }


def read_manifest(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(envelope, manifest) of a bundle; ValueError/OSError if unreadable."""
    envelope = json.loads((directory / MANIFEST_FILE).read_bytes())
    if not isinstance(envelope, dict):
        msg = f"{MANIFEST_FILE} is not a DSSE envelope"
        raise ValueError(msg)  # noqa: TRY004 - a bad document, reported as such
    manifest = json.loads(payload_of(envelope))
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        msg = f"{MANIFEST_FILE} does not carry a {BUNDLE_FORMAT} manifest"
        raise ValueError(msg)
    return envelope, manifest


def is_evidence_bundle(directory: Path) -> bool:
    return (directory / MANIFEST_FILE).is_file()


def _check_files(directory: Path, manifest: Mapping[str, Any]) -> list[str]:
    failures = []
    listed: dict[str, Mapping[str, Any]] = {}
    for item in manifest.get("files") or []:
        name = str(item.get("path", ""))
        if not name or name.startswith(("/", "..")) or "/../" in f"/{name}/":
            failures.append(f"manifest: file path {name!r} is not inside the bundle")
            continue
        listed[name] = item
    present = _listed(directory)
    failures += [
        f"file {name}: added (not in the signed manifest)"
        for name in sorted(present - set(listed))
    ]
    for name, item in sorted(listed.items()):
        path = directory / name
        if not path.is_file():
            failures.append(f"file {name}: removed (listed in the signed manifest)")
            continue
        data = path.read_bytes()
        if _sha256(data) != item.get("sha256") or len(data) != item.get("bytes"):
            failures.append(f"file {name}: edited (sha256 does not match the manifest)")
    return failures


def _check_checkpoint(
    manifest: Mapping[str, Any], public_keys: Mapping[str, str]
) -> tuple[list[str], int, bytes]:
    checkpoint = manifest.get("checkpoint")
    if not isinstance(checkpoint, dict):
        return ["manifest: no signed checkpoint"], 0, b""
    failures = [f"checkpoint: {x}" for x in verify_envelope(checkpoint, public_keys)]
    if checkpoint.get("payloadType") != CHECKPOINT_TYPE:
        failures.append(f"checkpoint: payloadType is not {CHECKPOINT_TYPE}")
    try:
        head = json.loads(payload_of(checkpoint))
        size, root = int(head["size"]), bytes.fromhex(head["rootHash"])
    except (ValueError, KeyError, TypeError):
        return [*failures, "checkpoint: payload is not a tree head"], 0, b""
    if head.get("origin") != manifest.get("origin"):
        failures.append(
            f"checkpoint: from another log (origin {head.get('origin')!r}, the "
            f"bundle was cut from {manifest.get('origin')!r})"
        )
    return failures, size, root


def _check_events(manifest: Mapping[str, Any], size: int, root: bytes) -> list[str]:
    failures = []
    for event in manifest.get("events") or []:
        what = f"{event.get('kind')} event at position {event.get('position')}"
        inclusion = event.get("inclusion") or {}
        try:
            leaf = bytes.fromhex(str(event["hash"]))
            index = int(inclusion["leafIndex"])
            proof = proof_from_hex(inclusion["proof"])
            tree_size = int(inclusion["treeSize"])
        except (KeyError, ValueError, TypeError):
            failures.append(f"{what}: no well-formed inclusion proof")
            continue
        if tree_size != size:
            failures.append(
                f"{what}: proved against a tree of {tree_size}, checkpoint has {size}"
            )
        elif not verify_inclusion(leaf, index, size, proof, root):
            failures.append(
                f"{what}: inclusion proof fails against the signed checkpoint "
                "(a swapped or edited proof, or another log's checkpoint)"
            )
    return failures


def _check_sections(directory: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Every event a section file cites is one the manifest proves."""
    proved = {(e.get("position"), e.get("hash")) for e in manifest.get("events") or []}
    failures = []
    for section in SECTIONS:
        path = directory / section / "events.json"
        if not path.is_file():
            continue
        try:
            cited = json.loads(path.read_bytes())
        except ValueError:
            failures.append(f"file {section}/events.json: not JSON")
            continue
        failures += [
            f"{section}/events.json: event at position {item.get('position')}"
            " is not proved by the manifest"
            for item in (cited if isinstance(cited, list) else [])
            if (item.get("position"), item.get("hash")) not in proved
        ]
    return failures


def _check_drills(directory: Path, public_keys: Mapping[str, str]) -> list[str]:
    """Each drill file's own signature holds and an EvidenceSigned event the
    bundle cites names its digest; each such event has its file here."""
    try:
        cited = json.loads((directory / "dr" / "events.json").read_bytes())
    except (OSError, ValueError):
        cited = []
    signed = {
        str((e.get("figures") or {}).get("evidenceSha256")): e.get("position")
        for e in (cited if isinstance(cited, list) else [])
        if isinstance(e, dict) and e.get("kind") == "drill-evidence-signed"
    }
    failures, found = [], set()
    drills = directory / "dr" / "drills"
    for path in sorted(drills.glob("*.json")) if drills.is_dir() else []:
        name = f"dr/drills/{path.name}"
        try:
            document = json.loads(path.read_bytes())
        except ValueError:
            failures.append(f"file {name}: not JSON")
            continue
        if not is_evidence(document):
            failures.append(f"file {name}: not signed drill evidence")
            continue
        failures += [
            f"file {name}: {x}" for x in verify_evidence(document, public_keys)
        ]
        digest = evidence_digest(document)
        if digest in signed:
            found.add(digest)
        else:
            failures.append(
                f"file {name}: no cited EvidenceSigned event names its digest "
                f"({digest[:12]}…)"
            )
    failures += [
        f"dr: the drill evidence signed at position {position} "
        f"(sha256 {digest[:12]}…) is not in the bundle"
        for digest, position in sorted(signed.items(), key=lambda kv: str(kv[1]))
        if digest not in found
    ]
    return failures


def _check_previous(  # noqa: PLR0911 - one return per verdict
    manifest: Mapping[str, Any],
    size: int,
    root: bytes,
    previous: Path,
    public_keys: Mapping[str, str],
) -> list[str]:
    try:
        prev_envelope, prev = read_manifest(previous)
    except (OSError, ValueError) as error:
        return [f"previous bundle {previous}: cannot read: {error}"]
    failures = [
        f"previous bundle: {x}" for x in verify_envelope(prev_envelope, public_keys)
    ]
    prev_failures, old_size, old_root = _check_checkpoint(prev, public_keys)
    failures += [f"previous bundle: {x}" for x in prev_failures]
    if not old_size:
        return failures
    if prev.get("origin") != manifest.get("origin"):
        return [*failures, "previous bundle: cut from another log (origin differs)"]
    if old_size == size:
        if old_root != root:
            failures.append("previous bundle: same tree size, different root (a fork)")
        return failures
    proof = manifest.get("consistency")
    if not isinstance(proof, dict) or proof.get("from") != old_size:
        return [
            *failures,
            f"consistency: the bundle has no proof from the previous bundle's "
            f"checkpoint (size {old_size}); build it with --previous",
        ]
    try:
        steps = proof_from_hex(proof["proof"])
    except (KeyError, ValueError, TypeError):
        return [*failures, "consistency: the proof is not well formed"]
    if not verify_consistency(old_size, size, old_root, root, steps):
        failures.append(
            f"consistency: the log at size {size} does not extend the previous "
            f"bundle's log at size {old_size} (history was rewritten)"
        )
    return failures


def verify_evidence_bundle(
    directory: Path, public_keys: Mapping[str, str], previous: Path | None = None
) -> list[str]:
    """Every failure, one line each (empty: the bundle verifies)."""
    try:
        envelope, manifest = read_manifest(directory)
    except (OSError, ValueError) as error:
        return [f"manifest: cannot read {MANIFEST_FILE}: {error}"]
    failures = [f"manifest: {x}" for x in verify_envelope(envelope, public_keys)]
    if envelope.get("payloadType") != MANIFEST_TYPE:
        failures.append(f"manifest: payloadType is not {MANIFEST_TYPE}")
    failures += _check_files(directory, manifest)
    checkpoint_failures, size, root = _check_checkpoint(manifest, public_keys)
    failures += checkpoint_failures
    if size:
        failures += _check_events(manifest, size, root)
        if previous is not None:
            failures += _check_previous(manifest, size, root, previous, public_keys)
    failures += _check_sections(directory, manifest)
    failures += _check_drills(directory, public_keys)
    return failures
