"""The DR drill: load through the API, lose the primary, promote, return, sign.

Steady writes (a ledger of acknowledged commands) and reads go over HTTP
through the real application: a `conductor serve` process the drill starts
and stops (api.tools.dr_server), or, on request, an in-process client. Failover cuts
the replication link and kills every process of the primary; switchover hands
over gracefully. RTO runs from the loss to the first acknowledged write on the
new primary; RPO counts acknowledged commands missing from it afterwards.
Every step is recorded as a Failover event when it happens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import psycopg

from adapters.dr.evidence import EVIDENCE_TYPE, evidence_digest, sign_evidence
from adapters.dr.roles import promote, rewind_as_standby, switchover, wait_caught_up
from api.tools.dr_load import DrillOptions, Load, p95
from api.tools.dr_server import open_api
from application.autopilot.budgets import Budgets
from application.autopilot.metering import Meter
from application.dr.drills import Drills

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from adapters.dr.roles import Promotion
    from adapters.dr.site import Site
    from adapters.signing.keystore import KeyStore
    from api.settings import Settings
    from domain.dr.failover import Failover

__all__ = ["TENANT", "DrillOptions", "run_drill"]
TENANT = "drill"


def _now_ms() -> int:
    return int(time.time() * 1000)


RTO_TARGET_MS = 5000
ASYNC_RPO_TARGET_MS = 1000


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


class DrillRun:
    """One drill on a site; run() returns the signed evidence document."""

    def __init__(
        self,
        site: Site,
        settings: Settings,
        options: DrillOptions,
        out_dir: Path,
        say: Callable[[str], None],
    ) -> None:
        self.site, self.pair = site, site.pair
        self.settings = settings
        self.options = options
        self.out_dir = out_dir
        self.say = say
        self.old, self.new = self.pair.state.primary, self.pair.state.standby
        self.numbers: dict[str, Any] = {}
        self.started_at = datetime.now(UTC).isoformat()

    def run(self) -> dict[str, Any]:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request
        with open_api(
            self.settings, self.options, pair_root=self.pair.root, region=self.new
        ) as api:
            self.api = api
            self.say(api.where())
            self.drills = Drills(api.ledger)
            self.drill: Failover = self.drills.start_drill(
                mode=self.options.mode,
                sync=self.pair.state.sync,
                primary=self.old,
                standby=self.new,
            )
            headers = api.bearer(tenant=TENANT, scopes=["dr.operate"])
            self.load = Load(api.writer, api.reader, headers, self.options)
            self.load.start()
            try:
                self._baseline()
                self._lose_primary()
                self._take_over()
                time.sleep(self.options.window_s)
            finally:
                self.load.finish()
                api.stop()  # the load is over; the return needs no API
            self._measure()
            self._return()
            evidence = self._sign(api.keys)
            self._meter()
            return evidence

    def _meter(self) -> None:
        """A drill run costs its tenant units too (CONDUCTOR_PRICE_DRILL_RUN)."""
        from api.wiring.autopilot import prices  # noqa: PLC0415 - services import this module

        meter = Meter(Budgets(self.api.ledger), prices(self.settings))
        meter.charge(TENANT, "drill", meter.prices.drill_run, _now_ms())
        meter.flush(_now_ms())

    def _record(self) -> None:
        self.drills.record(self.drill)

    def _baseline(self) -> None:
        time.sleep(self.options.baseline_s)
        self.api.check()
        self.lost_at = time.monotonic()
        self.baseline = self.load.latencies(0.0, self.lost_at)
        self.drill.measure_baseline(
            reads=len(self.baseline), read_p95_ms=p95(self.baseline)
        )
        self._record()
        self.say(f"baseline: {len(self.baseline)} reads, p95 {p95(self.baseline)} ms")

    def _lose_primary(self) -> None:
        if self.options.mode == "switchover":
            self.drill.begin_switchover()
            wait_caught_up(self.pair)
            self.pair.cluster(self.old).stop("fast")
            self.dead_at = time.monotonic()
        else:
            self.site.relay.cut()
            self.pair.cluster(self.old).kill()
            self.dead_at = time.monotonic()
            _detect_loss(self.site, self.old)
            detected_ms = int((time.monotonic() - self.lost_at) * 1000)
            self.drill.lose_primary(detected_after_ms=detected_ms)
            self.say(f"primary {self.old} lost; detected after {detected_ms} ms")
        self._record()

    def _take_over(self) -> None:
        self.promotion: Promotion = promote(self.pair, self.new, self.site.relay)
        self.drill.fence(epoch=self.promotion.epoch)
        self.drill.promote(lsn=self.promotion.lsn)
        self._record()
        self.resumed_at = self.load.first_ack_after(
            self.lost_at, self.new, check=self.api.check
        )
        rto_ms = int((self.resumed_at - self.lost_at) * 1000)
        self.drill.resume_writes(rto_ms=rto_ms)
        self._record()
        self.numbers["rto_ms"] = rto_ms
        self.say(
            f"{self.new} promoted at {self.promotion.lsn}, epoch "
            f"{self.promotion.epoch}; RTO {rto_ms} ms"
        )

    def _measure(self) -> None:
        window = self.load.latencies(
            self.lost_at, self.resumed_at + self.options.window_s
        )
        with self.pair.connect(self.new) as conn:
            present = {
                row[0]
                for row in conn.execute(
                    "SELECT key FROM dr_commands WHERE tenant = %s", (TENANT,)
                )
            }
        missing = [at for key, at, _by in self.load.acks if key not in present]
        # The age of the oldest lost acknowledgement when the primary died
        # (at least 1 ms when anything was lost: an ack racing the kill).
        age = math.ceil((self.dead_at - min(missing, default=self.dead_at)) * 1000)
        self.numbers.update(
            rpo_commands=len(missing),
            rpo_ms=max(1, age) if missing else 0,
            read_p95_baseline_ms=float(p95(self.baseline)),
            read_p95_window_ms=float(p95(window)),
            reads_baseline=len(self.baseline),
            reads_window=len(window),
            read_errors_window=self.load.failed_reads(self.lost_at),
            writes_acknowledged=len(self.load.acks),
            promoted_lsn=self.promotion.lsn,
        )
        self.window = window
        self.say(
            f"RPO: {len(missing)} acknowledged command(s) missing, "
            f"{self.numbers['rpo_ms']} ms"
        )

    def _return(self) -> None:
        self.drill.start_return()
        self._record()
        started = time.monotonic()
        self.site.relay.restore()
        rewind_as_standby(self.pair, self.old)
        back = switchover(self.pair, self.old, self.site.relay)
        return_ms = int((time.monotonic() - started) * 1000)
        self.drill.restore(epoch=back.epoch, return_ms=return_ms)
        self.drill.complete(
            rpo_commands=self.numbers["rpo_commands"],
            rpo_ms=self.numbers["rpo_ms"],
            read_p95_baseline_ms=p95(self.baseline),
            read_p95_window_ms=p95(self.window),
        )
        self._record()
        self.numbers.update(return_ms=return_ms, epoch=back.epoch)
        self.say(f"returned to {self.old} in {return_ms} ms (rewind, catch-up, switch)")

    def _sign(self, keys: KeyStore) -> dict[str, Any]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        acks = self.out_dir / f"dr-acks-{self.drill.id}.jsonl"
        acks.write_text(
            "".join(
                json.dumps({"key": k, "at": round(at, 6), "region": by}) + "\n"
                for k, at, by in self.load.acks
            ),
            encoding="utf-8",
        )
        logs = {"acknowledged_commands": _sha256_file(acks)} | {
            f"postgres_{c.data_dir.parent.name}": _sha256_file(c.log_file)
            for c in self.pair.clusters()
        }
        api = self._api_evidence(logs)
        path = self.out_dir / f"dr-evidence-{self.drill.id}.json"
        document = {**self._document(path, logs), "api": api}
        signed = sign_evidence(document, keys)
        path.write_text(json.dumps(signed, indent=2), encoding="utf-8")
        signature = signed["signature"]["signatures"][0]
        self.drill.sign_evidence(
            sha256=evidence_digest(signed),
            key_id=signature["keyid"],
            signature=signature["sig"],
        )
        self._record()
        return signed

    def _api_evidence(self, logs: dict[str, str]) -> dict[str, Any]:
        """The evidence's ``api`` part; a server's log is kept (and hashed)."""
        api = self.api.describe()
        if self.api.server is not None:  # its directory goes when the drill ends
            kept = self.out_dir / f"dr-api-{self.drill.id}.log"
            shutil.copyfile(self.api.server.log_path, kept)
            logs["api_server"] = _sha256_file(kept)
            api["log"] = str(kept)
        return api

    def _document(self, path: Path, logs: dict[str, str]) -> dict[str, Any]:
        n, sync = self.numbers, self.pair.state.sync
        baseline = n["read_p95_baseline_ms"]
        bound = round(max(baseline * 1.15, baseline + 1.0), 3)
        return {
            "type": EVIDENCE_TYPE,
            "drill_id": str(self.drill.id),
            "mode": self.options.mode,
            "replication": "sync" if sync else "async",
            "link_delay_ms": self.site.relay.delay_ms,
            "write_rate": self.options.write_rate,
            "read_rate": self.options.read_rate,
            "started_at": self.started_at,
            "finished_at": datetime.now(UTC).isoformat(),
            **n,
            "read_p95_bound_ms": bound,
            "targets": {
                "rto_ms": RTO_TARGET_MS,
                "rpo_commands": 0 if sync else None,
                "rpo_ms": 0 if sync else ASYNC_RPO_TARGET_MS,
                "read_p95_bound_ms": bound,
            },
            "met": {
                "rto": n["rto_ms"] <= RTO_TARGET_MS,
                "rpo": n["rpo_commands"] == 0
                if sync
                else n["rpo_ms"] <= ASYNC_RPO_TARGET_MS,
                "read_p95": n["read_p95_window_ms"] <= bound,
            },
            "versions": self._versions(),
            "log_sha256": logs,
            "evidence_path": str(path),
        }

    def _versions(self) -> dict[str, str]:
        with self.pair.connect(self.pair.state.primary) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return {
            "postgresql": row[0] if row else "",
            "python": platform.python_version(),
            "eventsourcing": version("eventsourcing"),
            "platform": sys.platform,
        }


def _detect_loss(site: Site, region: str) -> None:
    """Health check: two failed connections in a row, 50 ms apart."""
    failures = 0
    while failures < 2:
        try:
            with psycopg.connect(site.pair.conninfo(region), connect_timeout=1):
                failures = 0
        except psycopg.OperationalError:
            failures += 1
        time.sleep(0.05)


def run_drill(
    site: Site,
    settings: Settings,
    options: DrillOptions,
    *,
    out_dir: Path,
    say: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Run one drill on site and return the signed evidence document."""
    return DrillRun(site, settings, options, out_dir, say).run()
