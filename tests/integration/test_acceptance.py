"""`conductor acceptance run`: each pack passes on a throwaway instance and
fails when its precondition is broken on purpose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from api.settings import Settings
from tests.conftest import REPO_ROOT, bearer, dataset_body
from tests.integration.server import Server

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def acceptance(
    *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "acceptance", "run", "--json", *args],
        env={**base, **(env or {})},
        timeout=900,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result["checks"]}


def test_catalog_pack_passes_with_the_gate_and_the_console_search() -> None:
    code, result = acceptance("--pack", "catalog", "--throwaway")
    checks = by_name(result)
    assert code == 0, result
    gate = checks["unregistered dataset PR blocked (CI gate)"]
    assert gate["ok"]
    assert "acceptance_unregistered_in_pr unregistered" in gate["figure"]
    ui = checks["UI search works (console, chromium)"]
    assert ui["ok"]
    assert "1 result link(s)" in ui["figure"]


def test_dr_pack_passes_with_a_measured_drill_and_a_stale_read() -> None:
    """A real pair: the drill's RTO/RPO, and a lagging standby saying so."""
    code, result = acceptance("--pack", "dr", "--throwaway")
    checks = by_name(result)
    assert code == 0, result
    drill = checks["DR drill meets RTO/RPO"]
    assert drill["ok"]
    assert "RPO 0 commands" in drill["figure"]
    rto_ms = int(drill["figure"].split("RTO ")[1].split(" ms")[0])
    assert 0 < rto_ms <= 5000
    stale = checks["x-ig-stale-read on a stale read"]
    assert stale["ok"]
    assert "HTTP 200" in stale["figure"]
    assert "region B" in stale["figure"]


def test_dr_pack_fails_when_stale_reads_are_never_served() -> None:
    """Broken on purpose: with a stale-read TTL of 0 ms a standby that lags at
    all is not read (the primary answers), so no answer says it is stale."""
    code, result = acceptance(
        "--pack", "dr", "--throwaway", "--env", "CONDUCTOR_STALE_READ_TTL_MS=0"
    )
    assert code == 1, result
    checks = by_name(result)
    stale = checks["x-ig-stale-read on a stale read"]
    assert not stale["ok"], stale
    assert "x-ig-stale-read None" in stale["figure"], stale
    assert checks["DR drill meets RTO/RPO"]["ok"]  # only the broken part fails


def test_export_pack_passes_on_a_throwaway() -> None:
    code, result = acceptance("--pack", "export", "--throwaway")
    assert code == 0, result
    assert all(c["ok"] for c in result["checks"])
    figure = by_name(result)["gate denies an Embargoed dataset"]["figure"]
    assert "license_embargoed" in figure


def test_export_pack_fails_when_the_gate_denies_every_export(tmp_path: Path) -> None:
    """Broken on purpose: the tenant's export gate is replaced by a policy
    that refuses everything, so no proof bundle can verify."""
    url = f"sqlite:///{tmp_path / 'var' / 'conductor.db'}"
    source = (
        "package conductor.export\nimport rego.v1\n"
        'decision := {"allow": false, "deny": ["acceptance_broken"]}\n'
    )
    with (tmp_path / "serve.log").open("w") as log:
        server = Server(url, tmp_path / "var", log, args=("--init",))
        try:
            published = httpx.post(
                f"{server.base}/v1/policies",
                json={"name": "export",
                      "modules": [{"name": "deny.rego", "source": source}]},
                headers=bearer("acceptance"),
                timeout=30,
            )  # fmt: skip
            assert published.status_code == 201, published.text
            token = bearer("acceptance")["Authorization"][7:]
            code, result = acceptance(
                "--pack", "export", "--url", server.base, "--var",
                str(tmp_path / "var"), env={"CONDUCTOR_TOKEN": token},
            )  # fmt: skip
        finally:
            server.stop()
    assert code == 1
    proof = by_name(result)["proof bundle verifies"]
    assert not proof["ok"]
    assert "request answered 403" in proof["figure"]  # the gate denied it
    assert by_name(result)["gate denies an Embargoed dataset"]["ok"]


