"""`conductor keys|verify|audit|export`: signing keys and the auditor's tools."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from api.cli.progress import Progress

if TYPE_CHECKING:
    import argparse

    from api.settings import Settings


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.signing.keystore import KeyStore  # noqa: PLC0415

    store = KeyStore(settings.var_path / "keys")
    if args.action == "rotate":
        from api.bootstrap import build_conductor  # noqa: PLC0415

        key_id = store.rotate()
        services = build_conductor(settings)
        try:
            services.exports.app.record_signing_key(store)  # the log carries every key
        finally:
            services.close()
        print(f"new active key {key_id} (recorded in the log; old keys still verify)")
        return 0
    keys = store.keys()
    print(json.dumps({k.keyid: k.public_key_pem for k in keys}, indent=2))
    return 0


def _load_keys(settings: Settings, path: str | None) -> dict[str, str]:
    """Public keys from --keys, else this machine's key store.

    --keys takes GET /v1/keys's body, a {keyid: PEM} object, or an exported
    log (the keys its chain-checked SigningKeyRing events record).
    """
    if path is None:
        from adapters.signing.keystore import KeyStore  # noqa: PLC0415

        return KeyStore(settings.var_path / "keys").public_keys()
    text = Path(path).read_text(encoding="utf-8")
    if text.startswith('{"format"'):
        return _log_keys(text)
    data: Any = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("keys"), list):
        return {k["keyid"]: k["publicKeyPem"] for k in data["keys"]}
    if isinstance(data, dict):
        return {str(k): str(v) for k, v in data.items()}
    msg = f"{path}: not a key file"
    raise ValueError(msg)


def _log_keys(text: str) -> dict[str, str]:
    from adapters.audit.auditor import Replayer  # noqa: PLC0415
    from adapters.audit.slice import read_checked  # noqa: PLC0415 - log or slice
    from adapters.exports.rego import RegoEngine  # noqa: PLC0415

    records, verdict = read_checked(text.splitlines())
    broken = verdict.failure
    if broken is not None:
        msg = f"the log's {verdict.kind} is broken, its keys are not trusted: {broken}"
        raise ValueError(msg)
    return Replayer(records, RegoEngine()).public_keys()


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.audit.proof_check import verify_bundle  # noqa: PLC0415

    try:
        keys = _load_keys(settings, args.keys)
    except (OSError, ValueError, KeyError) as error:
        print(f"conductor verify: cannot read keys: {error}", file=sys.stderr)
        return 2
    checked: dict[str, list[str]] = {}  # checkpoints shared between bundles
    started, bad = time.perf_counter(), 0
    for bundle in args.bundle:
        if Path(bundle).is_file():  # a DR drill's evidence, not an export bundle
            bad += _verify_evidence(Path(bundle), keys)
            continue
        if _is_release_bundle(Path(bundle)):  # `conductor evidence build`'s folder
            bad += _verify_release_bundle(Path(bundle), keys, args.previous)
            continue
        failures = verify_bundle(Path(bundle), keys, checked)
        prefix = f"{bundle}: " if len(args.bundle) > 1 else ""
        for line in failures:
            print(prefix + line)
        if failures:
            bad += 1
        elif len(args.bundle) == 1:
            print(
                f"ok: {bundle} verifies (signature, manifest, file digest, "
                "inclusion of every authorizing event under a signed checkpoint)"
            )
    if len(args.bundle) > 1:
        elapsed = time.perf_counter() - started
        rate = len(args.bundle) / elapsed if elapsed else float("inf")
        print(
            f"{len(args.bundle) - bad:,} of {len(args.bundle):,} bundles verify "
            f"({rate:,.0f} bundles/s)"
        )
    return 1 if bad else 0


def _is_release_bundle(path: Path) -> bool:
    from adapters.audit.evidence_bundle import is_evidence_bundle  # noqa: PLC0415

    return is_evidence_bundle(path)


def _verify_release_bundle(
    path: Path, keys: dict[str, str], previous: str | None
) -> int:
    """Check an evidence bundle; print each failure (or ok); 1 if it fails."""
    from adapters.audit.evidence_bundle import verify_evidence_bundle  # noqa: PLC0415

    failures = verify_evidence_bundle(path, keys, Path(previous) if previous else None)
    for line in failures:
        print(f"{path}: {line}")
    if not failures:
        also = f", consistent with {previous}" if previous else ""
        print(
            f"ok: {path} verifies (signed manifest, every file's digest, every "
            f"cited event's inclusion under the signed checkpoint{also})"
        )
    return 1 if failures else 0


def _verify_evidence(path: Path, keys: dict[str, str]) -> int:
    """Check a signed DR evidence file; print the verdict; 1 if it fails."""
    from adapters.dr.evidence import is_evidence, verify_evidence  # noqa: PLC0415

    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"{path}: cannot read: {error}")
        return 1
    if not is_evidence(document):
        print(f"{path}: not an export bundle directory nor DR evidence")
        return 1
    failures = verify_evidence(document, keys)
    for line in failures:
        print(f"{path}: {line}")
    if not failures:
        print(f"ok: {path} verifies (DR drill evidence, signed by the listed key)")
    return 1 if failures else 0


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "export-log":
        if args.tenant or args.url:  # a tenant's slice, with inclusion proofs
            from api.cli.audit_slice import export_slice  # noqa: PLC0415

            return export_slice(settings, args)
        return _export_log(settings, Path(args.out))
    return _replay(args)


def _export_log(settings: Settings, out: Path) -> int:
    from adapters.audit.auditor import write_log  # noqa: PLC0415
    from api.logging import configure_logging  # noqa: PLC0415
    from api.runtime.dr import api_ledger  # noqa: PLC0415 - the pair, or the URL

    configure_logging(settings)  # log lines (the pair's) to stderr, not the output
    ledger = api_ledger(settings, pool_size=2)
    try:
        total = ledger.head().events
        progress = Progress("exported", total, unit="events")

        def pages() -> Any:
            after, done = 0, 0
            while entries := ledger.entries(after=after, limit=10_000):
                yield from entries
                after, done = entries[-1].position, done + len(entries)
                progress.update(done)

        with out.open("w", encoding="utf-8") as handle:
            written = write_log(pages(), handle)
        progress.finish(written)
    finally:
        ledger.close()
    print(f"wrote {written:,} events to {out}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from adapters.audit.auditor import Replayer  # noqa: PLC0415
    from adapters.audit.slice import read_checked  # noqa: PLC0415 - log or slice
    from adapters.exports.rego import TieredRegoEngine  # noqa: PLC0415
    from adapters.exports.rego_sandbox import RegoSandbox  # noqa: PLC0415

    started = time.perf_counter()
    with Path(args.log).open(encoding="utf-8") as handle:
        try:
            records, verdict = read_checked(handle)
        except ValueError as error:
            print(f"conductor audit replay: {error}", file=sys.stderr)
            return 2
    # With --json, stdout is JSON Lines only; the human lines go to stderr.
    say = (lambda text: print(text, file=sys.stderr)) if args.json else print
    checked, broken = verdict.checked, verdict.failure
    if broken is not None:
        if args.json:
            print(json.dumps({"chain": "broken", "detail": broken, "checked": checked}))
        say(f"{verdict.kind} broken: {broken} ({checked:,} events verified before it)")
        return 1
    say(verdict.summary)
    bad_evaluations = _show_evaluations(records, args)
    # A tenant's policy is as hostile to the auditor's machine as to the
    # server's: it is re-run under the same limits, in the same sandbox.
    engine = TieredRegoEngine(RegoSandbox())
    try:
        replayer = Replayer(records, engine)
        ids = replayer.export_ids() if args.all else [UUID(args.export)]
        bad = _replay_each(replayer, ids, args, say)
    finally:
        engine.close()
    seconds = time.perf_counter() - started
    say(
        f"replayed {len(ids):,} decision(s) in {seconds:.2f}s "
        f"({len(ids) / seconds if seconds else 0:,.0f}/s); {bad} mismatch(es)"
    )
    return 1 if bad or bad_evaluations else 0


def _show_evaluations(records: list[Any], args: argparse.Namespace) -> int:
    """Print the log's ER evaluations (the recall evidence); the inconsistent ones.

    With --json they are one line, ``{"erEvaluations": [...]}``, before the
    decisions (only when the log holds any).
    """
    from adapters.audit.evaluations import recorded_evaluations  # noqa: PLC0415

    found = recorded_evaluations(records)
    if not found:
        return 0
    if args.json:
        print(json.dumps({"erEvaluations": [e.to_json() for e in found]}))
    else:
        print(f"ER evaluations: {len(found):,}")
        for each in found:
            f = each.figures
            gain = f["recallGain"]
            print(
                f"  position {each.position}: {f['labelledSet']} "
                f"sha256 {f['labelledSha256'][:12]} blocking {f['blocking']!r} "
                f"candidate recall {f['baseline']['candidateRecall']:.4f} -> "
                f"{f['assist']['candidateRecall']:.4f} (gain "
                + ("n/a" if gain is None else f"{100 * gain:+.1f} %")
                + f"), precision {f['baseline']['precision']:.4f} -> "
                f"{f['assist']['precision']:.4f}, gate {f['gateDigest'][:12]}: "
                + ("consistent" if not each.mismatches else "MISMATCH: ")
                + "; ".join(each.mismatches)
            )
    return sum(1 for each in found if each.mismatches)


def _replay_each(
    replayer: Any, ids: list[UUID], args: argparse.Namespace, say: Any
) -> int:
    """Replay each decision, print it, and count the mismatches."""
    bad = 0
    for export_id in ids:
        try:
            result = replayer.replay(export_id)
        except LookupError as error:
            say(f"{export_id}: {error}")
            bad += 1
            continue
        bad += not result.matches
        if args.json:
            print(
                json.dumps(
                    {
                        "exportId": str(export_id),
                        "dataset": result.dataset,
                        "policyDigest": result.policy_digest,
                        "input": result.input,
                        "inputDigest": result.input_digest,
                        "allow": result.allow,
                        "reasons": list(result.reasons),
                        "matches": result.matches,
                        "mismatches": list(result.mismatches),
                    },
                    sort_keys=True,
                )
            )
        else:
            verdict = "allow" if result.allow else "deny " + ",".join(result.reasons)
            state = (
                "matches"
                if result.matches
                else "MISMATCH: " + "; ".join(result.mismatches)
            )
            print(
                f"{export_id} dataset {result.dataset} policy "
                f"{result.policy_digest[:12]} input {result.input_digest[:12]} "
                f"-> {verdict}: {state}"
            )
    return bad


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """Request a governed export and run it here, with a progress line."""
    from api.bootstrap import build_conductor  # noqa: PLC0415
    from domain.errors import DomainError  # noqa: PLC0415

    services = build_conductor(settings)
    try:
        try:
            decision = services.exports.app.request_export(
                tenant=args.tenant,
                dataset_id=UUID(args.dataset),
                preset=args.preset,
                purpose=args.purpose,
                destination_region=args.destination,
                requester=args.requester,
            )
        except DomainError as error:
            print(f"conductor export run: {error}", file=sys.stderr)
            return 2
        if decision.pending_review:
            print(
                f"export {decision.export_id} is held for manual review (the "
                "manual-export-review switch is engaged): another holder of "
                "export.approve approves it with POST "
                f"/v1/exports/{decision.export_id}/review"
            )
            return 1
        if not decision.allow:
            print(
                f"denied by policy {decision.policy_digest[:12]}: "
                f"{', '.join(decision.reasons)} (export {decision.export_id}, recorded)"
            )
            return 1
        # the DLP step reports (bytes read, bytes total) of the source file
        progress = Progress("exporting", unit="bytes")
        status = services.exports.worker.pipeline.run(
            decision.export_id, lambda read, total: progress.update(read, total=total)
        )
        export = services.exports.app.load_export(decision.export_id)
        progress.finish()
        where = services.exports.worker.pipeline.directory(decision.export_id)
        if status != "proven":
            print(f"export {decision.export_id} {status}: {export.failure}")
            return 1
        print(
            f"export {decision.export_id} proven: {export.rows:,} rows, "
            f"{export.bytes:,} bytes, sha256 {export.content_sha256}\n"
            f"bundle: {where} (check it with: conductor verify {where})"
        )
        return 0
    finally:
        services.close()


def add_commands(sub: Any) -> None:
    """Register the subcommands on the `conductor` parser."""
    keys = sub.add_parser("keys", help="signing keys").add_subparsers(
        dest="action", required=True
    )
    keys.add_parser("rotate", help="add a key and make it active").set_defaults(
        func=cmd_keys
    )
    keys.add_parser("list", help="print public keys as JSON").set_defaults(
        func=cmd_keys
    )

    verify = sub.add_parser(
        "verify", help="check export proof bundles or DR evidence offline"
    )
    verify.add_argument(
        "bundle",
        nargs="+",
        help="export directories (file + proof.dsse.json), evidence bundle "
        "directories (manifest.dsse.json) or DR evidence JSON files",
    )
    verify.add_argument("--keys", help="public keys: GET /v1/keys output or keyid->PEM")
    verify.add_argument(
        "--previous",
        help="with an evidence bundle: an earlier bundle whose log this one extends",
    )
    verify.set_defaults(func=cmd_verify, store=False)  # offline

    audit = sub.add_parser("audit", help="the auditor's tools").add_subparsers(
        dest="action", required=True
    )
    export_log = audit.add_parser(
        "export-log", help="write the whole log (or a tenant's slice) as JSON Lines"
    )
    export_log.add_argument("--out", required=True, help="the JSON Lines file to write")
    whose = export_log.add_mutually_exclusive_group()
    whose.add_argument("--tenant", help="only this tenant's slice, with proofs")
    whose.add_argument(
        "--url", help="fetch from this API with $CONDUCTOR_TOKEN (a tenant's slice)"
    )
    export_log.set_defaults(func=cmd_audit, store=lambda args: not args.url)
    replay = audit.add_parser(
        "replay",
        help="re-run export decisions from a log file; show its ER evaluations",
    )
    replay.add_argument(
        "--log", required=True, help="a log file from `conductor audit export-log`"
    )
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--export", help="one export id")
    which.add_argument("--all", action="store_true", help="every export in the log")
    replay.add_argument("--json", action="store_true", help="print JSON")
    replay.set_defaults(func=cmd_audit, store=False)  # reads --log only

    export = (
        sub.add_parser("export", help="governed exports")
        .add_subparsers(dest="action", required=True)
        .add_parser("run", help="request an export and run it here, with progress")
    )
    export.add_argument("--tenant", required=True, help="the requesting tenant")
    export.add_argument("--dataset", required=True, help="dataset id")
    export.add_argument(
        "--preset",
        default="tokenize_strict",
        help="the DLP preset (default %(default)s; docs/exports.md)",
    )
    export.add_argument("--purpose", required=True, help="the declared purpose")
    export.add_argument("--destination", required=True, help="destination region")
    export.add_argument(
        "--requester", default="cli", help="who asks (default %(default)s)"
    )
    export.set_defaults(func=cmd_export)
