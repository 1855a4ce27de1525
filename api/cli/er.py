"""`conductor er ...`: the eval harness, embedding jobs and index rebuilds."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.cli.progress import Progress
from application.er.assist import LEASE_LOST, LEASED_ELSEWHERE

if TYPE_CHECKING:
    import argparse
    from uuid import UUID

    from api.settings import Settings
    from application.er.assist import ErAssist
    from application.er.evaluation import EvalReport, SideReport
    from domain.er.evaluation import Side

ROWS = (("blocking", "baseline"), ("blocking + ANN", "assist"), ("ANN only", "ann"))


def _load(args: argparse.Namespace) -> tuple[Any, str, list[Path]]:
    """The labelled set, its name and the files it was read from."""
    from adapters.er.files import (  # noqa: PLC0415
        febrl,
        febrl_files,
        labeled,
        read_links,
        read_records,
    )

    if args.febrl:
        name = "Febrl3 (dedup)" if args.febrl == 3 else "Febrl4 (linkage)"
        return febrl(args.febrl), name, febrl_files(args.febrl)
    if not args.records or not args.links:
        msg = "give --records and --links (or --febrl 3|4)"
        raise ValueError(msg)
    left = read_records(Path(args.records), args.id_column)
    right = (
        read_records(Path(args.records_b), args.id_column) if args.records_b else None
    )
    data = labeled(left, read_links(Path(args.links)), right)
    kind = "linkage" if right else "dedup"
    files = [Path(args.records), *([Path(args.records_b)] if right else [])]
    return data, f"{Path(args.records).name} ({kind})", [*files, Path(args.links)]


def _row(label: str, side: SideReport) -> str:
    return (
        f"| {label} | {side.pairs:,} | {side.pairs_completeness:.4f} | "
        f"{side.reduction_ratio:.6f} | {side.pair_quality:.4f} | {side.precision:.4f} "
        f"| {side.recall:.4f} | {side.f1:.4f} |"
    )


def _print(report: EvalReport, header: str) -> None:
    print(header)
    print(
        "| candidates | pairs | pairs completeness | reduction ratio | pair quality "
        "| precision | recall | F1 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, attr in ROWS:
        print(_row(label, getattr(report, attr)))
    gain = report.relative_gain
    print(
        "candidate recall gain: "
        + (
            f"{100 * gain:+.1f} % (relative)"
            if gain is not None
            else "n/a (no baseline)"
        )
        + f"; precision {report.baseline.precision:.4f}"
        + f" -> {report.assist.precision:.4f}"
    )
    share = report.recovered_share
    missed = round(report.true_pairs * (1 - report.baseline.pairs_completeness))
    print(
        f"ANN recovers {100 * share:.1f} % of the {missed:,} true pairs blocking missed"
        if share is not None
        else "blocking missed no true pair"
    )
    ratio = report.assist.pairs / report.ann.pairs if report.ann.pairs else 0.0
    print(f"union pairs / ANN-only pairs: {ratio:.1f}x")


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.er.embedder import HashingEmbedder  # noqa: PLC0415
    from adapters.er.files import labelled_sha256  # noqa: PLC0415
    from adapters.er.hnsw import HnswSearch  # noqa: PLC0415
    from adapters.signing.secrets import FileSecrets  # noqa: PLC0415
    from api.runtime.er import hnsw_params  # noqa: PLC0415
    from application.er.evaluation import EVAL_STEPS, evaluate  # noqa: PLC0415
    from application.er.rules import Blocking, Gate  # noqa: PLC0415
    from domain.errors import ValidationError  # noqa: PLC0415

    started = time.perf_counter()
    try:
        data, name, files = _load(args)
        blocking = Blocking.parse(args.blocking or settings.er_blocking)
        gate = Gate.parse(
            settings.er_comparisons, args.threshold or settings.er_merge_at
        )
    except (ValueError, OSError, ValidationError) as error:
        print(f"conductor er eval: {error}", file=sys.stderr)
        return 2
    embedder = HashingEmbedder(FileSecrets(settings.var_path / "tokenization-secret"))
    embeds = 1 if data.right is None else 2  # one step per side embedded
    progress = Progress("evaluating", embeds + EVAL_STEPS, unit="steps")
    left = embedder.embed(args.tenant, data.left)
    progress.update(1)
    right = embedder.embed(args.tenant, data.right) if data.right is not None else None
    progress.update(embeds)
    k = args.k or settings.er_k
    params = hnsw_params(settings)
    report = evaluate(
        data,
        blocking=blocking,
        gate=gate,
        neighbours=HnswSearch(params, threads=2),
        vectors=(left, right),
        k=k,
        progress=lambda done, _total: progress.update(embeds + done),
    )
    progress.finish(embeds + EVAL_STEPS)
    position = _record(
        settings,
        report,
        labelled_set=name,
        labelled_sha256=labelled_sha256(files),
        records=data.rows_left + (data.rows_right or 0),
        blocking=blocking.spec,
        k=k,
        gate_digest=gate.digest,
        embedder=embedder.name,
    )
    recorded = f"recorded as ErEvaluation.Evaluated at log position {position:,}"
    if args.json:
        print(json.dumps(report.to_json(), sort_keys=False))
        print(recorded, file=sys.stderr)  # stdout stays one JSON document
        return 0
    size = f"{data.rows_left:,}" + (
        f" x {data.rows_right:,}" if data.rows_right is not None else ""
    )
    _print(
        report,
        f"{name}: {size} records, {report.true_pairs:,} true pairs of "
        f"{report.total_pairs:,}\nblocking {blocking.spec!r}; ANN k={k} "
        f"(hnswlib M={params.m} ef={params.ef}); gate {gate.spec} "
        f"({time.perf_counter() - started:.1f}s)",
    )
    print(recorded)
    return 0


def _record(settings: Settings, report: EvalReport, **run: Any) -> int:
    """Record the evaluation in the log (the recall guard and auditors read it)."""
    from api.bootstrap import build_conductor  # noqa: PLC0415

    services = build_conductor(settings)
    try:
        return services.er.evaluations.record_evaluation(report, **run)
    finally:
        services.close()


def cmd_last_eval(settings: Settings, args: argparse.Namespace) -> int:
    """Print the latest evaluation recorded in the log (what the guard reads)."""
    del args
    from api.bootstrap import build_conductor  # noqa: PLC0415

    services = build_conductor(settings)
    try:
        figures = services.er.evaluations.latest()
    finally:
        services.close()
    if figures is None:
        print(
            "no ER evaluation in the log yet (run conductor er eval)", file=sys.stderr
        )
        return 1

    def side(s: Side) -> dict[str, Any]:
        return {
            "pairs": s.pairs,
            "candidateRecall": float(s.candidate_recall),
            "recall": float(s.recall),
            "precision": float(s.precision),
        }

    gain = figures.recall_gain
    print(
        json.dumps(
            {
                "labelledSet": figures.labelled_set,
                "labelledSha256": figures.labelled_sha256,
                "blocking": figures.blocking,
                "gateDigest": figures.gate_digest,
                "baseline": side(figures.baseline),
                "assist": side(figures.assist),
                "recallGain": None if gain is None else float(gain),
                "recallDelta": float(figures.recall_delta),
            }
        )
    )
    return 0


def cmd_index(settings: Settings, args: argparse.Namespace) -> int:
    from api.bootstrap import build_conductor  # noqa: PLC0415

    services = build_conductor(settings)
    try:
        assert services.er is not None
        started = time.perf_counter()
        progress = Progress("rebuilding index", unit="vectors")
        size = services.er.app.rebuild_index(
            tenant=args.tenant,
            entity_set=args.entity_set,
            progress=lambda done, total: progress.update(done, total=total),
        )
        progress.finish(size)
        print(
            f"rebuilt {args.tenant}/{args.entity_set}: {size:,} vectors in "
            f"{time.perf_counter() - started:.2f}s"
        )
        return 0
    finally:
        services.close()


def cmd_embed(settings: Settings, args: argparse.Namespace) -> int:
    from api.bootstrap import build_conductor  # noqa: PLC0415
    from domain.er.resolution import ErCapExceededError  # noqa: PLC0415
    from domain.errors import ValidationError  # noqa: PLC0415

    services = build_conductor(settings)
    try:
        assert services.er is not None
        try:
            job, _ = services.er.app.request_job(
                tenant=args.tenant,
                entity_set=args.entity_set,
                location=args.location,
                id_column=args.id_column,
                force=args.force,
                requester="cli",
            )
        except (ValidationError, ErCapExceededError) as error:
            print(f"conductor er embed: {error}", file=sys.stderr)
            return 2
        if not job.forced:
            print(f"job {job.id}: {job.records:,} records, runs after {job.run_after}")
            return 0
        status = _run_job(services.er.app, job.id, job.records)
        return 0 if status == "completed" else 1
    finally:
        services.close()


def _run_job(app: ErAssist, job_id: UUID, records: int) -> str:
    """Run one job here with a progress display; print and return its status."""
    progress = Progress("embedding", records, unit="records")
    status = app.run_job(job_id, lambda done, _total: progress.update(done))
    if status in {LEASED_ELSEWHERE, LEASE_LOST}:
        progress.finish(0)
        print(f"job {job_id}: {status} (another run holds it)")
        return status
    finished = app.get_job_any_tenant(job_id)
    embedded = finished.embedded if finished else 0
    progress.finish(embedded)
    print(f"job {job_id}: {status}, {embedded:,} records embedded")
    return status


def cmd_run_due(settings: Settings, args: argparse.Namespace) -> int:
    """Run the due jobs here, one by one (and resume any whose run was lost)."""
    del args
    from api.bootstrap import build_conductor  # noqa: PLC0415

    services = build_conductor(settings)
    try:
        assert services.er is not None
        app = services.er.app
        due = app.due_jobs(datetime.now(UTC))
        if not due:
            print("no embedding job is due")
            return 0
        failed = 0
        for job_id in due:
            job = app.get_job_any_tenant(job_id)
            status = _run_job(app, job_id, job.records if job else 0)
            failed += status not in {"completed", LEASED_ELSEWHERE}
        return 1 if failed else 0
    finally:
        services.close()


def add_commands(sub: Any) -> None:
    """Register `conductor er ...` on the `conductor` parser."""
    er = sub.add_parser("er", help="entity resolution assist").add_subparsers(
        dest="action", required=True
    )
    ev = er.add_parser("eval", help="blocking vs blocking|ANN on a labeled set")
    ev.add_argument("--records", help="records CSV (dedup, or side A of a linkage)")
    ev.add_argument("--records-b", help="side B of a linkage")
    ev.add_argument("--links", help="true pairs CSV: two record ids per row")
    ev.add_argument("--febrl", type=int, choices=(3, 4), help="Febrl 3 or 4 instead")
    ev.add_argument(
        "--id-column", default="rec_id", help="record id column (default %(default)s)"
    )
    ev.add_argument("--blocking", help="e.g. exact:given_name (default: settings)")
    ev.add_argument("--k", type=int, help="ANN neighbours per record")
    ev.add_argument("--threshold", type=float, help="gate score a pair merges at")
    ev.add_argument(
        "--tenant",
        default="eval",
        help="whose embedding key to use (default %(default)s)",
    )
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.set_defaults(func=cmd_eval)

    er.add_parser(
        "last-eval",
        help="the latest evaluation in the log (JSON), as the guard reads it",
    ).set_defaults(func=cmd_last_eval)

    index = er.add_parser("index", help="ANN indexes").add_subparsers(
        dest="index_action", required=True
    )
    rebuild = index.add_parser("rebuild", help="rebuild from the stored vectors")
    rebuild.add_argument("--tenant", required=True, help="whose index")
    rebuild.add_argument("--entity-set", required=True, help="which entity set")
    rebuild.set_defaults(func=cmd_index)

    embed = er.add_parser("embed", help="embed a data-root CSV (an embedding job)")
    embed.add_argument("--tenant", required=True, help="whose records")
    embed.add_argument("--entity-set", required=True, help="the entity set to fill")
    embed.add_argument("--location", required=True, help="path in the data root")
    embed.add_argument(
        "--id-column", default="rec_id", help="record id column (default %(default)s)"
    )
    embed.add_argument(
        "--force", action="store_true", help="run now, with a progress bar"
    )
    embed.set_defaults(func=cmd_embed)

    due = er.add_parser(
        "run-due",
        help="run the due embedding jobs here, resuming any whose run was lost",
    )
    due.set_defaults(func=cmd_run_due)
