"""`conductor evidence build --out DIR`: a release's evidence, signed and proven.

The operator's tool (it opens the store): the log is cut at a freshly signed
checkpoint, every DR drill, ER evaluation, gate run, export decision and
proof, and autopilot action after ``--since`` is cited with its inclusion
proof, the drill evidence files and export proofs are re-verified, the catalog
coverage is measured (with the gate runs it counts), and the manifest is
signed with the key ring. `conductor verify DIR` checks it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    import argparse

    from adapters.audit.evidence_bundle import Collected
    from api.bootstrap import Conductor
    from api.settings import Settings
    from application.ports import LogEntry

PAGE = 10_000


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode()


def _entries(services: Conductor, since: int, last: int) -> list[LogEntry]:
    ledger = services.core.ledger
    found: list[LogEntry] = []
    after = since
    while entries := ledger.entries(after=after, limit=PAGE):
        found += [e for e in entries if e.position <= last]
        if entries[-1].position >= last:
            break
        after = entries[-1].position
    return found


def _dr_files(
    settings: Settings, collected: Collected, public_keys: dict[str, str]
) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """The signed drill evidence files the log's EvidenceSigned events name."""
    from adapters.dr.evidence import (  # noqa: PLC0415
        evidence_digest,
        is_evidence,
        verify_evidence,
    )

    wanted = {
        e["figures"]["evidenceSha256"]: e["originatorId"]
        for e in collected.in_section("dr")
        if e["kind"] == "drill-evidence-signed"
    }
    files: dict[str, bytes] = {}
    checks = []
    folder = settings.var_path / "dr-evidence"
    found: set[str] = set()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = path.read_bytes()
        try:
            document = json.loads(data)
        except ValueError:
            continue
        if not is_evidence(document):
            continue
        digests = {evidence_digest(document), hashlib.sha256(data).hexdigest()}
        if not digests & set(wanted):
            continue
        found |= digests
        files[f"dr/drills/{path.name}"] = data
        failures = verify_evidence(document, public_keys)
        checks.append(
            {"file": f"dr/drills/{path.name}", "ok": not failures, "failures": failures}
        )
    for digest, drill_id in sorted(wanted.items(), key=lambda kv: kv[1]):
        if digest in found:
            continue
        # An evidence file edited after signing no longer has the signed digest:
        # it is left out, and the drill's verdict says why.
        named = folder / f"dr-evidence-{drill_id}.json"
        why = (
            f"{named.name} does not match the digest the log signed (edited "
            "after signing)"
            if named.is_file()
            else f"no evidence file with the signed digest in {folder}"
        )
        checks.append({"drillId": drill_id, "ok": False, "failures": [why]})
    return files, checks


def _export_files(
    services: Conductor, collected: Collected, public_keys: dict[str, str]
) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """Each proven export's proof envelope, and the verifier's verdict on it."""
    from adapters.audit.proof_check import verify_bundle  # noqa: PLC0415
    from domain.exports.export import PROOF_FILE  # noqa: PLC0415

    files: dict[str, bytes] = {}
    verdicts = []
    pipeline = services.exports.worker.pipeline
    for event in collected.in_section("exports"):
        if event["kind"] != "export-proof":
            continue
        export_id = UUID(event["originatorId"])
        directory = pipeline.directory(export_id)
        proof = directory / PROOF_FILE
        if proof.is_file():
            files[f"exports/proofs/{export_id}.dsse.json"] = proof.read_bytes()
            failures = verify_bundle(directory, public_keys)
        else:
            failures = [f"the proof bundle is not on this host ({directory})"]
        verdicts.append(
            {"exportId": str(export_id), "ok": not failures, "failures": failures}
        )
    return files, verdicts


