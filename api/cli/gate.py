"""`conductor catalog gate [PATH...]`: fail a build that uses unregistered datasets.

The datasets a repository names (adapters/catalog/gate_sources.py) are checked
against the registry of the token's tenant: a running Conductor (``--url``,
the token in CONDUCTOR_TOKEN) or an exported log (``--log``). Exit 0: every
dataset is registered, active and under an active contract; 1: findings; 2:
a file could not be parsed, or the registry could not be asked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

if TYPE_CHECKING:
    import argparse

    from adapters.catalog.gate_sources import SourceError
    from api.settings import Settings
    from application.catalog.gate import DatasetUse, Finding, Registry

FORMATS = ("text", "github", "json", "junit")


def _fail(text: str) -> int:
    print(f"conductor catalog gate: {text}", file=sys.stderr)
    return 2


def _git(*args: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - fixed git arguments
            ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _repo_and_commit(args: argparse.Namespace) -> tuple[str, str]:
    repo = (
        args.repo
        or os.environ.get("GITHUB_REPOSITORY", "")
        or _git("config", "--get", "remote.origin.url")
        or Path.cwd().name
    )
    commit = (
        args.commit or os.environ.get("GITHUB_SHA", "") or _git("rev-parse", "HEAD")
    )
    return repo, commit


def _offline_registry(path: str, tenant: str) -> Registry:
    from adapters.audit.slice import read_checked  # noqa: PLC0415 - log or slice
    from adapters.catalog.gate_registry import LogRegistry  # noqa: PLC0415

    with Path(path).open(encoding="utf-8") as handle:
        records, verdict = read_checked(handle)
    if verdict.failure is not None:
        msg = f"{path}: the log's {verdict.kind} is broken: {verdict.failure}"
        raise ValueError(msg)
    return LogRegistry(records, tenant)


def _format_text(findings: list[Finding]) -> str:
    return "\n".join(f"{f.file}:{f.line}: {f.rule}: {f.message}" for f in findings)


def _escape_github(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _format_github(findings: list[Finding]) -> str:
    return "\n".join(
        f"::error file={_escape_github(f.file)},line={f.line},"
        f"title=catalog gate: {f.rule}::{_escape_github(f.message)}"
        for f in findings
    )


def _format_junit(uses: list[DatasetUse], findings: list[Finding]) -> str:
    failed = {(f.file, f.line, f.name): f for f in findings}
    suite = ET.Element(
        "testsuite",
        name="conductor catalog gate",
        tests=str(len(uses)),
        failures=str(len(findings)),
        errors="0",
    )
    for use in sorted(uses, key=lambda u: (u.file, u.line, u.name)):
        case = ET.SubElement(
            suite,
            "testcase",
            classname=use.file,
            name=f"{use.name} (line {use.line})",
            file=use.file,
            line=str(use.line),
        )
        finding = failed.get((use.file, use.line, use.name))
        if finding is not None:
            failure = ET.SubElement(
                case, "failure", type=finding.rule, message=finding.message
            )
            failure.text = f"{finding.file}:{finding.line}: {finding.message}"
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(
        root, encoding="unicode"
    )


def _errors_out(errors: list[SourceError], fmt: str) -> None:
    for error in errors:
        if fmt == "github":
            print(
                f"::error file={_escape_github(error.file)},line={max(error.line, 1)},"
                f"title=catalog gate: unreadable::{_escape_github(error.message)}"
            )
        print(f"conductor catalog gate: {error}", file=sys.stderr)


def _record(
    settings: Settings, args: argparse.Namespace, body: dict[str, Any], http: Any
) -> str:
    """Append the CatalogGateRan event; returns where it was recorded."""
    if http is not None:
        response = http.post("/v1/catalog/gate-runs", json=body)
        if response.status_code >= 400:
            msg = f"recording refused: {response.status_code} {response.text}"
            raise ValueError(msg)
        data = response.json()
        return f"gate run {data['id']} recorded at position {data.get('position')}"
    from api.bootstrap import build_conductor  # noqa: PLC0415

    services = build_conductor(settings)
    try:
        result = services.catalog.gate_runs.record_gate_run(
            tenant=args.tenant,
            repo=body["repo"],
            commit=body["commit"],
            findings_digest=body["findingsDigest"],
            findings=body["findings"],
            datasets=body["datasets"],
            failing=body["failing"],
        )
    finally:
        services.close()
    return f"gate run {result.id} recorded at position {result.position}"


def run_gate(settings: Settings, args: argparse.Namespace) -> int:  # noqa: C901, PLR0911, PLR0912
    from adapters.catalog.gate_sources import find_uses  # noqa: PLC0415
    from application.catalog.gate import check, findings_digest  # noqa: PLC0415

    if bool(args.url) == bool(args.log):
        return _fail("give exactly one of --url (a running Conductor) or --log FILE")
    uses, errors = find_uses([Path(p) for p in args.paths or ["."]])
    if errors:
        _errors_out(errors, args.format)
        return 2
    token = os.environ.get("CONDUCTOR_TOKEN", "")
    http: Any = None
    try:
        if args.url:
            import httpx  # noqa: PLC0415 - only the --url path needs it

            from adapters.catalog.gate_registry import (  # noqa: PLC0415
                HttpRegistry,
                token_tenant,
            )

            if not token:
                return _fail("--url needs CONDUCTOR_TOKEN")
            args.tenant = token_tenant(token)
            http = httpx.Client(
                base_url=args.url.rstrip("/"),
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            registry: Registry = HttpRegistry(http, args.tenant)
        else:
            if not args.tenant:
                return _fail("--log needs --tenant (whose registry to check)")
            registry = _offline_registry(args.log, args.tenant)
        try:
            findings = check(uses, registry)
        except Exception as error:
            return _fail(f"cannot ask the registry: {error}")
        digest = findings_digest(findings)
        if args.format == "json":
            print(
                json.dumps(
                    {
                        "tenant": args.tenant,
                        "datasets": sorted({u.name for u in uses}),
                        "uses": len(uses),
                        "findings": [f.to_json() for f in findings],
                        "findingsDigest": digest,
                    },
                    indent=2,
                )
            )
        elif args.format == "junit":
            print(_format_junit(uses, findings))
        elif findings:
            print(
                _format_text(findings)
                if args.format == "text"
                else _format_github(findings)
            )
        summary = (
            f"{len(uses)} dataset use(s) in {len({u.file for u in uses})} file(s), "
            f"{len(findings)} finding(s), digest {digest}"
        )
        print(summary, file=sys.stderr)
        if args.record:
            repo, commit = _repo_and_commit(args)
            if not commit:
                return _fail("--record needs --commit (not in a git checkout)")
            body = {
                "repo": repo,
                "commit": commit,
                "findingsDigest": digest,
                "findings": len(findings),
                "datasets": sorted({u.name for u in uses}),
                "failing": sorted({f.name for f in findings}),
            }
            print(_record(settings, args, body, http), file=sys.stderr)
    except (OSError, ValueError) as error:
        return _fail(str(error))
    finally:
        if http is not None:
            http.close()
    return 1 if findings else 0


def add_gate_command(catalog: Any) -> None:
    """`gate` under `conductor catalog`."""
    gate = catalog.add_parser(
        "gate", help="fail when the repository uses unregistered datasets"
    )
    gate.add_argument("paths", nargs="*", help="files or directories (default .)")
    where = gate.add_mutually_exclusive_group()
    where.add_argument("--url", help="a running Conductor (token in CONDUCTOR_TOKEN)")
    where.add_argument("--log", help="an exported log (conductor audit export-log)")
    gate.add_argument("--tenant", help="with --log: whose registry to check")
    gate.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (file:line lines), github (workflow annotations), json, or "
        "junit (JUnit XML); default: %(default)s",
    )
    gate.add_argument(
        "--record",
        action="store_true",
        help="append a CatalogGateRan event (repo, commit, findings digest)",
    )
    gate.add_argument("--repo", help="with --record (default: $GITHUB_REPOSITORY, git)")
    gate.add_argument("--commit", help="with --record (default: $GITHUB_SHA, git)")
    # A local store only to record without --url.
    gate.set_defaults(func=run_gate, store=lambda a: bool(a.record and not a.url))


def add_commands(sub: Any) -> None:
    """`conductor catalog ...`."""
    catalog = sub.add_parser("catalog", help="the dataset catalog").add_subparsers(
        dest="action", required=True
    )
    add_gate_command(catalog)
