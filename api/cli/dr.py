"""`conductor dr up|down|status|drill`: a two-region pair on this machine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from api.settings import Settings


def _say(line: str) -> None:
    """The drill's progress lines (stderr, so --json keeps stdout clean)."""
    print(line, file=sys.stderr, flush=True)


def _root(settings: Settings, args: argparse.Namespace) -> Path:
    from api.logging import configure_logging  # noqa: PLC0415

    configure_logging(settings)  # JSON lines on stderr: stdout stays the answer
    where = getattr(args, "root", None) or settings.var_path / "dr"
    return Path(os.path.abspath(where))  # noqa: PTH100


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.dr.daemon import PASSWORD_ENV  # noqa: PLC0415
    from adapters.dr.lineage_follower import FOLLOWER_REGION, store_path  # noqa: PLC0415
    from adapters.dr.pair import RegionPair  # noqa: PLC0415
    from adapters.dr.site import create_site  # noqa: PLC0415

    root = _root(settings, args)
    if (root / "dr.json").exists():
        print(f"conductor dr up: a pair already lives in {root}", file=sys.stderr)
        return 2
    site = create_site(root, sync=args.sync, link_delay_ms=args.link_delay_ms)
    site.close(destroy=False)  # the daemon takes over the relay and heartbeat
    daemon = subprocess.Popen(  # noqa: S603 - our own module, fixed argv
        [sys.executable, "-m", "adapters.dr.daemon", str(root), *_lineage(settings)],
        env={**os.environ, PASSWORD_ENV: settings.neo4j_password},
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(root / "daemon.log").open("ab"),
    )
    pair = RegionPair.load(root)
    pair.state.daemon_pid = daemon.pid
    pair.save()
    pair.wait_streaming()
    mode = "sync" if args.sync else "async"
    print(
        f"DR pair up in {root}: A primary :{pair.state.ports['A']}, B standby "
        f":{pair.state.ports['B']} ({mode}, link delay {args.link_delay_ms} ms)"
    )
    store = settings.neo4j_uri or store_path(root, FOLLOWER_REGION)
    print(f"region {FOLLOWER_REGION} lineage follows its log into {store}")
    print(f"serve with CONDUCTOR_DR_ROOT={root} CONDUCTOR_DR_REGION=A|B")
    return 0