def _coverage(services: Conductor, tenants: set[str]) -> list[dict[str, Any]]:
    """Each tenant's coverage, by source, and the gate runs it counts (each
    repository's newest): digests, ids and counts, never names."""
    from adapters.audit.evidence_bundle import value_digest  # noqa: PLC0415

    rows = []
    for tenant in sorted(tenants):
        cov = services.catalog.queries.coverage(tenant)
        uses = services.catalog.gate_view.repo_uses(tenant)
        rows.append(
            {
                "tenant": tenant,
                "coverage": round(cov.ratio, 6),
                "activeDatasets": cov.in_use,
                "registeredActive": cov.registered_in_use,
                "unregisteredActive": cov.in_use - cov.registered_in_use,
                "sources": {
                    source: {"active": n, "registered": r}
                    for source, n, r in cov.by_source
                },
                "gateRepositories": [
                    {
                        "repoSha256": value_digest(use.repo),
                        "runId": str(use.run_id),
                        "position": use.position,
                        "datasets": len(use.datasets),
                        "failing": len(use.failing),
                    }
                    for use in uses
                ],
            }
        )
    return rows


def _summary(
    collected: Collected,
    drills: list[dict[str, Any]],
    exports: list[dict[str, Any]],
    coverage: list[dict[str, Any]],
    acceptance: dict[str, Any] | None,
) -> dict[str, dict[str, Any]]:
    def kinds(section: str, kind: str) -> list[dict[str, Any]]:
        return [
            e["figures"] for e in collected.in_section(section) if e["kind"] == kind
        ]

    completed = kinds("dr", "drill-completed")
    evaluations = kinds("er", "er-evaluation")
    runs = kinds("catalog", "gate-run")
    summary: dict[str, dict[str, Any]] = {
        "dr": {
            "drills completed": len(completed),
            "worst RTO (ms)": max((d["rto_ms"] for d in completed), default="-"),
            "worst RPO (commands)": max(
                (d["rpo_commands"] for d in completed), default="-"
            ),
            "signed evidence files verified": f"{sum(d['ok'] for d in drills)} "
            f"of {len(drills)}",
        },
        "er": {
            "evaluations": len(evaluations),
            "latest candidate recall delta": (
                evaluations[-1]["recall_delta"] if evaluations else "-"
            ),
            "latest precision (baseline -> assist)": (
                f"{evaluations[-1]['baseline_precision']} -> "
                f"{evaluations[-1]['assist_precision']}"
                if evaluations
                else "-"
            ),
        },
        "catalog": {
            "gate runs": len(runs),
            "gate runs with findings": sum(1 for r in runs if r["findings"]),
            **{f"coverage {c['tenant']}": c["coverage"] for c in coverage},
            **{
                f"gate-named datasets registered {c['tenant']}": (
                    f"{c['sources']['gate']['registered']} of "
                    f"{c['sources']['gate']['active']}"
                )
                for c in coverage
            },
        },
        "exports": {
            "proofs": len(exports),
            "proofs that verify": sum(1 for e in exports if e["ok"]),
            "decisions": len(kinds("exports", "export-decision")),
        },
        "autopilot": {
            "cap changes": len(kinds("autopilot", "cap-adjusted")),
            "shaping engaged": len(kinds("autopilot", "shaping-engaged")),
            "shaping released": len(kinds("autopilot", "shaping-released")),
        },
    }
    if acceptance is not None:
        checks = acceptance.get("checks", [])
        summary["acceptance"] = {
            "checks": len(checks),
            "passed": sum(1 for c in checks if c.get("ok")),
        }
    return summary


