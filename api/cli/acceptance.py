# ruff: noqa: FBT003 - Check(pack, name, ok, figure, target) reads as a table row
"""`conductor acceptance run`: the seed's acceptance criteria as checks with figures.

Packs (docs/evidence.md#acceptance-packs):

- ``dr``: a measured failover drill meets RTO and RPO; a read answered by a
  lagging standby carries ``x-ig-stale-read``;
- ``er``: on the bundled Febrl 4 set, ER assist's candidate recall is at
  least +10 % (relative) over single-key blocking at equal precision, and the
  merge rules' digest the evaluation recorded is the one the server applies
  (its answer to a one-record resolve);
- ``catalog``: the CI gate blocks a repository with one unregistered dataset;
  the console's search finds a registered dataset (a real chromium);
- ``export``: a governed export's proof bundle verifies, a tampered and a
  proofless copy are refused, and the gate denies an Embargoed dataset;
- ``autopilot``: a burn scenario engages shaping and cuts a cap, each an
  event in the log with its reason, under the target's controller settings.

``--throwaway`` starts a `conductor serve` on a temporary SQLite (and, for
``dr``, a throwaway region pair) and stops it; ``--url`` checks a running
Conductor with CONDUCTOR_TOKEN (the checks that must write into the server's
data root or run a local evaluation fail there, saying so). Exit 1 when any
check fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    import httpx

    from api.settings import Settings

PACKS = ("dr", "er", "catalog", "export", "autopilot")
TENANT = "acceptance"
ER_GAIN_TARGET = 0.10
PRECISION_TOLERANCE = 0.005
"""'Equal precision': assist's precision at most half a point below."""


@dataclass(frozen=True, slots=True)
class Check:
    pack: str
    name: str
    ok: bool
    figure: str
    target: str


@dataclass
class Target:
    """What the checks run against: a base URL, a token, and (throwaway) its
    variable directory and environment."""

    base: str
    token: str
    env: dict[str, str]
    var: Path | None
    scratch: Path
    settings: dict[str, str] = field(default_factory=dict)
    """The caller's --env settings: the servers a pack starts get them too."""

    def client(self) -> httpx.Client:
        import httpx  # noqa: PLC0415

        return httpx.Client(
            base_url=self.base,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "api.cli", *args],
            env={**self.env, "CONDUCTOR_TOKEN": self.token},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Throwaway:
    """A `conductor serve` on a temporary SQLite store, stopped on close."""

    def __init__(self, root: Path, extra_env: dict[str, str] | None = None) -> None:
        from api.auth import TENANT_SCOPES, issue_token  # noqa: PLC0415

        self.root = root
        self.settings = dict(extra_env or {})
        self.var = root / "var"
        (self.var / "data").mkdir(parents=True)
        secret = secrets.token_hex(32)
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")
        }
        self.env.update(
            CONDUCTOR_DATABASE_URL=f"sqlite:///{self.var / 'conductor.db'}",
            CONDUCTOR_VAR=str(self.var),
            CONDUCTOR_JWT_SECRET=secret,
            CONDUCTOR_LOG_LEVEL="warning",
            CONDUCTOR_PROJECTION_POLL_S="0.05",
            # a throwaway makes its stores (the drill's pair among them)
            CONDUCTOR_INIT="1",
            **(extra_env or {}),
        )
        self.token = issue_token(
            secret,
            tenant=TENANT,
            scopes=sorted(TENANT_SCOPES),
            sub="acceptance",
            ttl=timedelta(hours=2),
        )
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = (root / "serve.log").open("w")
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--init",
                "--port",
                str(self.port),
            ],
            env=self.env,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self._wait()

    def _wait(self, timeout: float = 60.0) -> None:
        import httpx  # noqa: PLC0415

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = f"the throwaway server exited ({self.root / 'serve.log'})"
                raise RuntimeError(msg)
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.close()
        msg = "the throwaway server did not become healthy"
        raise RuntimeError(msg)

    def target(self) -> Target:
        return Target(
            self.base, self.token, self.env, self.var, self.root, self.settings
        )

    def close(self) -> None:
        import signal  # noqa: PLC0415

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self._log.close()


