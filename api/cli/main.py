"""The `conductor` command: serve, issue tokens, verify the log, manage projections."""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import msgspec

from api.auth import OPERATOR_SCOPES, SCOPES, TENANT_SCOPES, issue_token
from api.cli.acceptance import add_commands as add_acceptance_commands
from api.cli.audit import add_commands
from api.cli.autopilot import add_commands as add_autopilot_commands
from api.cli.dr import add_commands as add_dr_commands
from api.cli.er import add_commands as add_er_commands
from api.cli.evidence import add_commands as add_evidence_commands
from api.cli.gate import add_commands as add_catalog_commands
from api.cli.progress import Progress
from api.cli.store import UserError, require_secret, require_store
from api.cli.switches import add_commands as add_switch_commands
from api.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

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
    from api.logging import configure_logging  # noqa: PLC0415
    from api.runtime.dr import ledger_label  # noqa: PLC0415

    configure_logging(settings)  # uvicorn's supervisor logs through it too

    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    _check_port(host, port)
    say = _banner(settings)
    base = f"http://{host}:{port}"
    say(f"Conductor on {base}  (database: {ledger_label(settings)})")
    say(f"OpenAPI:     {base}/schema  (Swagger UI: {base}/schema/swagger)")
    say(f"Console:     {base}/console/sign-in")
    if args.demo_token:
        # Only on request (scripts/run asks): a bearer token is a secret, and
        # a server's output usually ends up in a log collector.
        token = issue_token(
            settings.resolved_jwt_secret(),  # the server's: it makes one if new
            tenant=DEMO_TENANT,
            scopes=sorted(TENANT_SCOPES),
            sub="demo",
            ttl=timedelta(hours=12),
        )
        say(f"Demo token (tenant '{DEMO_TENANT}', every tenant scope, 12 h):")
        say(f"  export TOKEN={token}")
        say(f'  curl -H "Authorization: Bearer $TOKEN" {base}/v1/datasets')
        # The fragment stays in the browser: the sign-in page's script fills
        # the form from it, so the token reaches no request line or access log.
        say(f"Console link (signs in as '{DEMO_TENANT}'):")
        say(f"  {base}/console/sign-in#token={token}")
    sys.stdout.flush()
    if workers <= 1:
        app = create_app(settings)
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            log_config=None,  # uvicorn's loggers reach structlog's root handler
        )
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
            log_config=None,
        )
    finally:
        projector.send_signal(signal.SIGTERM)
        projector.wait(timeout=30)
    return 0