def _inputs(out: Path, args: argparse.Namespace) -> tuple[dict[str, Any] | None, int]:
    """(--acceptance's results, --previous's tree size); ValueError names the
    option that cannot be used."""
    from adapters.audit.evidence_bundle import read_manifest  # noqa: PLC0415
    from adapters.signing.dsse import payload_of  # noqa: PLC0415

    if out.exists() and any(out.iterdir()):
        msg = f"{out} is not empty"
        raise ValueError(msg)
    acceptance = None
    if args.acceptance:
        try:
            acceptance = json.loads(Path(args.acceptance).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            msg = f"--acceptance: {error}"
            raise ValueError(msg) from None
    old_size = 0
    if args.previous:
        try:
            _, previous = read_manifest(Path(args.previous))
            old_size = int(json.loads(payload_of(previous["checkpoint"]))["size"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            msg = f"--previous: {error}"
            raise ValueError(msg) from None
    return acceptance, old_size


def _section_files(
    collected: Collected,
    drills: list[dict[str, Any]],
    verdicts: list[dict[str, Any]],
    coverage: list[dict[str, Any]],
    acceptance: dict[str, Any] | None,
) -> dict[str, bytes]:
    from adapters.audit.evidence_bundle import SECTIONS  # noqa: PLC0415

    files = {
        f"{section}/events.json": _json(collected.in_section(section))
        for section in SECTIONS
        if section != "acceptance"
    }
    files["dr/verifier.json"] = _json(drills)
    files["exports/verifier.json"] = _json(verdicts)
    files["catalog/coverage.json"] = _json(coverage)
    if acceptance is not None:
        files["acceptance/results.json"] = _json(acceptance)
    return files


def cmd_evidence_build(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.audit.evidence_bundle import collect, write_bundle  # noqa: PLC0415
    from adapters.ledger.checkpoints import CHECKPOINT_TYPE  # noqa: PLC0415
    from api.bootstrap import build_conductor  # noqa: PLC0415
    from api.logging import configure_logging  # noqa: PLC0415

    out = Path(args.out)
    try:
        acceptance, old_size = _inputs(out, args)
    except ValueError as error:
        print(f"conductor evidence build: {error}", file=sys.stderr)
        return 2
    configure_logging(settings)
    services = build_conductor(settings)
    try:
        for runner in services.core.runners.values():
            runner.catch_up()
        core = services.core
        checkpoint = core.checkpoints.sign()
        assert checkpoint.envelope.get("payloadType") == CHECKPOINT_TYPE
        entries = _entries(services, args.since, checkpoint.last_position)
        collected = collect(entries)
        cited = collected.events
        inclusions = (
            core.checkpoints.inclusions([c["position"] for c in cited], checkpoint.size)
            if cited
            else []
        )
        keys = core.keys.public_keys()
        dr_files, drills = _dr_files(settings, collected, keys)
        export_files, verdicts = _export_files(services, collected, keys)
        coverage = _coverage(services, collected.tenants)
        files = {
            **dr_files,
            **export_files,
            **_section_files(collected, drills, verdicts, coverage, acceptance),
        }
        consistency = None
        if old_size and old_size < checkpoint.size:
            consistency = core.checkpoints.consistency(old_size, checkpoint.size)
        summary = _summary(collected, drills, verdicts, coverage, acceptance)
        manifest = write_bundle(
            out,
            files=files,
            cited=cited,
            checkpoint=checkpoint.envelope,
            inclusions=inclusions,
            sign=core.keys.sign,
            origin=settings.origin,
            since=args.since,
            consistency=consistency,
            summary=summary,
        )
    finally:
        services.close()
    print(
        f"evidence bundle {out}: {len(manifest['files'])} files, "
        f"{len(manifest['events'])} cited events, checkpoint size {checkpoint.size} "
        f"(check it with: conductor verify {out})"
    )
    return 0


def add_commands(sub: Any) -> None:
    """`conductor evidence build`."""
    build = (
        sub.add_parser("evidence", help="a release's evidence bundle")
        .add_subparsers(dest="action", required=True)
        .add_parser("build", help="cut, prove and sign an evidence bundle")
    )
    build.add_argument("--out", required=True, help="a new (or empty) folder")
    build.add_argument(
        "--since",
        type=int,
        default=0,
        help="cite only events after this log position (default: all)",
    )
    build.add_argument(
        "--previous",
        help="an earlier bundle: include a consistency proof from its checkpoint",
    )
    build.add_argument(
        "--acceptance",
        help="a `conductor acceptance run --json` result file to include",
    )
    build.set_defaults(func=cmd_evidence_build)