# ------------------------------------------------------------------ packs


def _register(
    http: httpx.Client, name: str, **over: Any
) -> tuple[str, bool]:  # (id, ok)
    body = {
        "name": name,
        "description": "acceptance pack dataset",
        "license": "Restricted-TOS",
        "purposes": ["investigation"],
        "retention": "P1Y",
        "region": "EU",
        "contractVersion": "v1",
        "columns": [
            {"name": "email", "classification": "pii.email"},
            {"name": "amount", "classification": "public"},
        ],
        **over,
    }
    done = http.post("/v1/datasets", json=body)
    if done.status_code in {200, 201}:
        return str(done.json()["id"]), True
    return done.text[:200], False


def pack_catalog(target: Target) -> list[Check]:
    checks = []
    with target.client() as http:
        dataset_id, registered = _register(http, "acceptance_orders")
    repo = target.scratch / "gate-repo"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "conductor-datasets.yaml").write_text(
        'datasets:\n  - name: acceptance_orders\n    contractVersion: "v1"\n'
        "  - name: acceptance_unregistered_in_pr\n"
    )
    done = target.cli(
        "catalog", "gate", str(repo), "--url", target.base, "--format", "json"
    )
    try:
        found = json.loads(done.stdout)["findings"]
    except (ValueError, KeyError):
        found = None
    blocked = (
        registered
        and done.returncode == 1
        and found is not None
        and [(f["dataset"], f["rule"]) for f in found]
        == [("acceptance_unregistered_in_pr", "unregistered")]
    )
    checks.append(
        Check(
            "catalog",
            "unregistered dataset PR blocked (CI gate)",
            blocked,
            f"exit {done.returncode}, {len(found) if found is not None else '?'} "
            f"finding(s): "
            + (
                ", ".join(f"{f['dataset']} {f['rule']}" for f in found)
                if found
                else done.stderr.strip()[:160]
            ),
            "exit 1, exactly the unregistered dataset",
        )
    )
    checks.append(_ui_search(target, dataset_id if registered else None))
    return checks


def _ui_search(target: Target, dataset_id: str | None) -> Check:
    """Sign in to the console in chromium and search for the dataset."""
    name = "UI search works (console, chromium)"
    goal = "the dataset's link in the results"
    if dataset_id is None:
        return Check("catalog", name, False, "no dataset to search for", goal)
    try:
        from playwright.sync_api import Error as PlaywrightError  # noqa: PLC0415
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError as error:
        return Check("catalog", name, False, f"playwright missing: {error}", goal)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"]
            )
            try:
                page = browser.new_page()
                response = page.goto(f"{target.base}/console/sign-in")
                if response is None or response.status != 200:
                    status = response.status if response is not None else "none"
                    return Check(
                        "catalog",
                        name,
                        False,
                        f"GET /console/sign-in answered {status}",
                        goal,
                    )
                page.fill("[name=token]", target.token)
                page.click("form:has([name=token]) button[type=submit]")
                page.wait_for_load_state()
                page.goto(f"{target.base}/console/datasets?q=acceptance_orders")
                links = page.locator(f"a[data-dataset-id='{dataset_id}']")
                count = links.count()
                href = links.first.get_attribute("href") if count else None
            finally:
                browser.close()
    except PlaywrightError as error:
        first = str(error).strip().splitlines()[0][:160]
        return Check("catalog", name, False, f"browser: {first}", goal)
    ok = count >= 1 and href == f"/console/datasets/{dataset_id}"
    return Check(
        "catalog",
        name,
        ok,
        f"{count} result link(s) for the dataset, href {href}",
        goal,
    )