def _banner(settings: Settings) -> Callable[[str], None]:
    """The start-up banner: plain lines on a terminal, else JSON log lines
    (the output of a server usually goes to a log collector)."""
    if settings.log_format == "console" or sys.stdout.isatty():
        return print

    def say(line: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as structlog
        line = line.strip()
        print(
            json.dumps(
                {"event": "banner", "level": "info", "timestamp": stamp, "line": line}
            )
        )

    return say


def _check_port(host: str, port: int) -> None:
    """Fail before the banner (and its token) when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                msg = f"cannot listen on {host}:{port}: {error.strerror}"
                raise UserError(msg) from None
            msg = (
                f"port {port} on {host} is already in use (another conductor?); "
                f"stop it, or choose another port: --port {port + 1}"
            )
            raise UserError(msg) from None


def cmd_init(settings: Settings, _: argparse.Namespace) -> int:
    """Create the store (the log's tables), the JWT secret and the data root."""
    from api.bootstrap import build_conductor  # noqa: PLC0415
    from api.cli.store import store_exists, where  # noqa: PLC0415
    from api.logging import configure_logging  # noqa: PLC0415

    configure_logging(settings)
    existed = store_exists(settings)
    settings.data_root_path.mkdir(parents=True, exist_ok=True)
    build_conductor(msgspec.structs.replace(settings, init=True)).close()
    settings.resolved_jwt_secret()  # made once into var/jwt-secret, unless set
    state = "already initialised" if existed else "initialised a new store"
    print(f"{state}: {where(settings)}")
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
            require_secret(settings),
            tenant=args.tenant,
            scopes=args.scope,
            sub=args.sub,
            ttl=args.ttl,
            operator=args.operator,
            regions=args.region,
            purposes=args.purpose,
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
        progress = Progress("verified", total, unit="events")
        report = verify_chain(
            ledger.chained,
            start=args.start,
            progress=lambda done, _pos: progress.update(done),
        )
        progress.finish(report.checked)
    finally:
        ledger.close()
    if report.checked == 0 and not args.allow_empty:
        from api.cli.store import where  # noqa: PLC0415

        print(
            f"conductor log verify: the log at {where(settings)} is empty "
            "(0 events): wrong store? --allow-empty accepts an empty log",
            file=sys.stderr,
        )
        return 1
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
        progress = Progress(f"rebuilding {runner.name}", head, unit="events")
        read = runner.catch_up(progress=lambda done, _pos: progress.update(done))
        progress.finish(read)
        print(f"rebuilt {runner.name}: {read:,} events, position {runner.position()}")
        return 0
    finally:
        services.close()


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="conductor", description=__doc__)
    root.add_argument("--version", action="version", version=f"conductor {_version()}")
    sub = root.add_subparsers(dest="command", required=True)

    init = sub.add_parser(
        "init",
        help="create the store at CONDUCTOR_VAR / CONDUCTOR_DATABASE_URL "
        "(and the JWT secret); idempotent",
    )
    init.set_defaults(func=cmd_init, store=False)

    serve = sub.add_parser("serve", help="run the API with its projection workers")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument(
        "--init",
        action="store_true",
        help="create the store if it is missing (default: refuse, naming the path)",
    )
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
    token.add_argument("--tenant", required=True, help="the tenant the token acts for")
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
    token.add_argument(
        "--sub", default="cli", help="the token's subject (default %(default)s)"
    )
    token.add_argument(
        "--operator",
        action="store_true",
        help="allow the operator scopes "
        f"({', '.join(sorted(OPERATOR_SCOPES))}), which reach every tenant",
    )
    for claim in ("region", "purpose"):
        token.add_argument(
            f"--{claim}",
            action="append",
            help=f"repeatable ABAC claim: limit the token to these {claim}s "
            "(docs/graphql.md#abac); default: not limited",
        )
    token.set_defaults(func=cmd_token, store=False)

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
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.add_argument(
        "--allow-empty",
        action="store_true",
        help="exit 0 on an empty log (default: an empty log is an error)",
    )
    verify.set_defaults(func=cmd_log_verify)

    proj = sub.add_parser("projections", help="read models").add_subparsers(
        dest="action", required=True
    )
    proj.add_parser("status", help="positions and lag").set_defaults(
        func=cmd_projections
    )
    rebuild = proj.add_parser("rebuild", help="drop a read model and replay the log")
    rebuild.add_argument(
        "name", help="the read model (see `conductor projections status`)"
    )
    rebuild.set_defaults(func=cmd_projections)
    add_commands(sub)
    add_er_commands(sub)
    add_dr_commands(sub)
    add_autopilot_commands(sub)
    add_switch_commands(sub)
    add_catalog_commands(sub)
    add_evidence_commands(sub)
    add_acceptance_commands(sub)
    return root


def _version() -> str:
    try:
        return version("conductor")
    except PackageNotFoundError:  # run from a checkout without installing
        return "unknown"


def _needs_store(args: argparse.Namespace) -> bool:
    """Commands open the store unless they say otherwise (store=False, or a
    callable of the arguments)."""
    needs = getattr(args, "store", True)
    return bool(needs(args) if callable(needs) else needs)


def _user_error(error: BaseException) -> str | None:
    """One line for a mistake the user can fix, or None (a bug: traceback)."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.strerror or error}: {error.filename}"
    if isinstance(error, sqlite3.OperationalError):
        return f"SQLite: {error}"
    if (
        type(error).__module__.startswith("psycopg")
        and "Operational" in type(error).__name__
    ):
        return f"PostgreSQL: {str(error).strip().splitlines()[0]}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as error:
        print(f"conductor: {error}", file=sys.stderr)
        return 2
    if getattr(args, "init", False):
        settings = msgspec.structs.replace(settings, init=True)
    try:
        if _needs_store(args):
            require_store(settings)
        return int(args.func(settings, args))
    except Exception as error:
        line = _user_error(error)
        if line is None:
            raise
        name = " ".join(filter(None, (args.command, getattr(args, "action", None))))
        print(f"conductor {name}: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
