"""The `conductor` command: serve, issue tokens, verify the log, manage projections."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from typing import TYPE_CHECKING

import msgspec

from api.auth import OPERATOR_SCOPES, SCOPES, TENANT_SCOPES, issue_token
from api.cli.audit import add_commands
from api.cli.autopilot import add_commands as add_autopilot_commands
from api.cli.dr import add_commands as add_dr_commands
from api.cli.er import add_commands as add_er_commands
from api.cli.progress import Progress
from api.cli.switches import add_commands as add_switch_commands
from api.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Sequence

DEMO_TENANT = "demo"


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not match:
        msg = f"invalid duration {text!r} (e.g. 3600, 90m, 12h, 7d)"
        raise argparse.ArgumentTypeError(msg)
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return timedelta(seconds=int(match.group(1)) * unit)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - only the server needs it

    from api.app import create_app  # noqa: PLC0415
    from api.bootstrap import build_conductor  # noqa: PLC0415
    from api.runtime.dr import ledger_label  # noqa: PLC0415

    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    base = f"http://{host}:{port}"
    print(f"Conductor on {base}  (database: {ledger_label(settings)})")
    print(f"OpenAPI:     {base}/schema  (Swagger UI: {base}/schema/swagger)")
    if args.demo_token:
        # Only on request (scripts/run asks): a bearer token is a secret, and
        # a server's output usually ends up in a log collector.
        token = issue_token(
            settings.resolved_jwt_secret(),
            tenant=DEMO_TENANT,
            scopes=sorted(TENANT_SCOPES),
            sub="demo",
            ttl=timedelta(hours=12),
        )
        print(f"Demo token (tenant '{DEMO_TENANT}', every tenant scope, 12 h):")
        print(f"  export TOKEN={token}")
        print(f'  curl -H "Authorization: Bearer $TOKEN" {base}/v1/datasets')
    sys.stdout.flush()
    if workers <= 1:
        app = create_app(settings)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
        return 0
    # Several API processes share the load; one process keeps the projections.
    # Create the schema here first: concurrent CREATE TABLE IF NOT EXISTS from
    # several processes can collide in PostgreSQL's catalog.
    build_conductor(settings).close()
    projector = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "project"], env=dict(os.environ)
    )
    os.environ["CONDUCTOR_PROJECTIONS"] = "false"
    try:
        uvicorn.run(
            "api.app:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
        )
    finally:
        projector.send_signal(signal.SIGTERM)
        projector.wait(timeout=30)
    return 0


def cmd_project(settings: Settings, _: argparse.Namespace) -> int:
    """Keep every projection caught up until SIGTERM/SIGINT (no HTTP)."""
    from api.bootstrap import build_conductor  # noqa: PLC0415
    from api.logging import configure_logging  # noqa: PLC0415

    configure_logging(settings)
    # Commits happen in other processes, so nothing wakes the runners: poll.
    services = build_conductor(
        msgspec.structs.replace(
            settings, projections=True, projection_poll_s=settings.projector_poll_s
        )
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    services.start()
    try:
        stop.wait()
    finally:
        services.close()
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    try:
        token = issue_token(
            settings.resolved_jwt_secret(),
            tenant=args.tenant,
            scopes=args.scope,
            sub=args.sub,
            ttl=args.ttl,
            operator=args.operator,
        )
    except ValueError as error:
        print(f"conductor token issue: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_log_verify(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.ledger.verify import verify_chain  # noqa: PLC0415
    from api.logging import configure_logging  # noqa: PLC0415
    from api.runtime.dr import api_ledger  # noqa: PLC0415 - the pair, or the URL

    configure_logging(settings)  # log lines (the pair's) to stderr, not the output
    ledger = api_ledger(settings, pool_size=2)
    try:
        total = ledger.head().events
        progress = Progress("verified", total)
        report = verify_chain(
            ledger.chained,
            start=args.start,
            progress=lambda done, _pos: progress.update(done),
        )
        if total > 50_000:
            progress.finish(report.checked)
    finally:
        ledger.close()
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "seconds": round(report.seconds, 4),
                    "eventsPerSecond": round(report.rate),
                    "brokenAt": report.broken_at,
                    "reason": report.reason or None,
                    "headPosition": report.head_position,
                    "headHash": report.head_hash,
                }
            )
        )
    elif report.ok:
        print(
            f"ok: {report.checked:,} events checked in {report.seconds:.3f}s "
            f"({report.rate:,.0f} events/s); head position {report.head_position} "
            f"hash {report.head_hash}"
        )
    else:
        print(
            f"broken at position {report.broken_at}: {report.reason} "
            f"({report.checked:,} events verified before it)"
        )
    return 0 if report.ok else 1


def cmd_projections(settings: Settings, args: argparse.Namespace) -> int:
    from api.bootstrap import build_conductor  # noqa: PLC0415

    services = build_conductor(settings)
    try:
        if args.action == "status":
            print(f"{'projection':<12} {'position':>10} {'head':>10} {'lag':>8}  error")
            for each in services.core.runners.values():
                s = each.status()
                print(
                    f"{s.name:<12} {s.position:>10} {s.head:>10} {s.lag:>8}  {s.error}"
                )
            return 0
        runner = services.core.runners.get(args.name)
        if runner is None:
            names = ", ".join(sorted(services.core.runners))
            print(f"unknown projection {args.name!r}; known: {names}", file=sys.stderr)
            return 2
        head = services.core.ledger.recorder.max_notification_id() or 0
        runner.projection.view.reset()
        progress = Progress(f"rebuilding {runner.name}", head)
        read = runner.catch_up(progress=lambda done, _pos: progress.update(done))
        progress.finish(read)
        print(f"rebuilt {runner.name}: {read:,} events, position {runner.position()}")
        return 0
    finally:
        services.close()


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="conductor", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API with its projection workers")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers", type=int, help="API processes (default 1: one process does all)"
    )
    serve.add_argument(
        "--demo-token",
        action="store_true",
        help=f"print a 12 h token for tenant '{DEMO_TENANT}' (scripts/run does)",
    )
    serve.set_defaults(func=cmd_serve)

    project = sub.add_parser("project", help="run the projection workers only")
    project.set_defaults(func=cmd_project)

    token = (
        sub.add_parser("token", help="issue JWTs")
        .add_subparsers(dest="action", required=True)
        .add_parser("issue", help="print a signed token for a tenant")
    )
    token.add_argument("--tenant", required=True)
    token.add_argument(
        "--scope",
        action="append",
        required=True,
        help=f"repeatable; one of {', '.join(sorted(SCOPES))}",
    )
    token.add_argument(
        "--ttl",
        type=_duration,
        default=timedelta(hours=1),
        help="lifetime (seconds, or 90m, 12h, 7d); default 1h",
    )
    token.add_argument("--sub", default="cli", help="the token's subject")
    token.add_argument(
        "--operator",
        action="store_true",
        help="allow the operator scopes "
        f"({', '.join(sorted(OPERATOR_SCOPES))}), which reach every tenant",
    )
    token.set_defaults(func=cmd_token)

    verify = (
        sub.add_parser("log", help="the event log")
        .add_subparsers(dest="action", required=True)
        .add_parser("verify", help="walk the hash chain")
    )
    verify.add_argument(
        "--from",
        dest="start",
        type=int,
        default=1,
        help="first position to check (default 1)",
    )
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_log_verify)

    proj = sub.add_parser("projections", help="read models").add_subparsers(
        dest="action", required=True
    )
    proj.add_parser("status", help="positions and lag").set_defaults(
        func=cmd_projections
    )
    rebuild = proj.add_parser("rebuild", help="drop a read model and replay the log")
    rebuild.add_argument("name")
    rebuild.set_defaults(func=cmd_projections)
    add_commands(sub)
    add_er_commands(sub)
    add_dr_commands(sub)
    add_autopilot_commands(sub)
    add_switch_commands(sub)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as error:
        print(f"conductor: {error}", file=sys.stderr)
        return 2
    return int(args.func(settings, args))


if __name__ == "__main__":
    raise SystemExit(main())
