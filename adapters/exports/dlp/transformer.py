"""The DLP step behind the application's Transformer port."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.exports.dlp.engine import transform_file
from adapters.exports.dlp.errors import (
    ResidualPiiError,
    SourceFormatError,
    UnclassifiedColumnError,
)
from application.ports import TransformRefusedError, TransformReport

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path


class DlpTransformer:
    """Runs the DLP engine and turns its refusals into TransformRefusedError."""

    def __init__(self, *, workers: int = 1) -> None:
        self.workers = workers

    def transform(
        self,
        source: Path,
        destination: Path,
        *,
        columns: Mapping[str, str],
        preset: str,
        key: bytes,
        context: str,
        progress: Callable[[int, int], None],
    ) -> TransformReport:
        try:
            report = transform_file(
                source,
                destination,
                columns=columns,
                preset=preset,
                key=key,
                context=context,
                progress=progress,
                workers=self.workers,
            )
        except UnclassifiedColumnError as error:
            raise TransformRefusedError(
                "unclassified_columns", "unclassified: " + ", ".join(error.columns)
            ) from None
        except ResidualPiiError as error:
            kinds = sorted({hit[2] for hit in error.hits})
            raise TransformRefusedError(
                "residual_pii", f"{len(error.hits)} hit(s) after transform: {kinds}"
            ) from None
        except SourceFormatError as error:
            raise TransformRefusedError("source_format", str(error)) from None
        return TransformReport(
            rows=report.rows,
            bytes=report.bytes_out,
            sha256=report.sha256,
            transforms=tuple(
                (column, action, count)
                for column, actions in sorted(report.transforms.items())
                for action, count in sorted(actions.items())
            ),
        )