def _settle(
    http: httpx.Client, export_id: str, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(f"/v1/exports/{export_id}").json()
        if body.get("status") in {"proven", "failed", "denied"}:
            return body
        if time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def pack_export(target: Target) -> list[Check]:
    from adapters.audit.proof_check import verify_bundle  # noqa: PLC0415
    from domain.exports.export import PROOF_FILE  # noqa: PLC0415

    names = (
        "proof bundle verifies",
        "tampered proof bundle refused",
        "missing proof refused",
        "gate denies an Embargoed dataset",
    )
    if target.var is None:
        why = "needs --throwaway (writes a data file into the server's data root)"
        return [Check("export", n, False, why, "") for n in names]
    checks = []
    source = target.var / "data" / TENANT / "acceptance_customers.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("email,amount\nada@example.com,10\ngrace@example.com,20\n")
    with target.client() as http:
        keys = {
            k["keyid"]: k["publicKeyPem"] for k in http.get("/v1/keys").json()["keys"]
        }
        dataset_id, _ = _register(
            http, "acceptance_customers", location="acceptance_customers.csv"
        )
        request = {
            "datasetId": dataset_id,
            "preset": "tokenize_strict",
            "purpose": "investigation",
            "destinationRegion": "EU",
        }
        made = http.post("/v1/exports", json=request)
        export = _settle(http, made.json()["id"]) if made.status_code == 201 else {}
        (source.parent / "acceptance_embargoed.csv").write_text(source.read_text())
        embargoed_id, _ = _register(
            http,
            "acceptance_embargoed",
            license="Embargoed",
            location="acceptance_embargoed.csv",
        )
        denied = http.post("/v1/exports", json={**request, "datasetId": embargoed_id})
    status = export.get("status", f"request answered {made.status_code}")
    directory = target.var / "exports" / str(export.get("id", "none"))
    failures = verify_bundle(directory, keys) if status == "proven" else ["not proven"]
    checks.append(
        Check(
            "export",
            names[0],
            status == "proven" and not failures,
            f"export {status}; {len(failures)} verifier failure(s)"
            + (f": {failures[0]}" if failures else ""),
            "proven, 0 failures",
        )
    )
    tampered, proofless = target.scratch / "tampered", target.scratch / "proofless"
    for copy in (tampered, proofless):
        shutil.rmtree(copy, ignore_errors=True)
        if directory.is_dir():
            shutil.copytree(directory, copy)
    refused = []
    for copy, change in ((tampered, "edit"), (proofless, "remove")):
        data_files = (
            [p for p in copy.glob("*") if p.name != PROOF_FILE] if copy.is_dir() else []
        )
        if change == "edit" and data_files:
            data_files[0].write_bytes(data_files[0].read_bytes() + b"tampered\n")
        if change == "remove" and (copy / PROOF_FILE).exists():
            (copy / PROOF_FILE).unlink()
        lines = (
            verify_bundle(copy, keys) if copy.is_dir() and status == "proven" else []
        )
        refused.append(lines)
    checks.append(
        Check(
            "export",
            names[1],
            bool(refused[0]),
            refused[0][0] if refused[0] else "accepted (or no bundle)",
            "refused",
        )
    )
    checks.append(
        Check(
            "export",
            names[2],
            bool(refused[1]),
            refused[1][0] if refused[1] else "accepted (or no bundle)",
            "refused",
        )
    )
    body = denied.json() if denied.content else {}
    decision = body.get("decision") or {}
    reasons = decision.get("reasons") or body.get("reasons") or []
    ok = denied.status_code == 403 and "license_embargoed" in reasons
    checks.append(
        Check(
            "export",
            names[3],
            ok,
            f"HTTP {denied.status_code}, reasons {reasons}",
            "403, license_embargoed",
        )
    )
    return checks


def pack_er(target: Target) -> list[Check]:
    names = (
        "ER assist candidate recall gain at equal precision",
        "merge rules unchanged (digest)",
    )
    if target.var is None:
        why = "needs --throwaway (the evaluation runs against the local store)"
        return [Check("er", n, False, why, "") for n in names]
    done = target.cli(
        "er", "eval", "--febrl", "4", "--blocking", "exact:given_name", "--json"
    )
    try:
        report = json.loads(done.stdout)
        base, assist = report["baseline"], report["assist"]
    except (ValueError, KeyError):
        why = f"er eval failed: {done.stderr.strip()[:160]}"
        return [Check("er", n, False, why, "") for n in names]
    b, a = base["pairs_completeness"], assist["pairs_completeness"]
    gain = (a - b) / b if b else 0.0
    equal = assist["precision"] >= base["precision"] - PRECISION_TOLERANCE
    checks = [
        Check(
            "er",
            names[0],
            gain >= ER_GAIN_TARGET and equal,
            f"candidate recall {b:.4f} -> {a:.4f} ({100 * gain:+.1f} %), "
            f"precision {base['precision']:.4f} -> {assist['precision']:.4f}",
            ">= +10.0 %, precision within 0.005",
        )
    ]
    last = target.cli("er", "last-eval")
    try:
        recorded = json.loads(last.stdout)
    except ValueError as error:
        return [*checks, Check("er", names[1], False, f"cannot read: {error}", "")]
    digest = str(recorded.get("gateDigest", recorded.get("gate_digest", "")))
    in_force, why = _rules_in_force(target)
    checks.append(
        Check(
            "er",
            names[1],
            bool(in_force) and digest == in_force,
            f"recorded {digest[:12]}, in force on the server {in_force[:12]}"
            if in_force
            else why,
            "equal",
        )
    )
    return checks


def _rules_in_force(target: Target) -> tuple[str, str]:
    """(the merge rules' digest the server applies, or "" and why not).

    The server says so in every resolve answer: the pack resolves one probe
    record (in an entity set of its own; a single record makes no pair).
    """
    probe = {
        "entitySet": "acceptance-rules-probe",
        "records": [
            {"id": f"probe-{secrets.token_hex(6)}", "fields": {"given_name": "x"}}
        ],
    }
    with target.client() as http:
        answer = http.post("/v1/er/resolve", json=probe)
    if answer.status_code != 200:
        status = answer.status_code
        return "", f"the server's rules: POST /v1/er/resolve answered {status}"
    return str(answer.json().get("gateDigest", "")), ""


def pack_autopilot(target: Target) -> list[Check]:
    """The simulator's scenarios under the target's controller settings
    (CONDUCTOR_AUTOPILOT_MIN_EVENTS, _MIN_DWELL_S, _MIN_CAPACITY_SHARE)."""
    from dataclasses import replace  # noqa: PLC0415

    from adapters.ledger.store import open_ledger  # noqa: PLC0415
    from api.settings import Settings  # noqa: PLC0415
    from api.tools.autopilot_sim import SCENARIOS, simulate  # noqa: PLC0415

    settings = Settings.from_env(target.env)
    workdir = target.scratch / "autopilot"
    checks = []
    for scenario, kind, name in (
        ("burst", "ShapingEngaged", "burn triggers shaping, with its event"),
        ("slow-burn", "CapAdjusted", "burn triggers a cap reduction, with its event"),
    ):
        chosen = SCENARIOS[scenario]
        config = replace(
            chosen.config,
            min_events=settings.autopilot_min_events,
            min_dwell_s=settings.autopilot_min_dwell_s,
            min_capacity_share=settings.autopilot_min_capacity_share,
        )
        timeline = simulate(replace(chosen, config=config), workdir)
        ledger = open_ledger(f"sqlite:///{workdir / scenario}.db", pool_size=1)
        try:
            events = [
                json.loads(e.state)
                for e in ledger.entries(after=0, limit=1_000_000)
                if e.topic.endswith(f"TenantBudget.{kind}")
            ]
        finally:
            ledger.close()
        if kind == "CapAdjusted":
            events = [e for e in events if _cut(e)]
        reasons = sorted({str(e.get("reason")) for e in events})
        actions = len(timeline.actions)
        checks.append(
            Check(
                "autopilot",
                name,
                bool(events) and all(reasons),
                f"{scenario}: {len(events)} {kind} event(s), reasons "
                f"{reasons}; {actions} action(s)",
                ">= 1 event with a reason",
            )
        )
    return checks


def _cut(event: dict[str, Any]) -> bool:
    def number(value: Any) -> float | None:
        if isinstance(value, dict):
            value = value.get("_data_")
        return None if value is None else float(value)

    old, new = number(event.get("old")), number(event.get("new"))
    return new is not None and (old is None or new < old)


def pack_dr(target: Target) -> list[Check]:
    names = ("DR drill meets RTO/RPO", "x-ig-stale-read on a stale read")
    if target.var is None:
        why = "needs --throwaway (starts a throwaway region pair)"
        return [Check("dr", n, False, why, "") for n in names]
    done = target.cli(
        "dr", "drill", "--json", "--baseline-s", "2", "--window-s", "4", timeout=900
    )
    try:
        evidence = json.loads(done.stdout)
        met = evidence["met"]
        figure = (
            f"RTO {evidence['rto_ms']} ms, RPO {evidence['rpo_commands']} "
            f"commands / {evidence['rpo_ms']} ms ({evidence['replication']})"
        )
        ok = bool(met["rto"] and met["rpo"])
    except (ValueError, KeyError):
        figure, ok = f"drill failed: {done.stderr.strip()[-160:]}", False
    checks = [Check("dr", names[0], ok, figure, "RTO <= 5000 ms, RPO 0 commands")]
    checks.append(_stale_read(target))
    return checks


def _stale_read(target: Target) -> Check:
    """A lagging standby's answer carries x-ig-stale-read (and its region)."""
    name, goal = "x-ig-stale-read on a stale read", "header present, > 0 ms"
    assert target.var is not None
    root = target.scratch / "dr-pair"
    up = target.cli(
        "dr",
        "up",
        "--async",
        # a slow link, not a broken one: libpq's connect_timeout (2 s)
        # covers a TLS handshake of several delayed round trips
        "--link-delay-ms",
        "50",
        "--root",
        str(root),
        timeout=300,
    )
    if up.returncode != 0:
        return Check(
            "dr", name, False, f"dr up failed: {up.stderr.strip()[-160:]}", goal
        )
    try:
        server = Throwaway(
            target.scratch / "dr-api",
            {
                **target.settings,
                "CONDUCTOR_DR_ROOT": str(root),
                "CONDUCTOR_DR_REGION": "A",
            },
        )
        try:
            import httpx  # noqa: PLC0415

            with httpx.Client(
                base_url=server.base,
                timeout=30,
                headers={"Authorization": f"Bearer {_dr_token(server)}"},
            ) as http:
                wrote = http.post(
                    "/v1/dr/commands", json={"key": "acceptance-1", "payload": {"n": 1}}
                )
                if wrote.status_code >= 300:
                    why = f"the write was refused: HTTP {wrote.status_code}"
                    return Check("dr", name, False, why, goal)
                # staleness is the standby's heartbeat age past its period:
                # between 0 and the link delay, so read until it shows
                deadline = time.monotonic() + 15
                while True:
                    read = http.get(
                        "/v1/dr/commands/acceptance-1",
                        headers={"x-ig-read-from": "secondary"},
                    )
                    if read.status_code == 200 and "x-ig-stale-read" in read.headers:
                        break
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
        finally:
            server.close()
    finally:
        target.cli("dr", "down", "--root", str(root), timeout=300)
    stale = read.headers.get("x-ig-stale-read")
    region = read.headers.get("x-ig-read-region")
    ok = read.status_code == 200 and stale is not None and int(stale) > 0
    return Check(
        "dr",
        name,
        ok,
        f"HTTP {read.status_code}, x-ig-stale-read {stale}, region {region}",
        goal,
    )


def _dr_token(server: Throwaway) -> str:
    from api.auth import SCOPES, issue_token  # noqa: PLC0415

    return issue_token(
        server.env["CONDUCTOR_JWT_SECRET"],
        tenant=TENANT,
        scopes=sorted(SCOPES),
        sub="acceptance",
        ttl=timedelta(hours=1),
        operator=True,
    )


RUNNERS: dict[str, Callable[[Target], list[Check]]] = {
    "dr": pack_dr,
    "er": pack_er,
    "catalog": pack_catalog,
    "export": pack_export,
    "autopilot": pack_autopilot,
}


def run_packs(target: Target, packs: list[str]) -> list[Check]:
    checks: list[Check] = []
    for pack in packs:
        try:
            checks += RUNNERS[pack](target)
        except Exception as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            checks.append(Check(pack, "pack ran", False, f"error: {first[:200]}", ""))
    return checks


def _table(checks: list[Check]) -> str:
    lines = [f"{'pack':<10} {'check':<52} {'result':<6} figure (target)"]
    for c in checks:
        target = f" ({c.target})" if c.target else ""
        verdict = "PASS" if c.ok else "FAIL"
        lines.append(f"{c.pack:<10} {c.name:<52} {verdict:<6} {c.figure}{target}")
    passed = sum(c.ok for c in checks)
    lines.append(f"{passed} of {len(checks)} checks pass")
    return "\n".join(lines)


def cmd_acceptance(settings: Settings, args: argparse.Namespace) -> int:
    import structlog  # noqa: PLC0415

    del settings
    # The in-process parts (the autopilot's controller) log: warnings only,
    # on stderr (stdout is the table or the JSON).
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(30),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    packs = [args.pack] if args.pack else list(PACKS)
    with tempfile.TemporaryDirectory(prefix="conductor-acceptance-") as tmp:
        root = Path(tmp)
        if args.url:
            token = os.environ.get("CONDUCTOR_TOKEN", "")
            if not token:
                print(
                    "conductor acceptance run: --url needs CONDUCTOR_TOKEN",
                    file=sys.stderr,
                )
                return 2
            env = {**os.environ}
            var = Path(args.var) if args.var else None
            if var is not None:
                env["CONDUCTOR_VAR"] = str(var)
            target = Target(args.url.rstrip("/"), token, env, var, root)
            checks = run_packs(target, packs)
        else:
            server = Throwaway(root / "conductor", _policy_env(args))
            try:
                checks = run_packs(server.target(), packs)
            finally:
                server.close()
    if args.json:
        print(
            json.dumps(
                {
                    "checks": [asdict(c) for c in checks],
                    "ok": all(c.ok for c in checks),
                },
                indent=2,
            )
        )
    else:
        print(_table(checks))
    return 0 if checks and all(c.ok for c in checks) else 1


def _policy_env(args: argparse.Namespace) -> dict[str, str]:
    """Settings the throwaway server is started with (--env KEY=VALUE)."""
    pairs = [item.split("=", 1) for item in args.env or []]
    return {k: v for k, v in pairs if k.startswith("CONDUCTOR_")}


def add_commands(sub: Any) -> None:
    """`conductor acceptance run`."""
    run = (
        sub.add_parser("acceptance", help="the seed's acceptance packs")
        .add_subparsers(dest="action", required=True)
        .add_parser("run", help="run the packs' checks; exit 1 if any fails")
    )
    run.add_argument(
        "--pack",
        choices=PACKS,
        help=f"one pack of {', '.join(PACKS)} (default: all)",
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument("--url", help="a running Conductor (token in CONDUCTOR_TOKEN)")
    where.add_argument(
        "--throwaway",
        action="store_true",
        help="start a temporary Conductor (and DR pair) and stop it (the default)",
    )
    run.add_argument(
        "--var",
        help="with --url: the server's CONDUCTOR_VAR, when it runs on this machine "
        "(the export, ER and DR packs need it)",
    )
    run.add_argument(
        "--env",
        action="append",
        metavar="CONDUCTOR_KEY=VALUE",
        help="with --throwaway: a setting for the temporary servers (the DR "
        "pack's API too; repeatable)",
    )
    run.add_argument("--json", action="store_true", help="print the results as JSON")
    run.set_defaults(func=cmd_acceptance, store=False)