def test_catalog_pack_fails_when_the_fixtures_unregistered_dataset_is_registered(
    tmp_path: Path,
) -> None:
    """Broken on purpose: the dataset the fixture repository must be blocked
    for is registered on the server, so the gate lets the PR through."""
    url = f"sqlite:///{tmp_path / 'var' / 'conductor.db'}"
    with (tmp_path / "serve.log").open("w") as log:
        server = Server(url, tmp_path / "var", log, args=("--init",))
        try:
            registered = httpx.post(
                f"{server.base}/v1/datasets",
                json=dataset_body("acceptance_unregistered_in_pr"),
                headers=bearer("acceptance", "catalog.write"),
                timeout=30,
            )
            assert registered.status_code == 201, registered.text
            token = bearer("acceptance")["Authorization"][7:]
            code, result = acceptance(
                "--pack", "catalog", "--url", server.base,
                env={"CONDUCTOR_TOKEN": token},
            )  # fmt: skip
        finally:
            server.stop()
    assert code == 1
    gate = by_name(result)["unregistered dataset PR blocked (CI gate)"]
    assert not gate["ok"]
    assert gate["figure"].startswith("exit 0, 0 finding(s)"), gate
    assert by_name(result)["UI search works (console, chromium)"]["ok"]


def test_er_pack_passes_with_the_seed_gain_and_the_rules_in_force() -> None:
    code, result = acceptance("--pack", "er", "--throwaway")
    assert code == 0, result
    gain = by_name(result)["ER assist candidate recall gain at equal precision"]
    assert "+52.1 %" in gain["figure"]
    assert by_name(result)["merge rules unchanged (digest)"]["ok"]


def test_er_pack_fails_when_the_server_applies_other_merge_rules(
    tmp_path: Path,
) -> None:
    """Broken on purpose: the server merges at a looser threshold than the
    rules the evaluation ran with, so its digest is not the one in force."""
    from application.er.rules import Gate  # noqa: PLC0415

    defaults = Settings()
    looser = defaults.er_merge_at - 1.0
    changed = Gate.parse(defaults.er_comparisons, looser).digest
    evaluated = Gate.parse(defaults.er_comparisons, defaults.er_merge_at).digest
    url = f"sqlite:///{tmp_path / 'var' / 'conductor.db'}"
    with (tmp_path / "serve.log").open("w") as log:
        server = Server(
            url, tmp_path / "var", log, args=("--init",),
            env={"CONDUCTOR_ER_MERGE_AT": str(looser)},
        )  # fmt: skip
        try:
            token = bearer("acceptance")["Authorization"][7:]
            code, result = acceptance(
                "--pack", "er", "--url", server.base, "--var",
                str(tmp_path / "var"), env={"CONDUCTOR_TOKEN": token},
            )  # fmt: skip
        finally:
            server.stop()
    assert code == 1
    assert by_name(result)["ER assist candidate recall gain at equal precision"]["ok"]
    rules = by_name(result)["merge rules unchanged (digest)"]
    assert not rules["ok"]
    assert rules["figure"] == (
        f"recorded {evaluated[:12]}, in force on the server {changed[:12]}"
    )


def test_autopilot_pack_fails_when_no_burn_window_can_page() -> None:
    """Broken on purpose: the instance's controller needs more served
    requests in a burn window than any scenario serves, so no SLO burn pages
    and nothing is shaped."""
    code, result = acceptance(
        "--pack", "autopilot", "--throwaway",
        "--env", "CONDUCTOR_AUTOPILOT_MIN_EVENTS=1000000000",
    )  # fmt: skip
    assert code == 1
    shaping = by_name(result)["burn triggers shaping, with its event"]
    assert not shaping["ok"]
    assert "burst: 0 ShapingEngaged event(s)" in shaping["figure"]


def test_autopilot_pack_passes_with_shaping_and_a_cap_cut() -> None:
    code, result = acceptance("--pack", "autopilot", "--throwaway")
    assert code == 0, result
    figures = [c["figure"] for c in result["checks"]]
    assert any("ShapingEngaged" in f for f in figures)
    assert any("CapAdjusted" in f for f in figures)


def test_url_mode_without_a_token_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "acceptance", "run", "--url",
         "http://127.0.0.1:9"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 2
    assert "CONDUCTOR_TOKEN" in done.stderr
