"""`conductor er eval` and `conductor er embed`, run as real processes."""

from __future__ import annotations

import csv
import json
from typing import TYPE_CHECKING

import pytest
from prometheus_client import generate_latest

from adapters.er.files import labelled_sha256
from adapters.ledger.store import open_ledger
from api.metrics import Metrics
from application.er.evaluations import ErEvaluations
from tests.integration.server import cli
from tests.unit.test_er_eval import TINY, TINY_LINKS

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'conductor.db'}"


def write_tiny(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    records, links = folder / "people.csv", folder / "links.csv"
    fields = list(TINY[0][1])
    with records.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["rec_id", *fields])
        out.writerows([rid, *(r[f] for f in fields)] for rid, r in TINY)
    with links.open("w", newline="") as handle:
        csv.writer(handle).writerows([("id_a", "id_b"), *TINY_LINKS])
    return records, links


def test_eval_json_has_the_documented_shape_and_the_exact_numbers(
    sqlite_url: str, tmp_path: Path
) -> None:
    """--json prints baseline/assist/recovered_share; the run is an event in the
    log (the gauges and the guard read it), which audit replay shows."""
    records, links = write_tiny(tmp_path / "set")
    done = cli(
        sqlite_url, tmp_path / "var", "er", "eval", "--records", str(records),
        "--links", str(links), "--blocking", "exact:postcode", "--k", "5", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert list(report) == ["baseline", "assist", "recovered_share"]
    keys = ["pairs", "pairs_completeness", "reduction_ratio", "pair_quality",
            "precision", "recall", "f1"]  # fmt: skip
    assert list(report["baseline"]) == keys
    assert list(report["assist"]) == keys
    assert report["baseline"]["pairs_completeness"] == 0.5
    assert report["assist"]["pairs_completeness"] == 1.0
    assert report["recovered_share"] == 1.0

    assert "recorded as ErEvaluation.Evaluated at log position" in done.stderr
    ledger = open_ledger(sqlite_url, pool_size=1)
    try:
        metrics = Metrics()
        metrics.watch_er_eval(ErEvaluations(ledger).latest)
        scraped = generate_latest(metrics.registry)
    finally:
        ledger.close()
    assert b"conductor_er_recall_gain 1.0" in scraped  # 0.5 -> 1.0: +100 %
    assert b"conductor_er_recall_delta 0.5" in scraped
    assert not (tmp_path / "var" / "er" / "last-eval.json").exists()
    last = cli(sqlite_url, tmp_path / "var", "er", "last-eval")
    assert last.returncode == 0, last.stderr
    assert json.loads(last.stdout)["recallGain"] == 1.0

    log = tmp_path / "log.jsonl"
    exported = cli(
        sqlite_url, tmp_path / "var", "audit", "export-log", "--out", str(log)
    )
    assert exported.returncode == 0, exported.stderr
    replayed = cli(
        sqlite_url, tmp_path / "var", "audit", "replay", "--log", str(log), "--all",
        "--json",
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    [evaluations] = [json.loads(line) for line in replayed.stdout.splitlines()]
    [evaluation] = evaluations["erEvaluations"]
    digest = labelled_sha256([records, links])
    assert evaluation["labelledSha256"] == digest
    assert evaluation["position"] > 0
    assert evaluation["baseline"]["candidateRecall"] == 0.5
    assert evaluation["assist"]["candidateRecall"] == 1.0
    assert (evaluation["recallGain"], evaluation["recallDelta"]) == (1.0, 0.5)
    assert (evaluation["baseline"]["pairs"], evaluation["assist"]["pairs"]) == (6, 15)
    assert evaluation["consistent"]
    assert evaluation["meetsTarget"]
    text = cli(
        sqlite_url, tmp_path / "var", "audit", "replay", "--log", str(log), "--all"
    ).stdout
    assert "ER evaluations: 1" in text
    assert f"sha256 {digest[:12]}" in text
    assert "candidate recall 0.5000 -> 1.0000 (gain +100.0 %)" in text
    # no record value reaches the log
    for _, person in TINY:
        assert person["surname"] not in log.read_text()


def test_eval_text_reports_the_gain_and_the_recovered_share(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The table has the three generators; the gain and the recovery are spelled out."""
    records, links = write_tiny(tmp_path / "set")
    done = cli(
        sqlite_url, tmp_path / "var", "er", "eval", "--records", str(records),
        "--links", str(links), "--blocking", "exact:postcode", "--k", "5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "| blocking | 6 | 0.5000 | 0.600000 | 0.1667 | 1.0000 | 0.5000 |" in out
    assert "| blocking + ANN | 15 | 1.0000 |" in out
    assert "candidate recall gain: +100.0 % (relative)" in out
    assert "ANN recovers 100.0 % of the 1 true pairs blocking missed" in out


def test_eval_reports_progress_in_steps_one_line_each_in_a_pipe(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Febrl 3 takes seconds: stderr (a pipe) gets plain progress lines in
    named steps with a percentage, ending once at 100 % with no ETA."""
    done = cli(sqlite_url, tmp_path / "var", "er", "eval", "--febrl", "3", "--json")
    assert done.returncode == 0, done.stderr
    lines = [
        line for line in done.stderr.splitlines() if line.startswith("evaluating: ")
    ]
    assert lines, done.stderr
    assert all(" steps of 5 steps (" in line for line in lines), lines
    assert lines[-1].startswith("evaluating: 5 steps of 5 steps (100.0%)")
    assert "ETA" not in lines[-1]
    assert sum("(100.0%)" in line for line in lines) == 1
    assert "\r" not in done.stderr
    assert "\x1b[" not in done.stderr
    json.loads(done.stdout)  # stdout stays one JSON document


def test_eval_refuses_links_to_unknown_records(sqlite_url: str, tmp_path: Path) -> None:
    """Links naming a record no file holds: exit 2 and a message, no traceback."""
    records, links = write_tiny(tmp_path / "set")
    links.write_text("a,b\nr0,nobody\n")
    done = cli(
        sqlite_url, tmp_path / "var", "er", "eval", "--records", str(records),
        "--links", str(links),
    )  # fmt: skip
    assert done.returncode == 2
    assert "nobody" in done.stderr
    assert "Traceback" not in done.stderr


def test_embed_force_runs_the_job_with_a_progress_line(
    sqlite_url: str, tmp_path: Path
) -> None:
    """`er embed --force` requests the job, runs it here and reports it."""
    records, _ = write_tiny(tmp_path / "var" / "data" / "acme")
    done = cli(
        sqlite_url, tmp_path / "var", "er", "embed", "--tenant", "acme",
        "--entity-set", "people", "--location", records.name, "--force",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # A job this quick prints no progress in a pipe (commands under a second
    # stay quiet: tests/unit/test_progress.py); the summary says what was done.
    assert "Traceback" not in done.stderr
    assert "embedding" not in done.stderr
    assert "completed, 6 records embedded" in done.stdout