def _lineage(settings: Settings) -> list[str]:
    """The daemon's lineage options: region B's store in Neo4j if configured."""
    if not settings.neo4j_uri:
        return []
    return [
        f"--neo4j-uri={settings.neo4j_uri}",
        f"--neo4j-user={settings.neo4j_user}",
        f"--neo4j-database={settings.neo4j_database}",
        f"--neo4j-namespace={settings.neo4j_namespace}",
    ]


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.dr.pair import RegionPair  # noqa: PLC0415

    root = _root(settings, args)
    if not (root / "dr.json").exists():
        print(f"no DR pair in {root}")
        return 0
    pair = RegionPair.load(root)
    if pair.state.daemon_pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pair.state.daemon_pid, signal.SIGTERM)
    pair.down()
    shutil.rmtree(root)
    print(f"DR pair in {root} stopped and removed")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.dr.health import region_status  # noqa: PLC0415
    from adapters.dr.pair import REGIONS, RegionPair  # noqa: PLC0415

    root = _root(settings, args)
    if not (root / "dr.json").exists():
        print(f"no DR pair in {root} (conductor dr up)", file=sys.stderr)
        return 1
    pair = RegionPair.load(root)
    rows = [region_status(pair, region) for region in REGIONS]
    if args.json:
        print(
            json.dumps(
                {"epoch": pair.state.epoch, "regions": [asdict(r) for r in rows]}
            )
        )
        return 0
    print(f"epoch {pair.state.epoch}, {'sync' if pair.state.sync else 'async'}")
    print(
        f"{'region':<7}{'role':<9}{'lsn':<13}{'lag ms':>8}{'lag bytes':>11}{'epoch':>7}"
    )
    for r in rows:
        print(
            f"{r.region:<7}{r.role:<9}{r.lsn or '-':<13}"
            f"{'-' if r.lag_ms is None else r.lag_ms:>8}"
            f"{'-' if r.lag_bytes is None else r.lag_bytes:>11}"
            f"{'-' if r.epoch is None else r.epoch:>7}"
        )
    return 0


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def cmd_drill(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.dr.site import create_site  # noqa: PLC0415
    from api.tools.dr_drill import DrillOptions, run_drill  # noqa: PLC0415

    _root(settings, args)  # for its logging set-up
    root = settings.var_path.resolve() / f"dr-drill-{os.getpid()}-{int(time.time())}"
    root.mkdir(parents=True)
    root.chmod(0o755)
    _say(
        f"starting two regions ({'sync' if args.sync else 'async'}, "
        f"link delay {args.link_delay_ms} ms) in {root}"
    )
    # SIGTERM unwinds like Ctrl-C: the API server, the clusters and the
    # directory go too (no orphans either way).
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        site = create_site(
            root / "pair", sync=args.sync, link_delay_ms=args.link_delay_ms
        )
        try:
            options = DrillOptions(
                mode=args.mode,
                write_rate=args.write_rate,
                read_rate=args.read_rate,
                baseline_s=args.baseline_s,
                window_s=args.window_s,
                api=args.api,
            )
            evidence = run_drill(
                site,
                settings,
                options,
                out_dir=settings.var_path / "dr-evidence",
                say=_say,
            )
        finally:
            site.close(destroy=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        print(json.dumps(evidence, indent=2))
    else:
        _table(evidence)
    return 0 if all(evidence["met"].values()) else 1


def _table(e: dict[str, Any]) -> None:
    met = e["met"]
    rpo_target = "0 commands" if e["replication"] == "sync" else "<= 1000 ms"
    rows = [
        (
            "RTO (loss -> first ack write)",
            f"{e['rto_ms']} ms",
            "<= 5000 ms",
            met["rto"],
        ),
        (
            "RPO",
            f"{e['rpo_commands']} commands, {e['rpo_ms']} ms",
            rpo_target,
            met["rpo"],
        ),
        (
            "read p95 baseline",
            f"{e['read_p95_baseline_ms']} ms ({e['reads_baseline']} reads)",
            "",
            True,
        ),
        (
            "read p95 failover window",
            f"{e['read_p95_window_ms']} ms ({e['reads_window']} reads)",
            f"<= {e['read_p95_bound_ms']} ms",
            met["read_p95"],
        ),
        ("return (rewind+catch-up+switch)", f"{e['return_ms']} ms", "", True),
    ]
    print(
        f"drill {e['drill_id']}: {e['mode']}, {e['replication']}, "
        f"link delay {e['link_delay_ms']} ms"
    )
    for name, value, target, ok in rows:
        print(f"  {name:<32} {value:<28} {target:<14} {'ok' if ok else 'MISSED'}")
    print(f"evidence: {e['evidence_path']} (conductor verify {e['evidence_path']})")


def add_commands(sub: Any) -> None:
    """Register `conductor dr ...`."""
    dr = sub.add_parser("dr", help="cross-region DR pair and drills").add_subparsers(
        dest="action", required=True
    )
    up = dr.add_parser("up", help="start a primary (A) and a standby (B)")
    down = dr.add_parser("down", help="stop and remove the pair")
    status = dr.add_parser("status", help="roles, LSNs, lag, epoch")
    drill = dr.add_parser("drill", help="a measured failover or switchover drill")
    for each in (up, down, status):
        each.add_argument("--root", help="the pair's directory (default VAR/dr)")
    for each in (up, drill):
        mode = each.add_mutually_exclusive_group()
        mode.add_argument(
            "--sync",
            dest="sync",
            action="store_true",
            default=True,
            help="synchronous (remote_apply) replication: no acknowledged loss "
            "(the default)",
        )
        mode.add_argument(
            "--async",
            dest="sync",
            action="store_false",
            help="asynchronous replication: faster commits, a lossy failover",
        )
        each.add_argument(
            "--link-delay-ms",
            type=int,
            default=0,
            help="delay added to the replication link (default %(default)s)",
        )
    status.add_argument("--json", action="store_true", help="print JSON")
    drill.add_argument(
        "--mode",
        choices=["failover", "switchover"],
        default="failover",
        help="failover (kill the primary) or switchover (planned); default %(default)s",
    )
    drill.add_argument(
        "--write-rate", type=int, default=50, help="writes/s (default %(default)s)"
    )
    drill.add_argument(
        "--read-rate", type=int, default=100, help="reads/s (default %(default)s)"
    )
    drill.add_argument(
        "--baseline-s",
        type=float,
        default=3.0,
        help="load before the switch, seconds (default %(default)s)",
    )
    drill.add_argument(
        "--window-s",
        type=float,
        default=3.0,
        help="load after it, seconds (default %(default)s)",
    )
    drill.add_argument(
        "--api",
        choices=["server", "in-process"],
        default="server",
        help="the load's API: server (a `conductor serve` process, the default) "
        "or in-process",
    )
    drill.add_argument("--json", action="store_true", help="print the evidence")
    # the pair is its own store (made by `dr up`), not CONDUCTOR_VAR's
    up.set_defaults(func=cmd_up, store=False)
    down.set_defaults(func=cmd_down, store=False)
    status.set_defaults(func=cmd_status, store=False)
    drill.set_defaults(func=cmd_drill, store=False)
