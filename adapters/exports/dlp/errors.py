"""The errors a DLP export can fail with; they name where, never a raw value."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence


class DlpError(Exception):
    """Base of the errors an export can fail with."""


class UnclassifiedColumnError(DlpError):
    """A column has no classification and the preset fails closed."""

    def __init__(self, columns: Sequence[str], row: int | None = None) -> None:
        self.columns = tuple(columns)
        self.row = row
        where = f" (row {row})" if row is not None else ""
        super().__init__(f"unclassified column(s){where}: {', '.join(self.columns)}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.columns, self.row)


class ResidualPiiError(DlpError):
    """The re-scan of the output found PII; carries where, never what."""

    def __init__(self, hits: Sequence[tuple[int, str, str]]) -> None:
        self.hits = list(hits)
        shown = ", ".join(f"row {r} column {c!r} ({k})" for r, c, k in self.hits[:10])
        more = f" and {len(self.hits) - 10} more" if len(self.hits) > 10 else ""
        super().__init__(f"residual PII in the output: {shown}{more}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.hits,)


class SourceFormatError(DlpError):
    """The source is not well-formed CSV / JSON Lines."""

    def __init__(self, row: int, problem: str) -> None:
        self.row = row
        self.problem = problem
        super().__init__(f"row {row}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.row, self.problem)
