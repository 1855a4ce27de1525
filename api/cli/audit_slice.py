"""`conductor audit export-log --tenant T | --url URL`: a tenant's slice, proven.

``--tenant`` is the operator's local tool (it opens the database, and signs
a checkpoint covering the log with this machine's key if the latest does
not). ``--url`` asks a running API with the token in CONDUCTOR_TOKEN: a
tenant's token gets its slice, an operator's (audit.platform) the whole log.
Either way every record of a slice is proven against one checkpoint.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.cli.progress import Progress

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator, Mapping

    import httpx

    from adapters.ledger.checkpoints import Checkpoint
    from api.bootstrap import Conductor
    from api.settings import Settings
    from application.ports import LogEntry

PAGE = 1000
Record = tuple["LogEntry", "Mapping[str, Any]"]


def export_slice(settings: Settings, args: argparse.Namespace) -> int:
    """Write the slice (or, for an operator's token at --url, the whole log)."""
    out = Path(args.out)
    if not args.url:
        return _local(settings, args.tenant, out)
    token = os.environ.get("CONDUCTOR_TOKEN", "")
    if not token:
        print(
            "conductor audit export-log: --url needs CONDUCTOR_TOKEN", file=sys.stderr
        )
        return 2
    import httpx  # noqa: PLC0415 - only the --url path needs it

    with httpx.Client(
        base_url=args.url.rstrip("/"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    ) as http:
        try:
            return _fetch(http, out)
        except (httpx.HTTPError, LookupError) as error:
            print(f"conductor audit export-log: {error}", file=sys.stderr)
            return 1


def _local(settings: Settings, tenant: str, out: Path) -> int:
    from adapters.audit.slice import write_slice  # noqa: PLC0415
    from api.bootstrap import build_conductor  # noqa: PLC0415
    from api.controllers.log_slice import covering, log_tip  # noqa: PLC0415
    from api.logging import configure_logging  # noqa: PLC0415

    configure_logging(settings)  # log lines to stderr, not into the output
    services = build_conductor(settings)
    try:
        checkpoint = covering(services.core, services.exports, log_tip(services.core))
        # After signing: the key events it may add must be in the view too.
        services.core.runners["tenancy"].catch_up()

        with out.open("w", encoding="utf-8") as handle:
            written = write_slice(
                _counted(_local_records(services, tenant, checkpoint)),
                handle,
                tenant=tenant,
                checkpoint=checkpoint.envelope,
            )
    finally:
        services.close()
    return _wrote(written, out, tenant, checkpoint.size)


def _local_records(
    services: Conductor, tenant: str, checkpoint: Checkpoint
) -> Iterator[Record]:
    from api.controllers.log_slice import slice_page  # noqa: PLC0415

    after: int | None = 0
    while after is not None:
        page = slice_page(
            services.core,
            services.exports,
            tenant,
            after=after,
            limit=PAGE,
            checkpoint=checkpoint,
        )
        yield from zip(page.entries, page.proofs, strict=True)
        after = page.next_after


def _fetch(http: httpx.Client, out: Path) -> int:
    from adapters.audit.auditor import write_log  # noqa: PLC0415
    from adapters.audit.slice import write_slice  # noqa: PLC0415

    first = _page(http, after=0)
    tenant = first.get("tenant")
    with out.open("w", encoding="utf-8") as handle:
        if tenant is None:  # an operator's token: the whole log, as today's file
            written = write_log((e for e, _ in _counted(_whole(http, first))), handle)
            print(f"wrote {written:,} events to {out}")
            return 0
        checkpoint = first.get("checkpoint") or _latest(http)
        written = write_slice(
            _counted(_pinned(http, first, int(checkpoint["size"]))),
            handle,
            tenant=str(tenant),
            checkpoint=checkpoint["envelope"],
        )
    return _wrote(written, out, str(tenant), int(checkpoint["size"]))


def _pinned(http: httpx.Client, first: dict[str, Any], size: int) -> Iterator[Record]:
    """The first page, then the rest of the slice pinned to its checkpoint.

    At least one pinned page follows the first, even a short one: the key
    that signed the checkpoint may have been recorded just after it.
    """
    yield from _records(first)
    after = int(first["entries"][-1]["position"]) if first["entries"] else 0
    while True:
        page = _page(http, after=after, size=size)
        yield from _records(page)
        if page.get("nextAfter") is None:
            return
        after = int(page["nextAfter"])


def _whole(http: httpx.Client, first: dict[str, Any]) -> Iterator[Record]:
    page = first
    while True:
        yield from _records(page)
        if page.get("nextAfter") is None:
            return
        page = _page(http, after=int(page["nextAfter"]))


def _records(page: Mapping[str, Any]) -> Iterator[Record]:
    from adapters.audit.auditor import log_entry  # noqa: PLC0415

    for item in page["entries"]:
        yield log_entry(item), item.get("inclusion") or {}


def _page(http: httpx.Client, *, after: int, size: int | None = None) -> Any:
    params = {"after": after, "limit": PAGE} | ({"size": size} if size else {})
    response = http.get("/v1/log", params=params)
    if response.status_code != 200:
        msg = f"GET /v1/log answered {response.status_code}: {response.text[:300]}"
        raise LookupError(msg)
    return response.json()


def _latest(http: httpx.Client) -> Any:
    """A checkpoint for a slice with no entries of its own yet."""
    response = http.get("/v1/ledger/checkpoints/latest")
    if response.status_code != 200:
        msg = f"no checkpoint to prove against ({response.status_code})"
        raise LookupError(msg)
    return response.json()


def _counted(records: Iterator[Record]) -> Iterator[Record]:
    progress = Progress("exported", unit="events")
    done = 0
    for record in records:
        done += 1
        progress.update(done)
        yield record
    progress.finish(done)


def _wrote(written: int, out: Path, tenant: str, size: int) -> int:
    print(
        f"wrote {written:,} events of tenant {tenant} to {out} "
        f"(each proven against the signed checkpoint of {size:,} events)"
    )
    return 0
