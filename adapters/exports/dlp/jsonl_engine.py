"""The JSON Lines engine: one object a line, columns planned as keys first appear."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from adapters.exports.dlp import recognisers as rec
from adapters.exports.dlp.blocks import decode_block
from adapters.exports.dlp.errors import (
    ResidualPiiError,
    SourceFormatError,
    UnclassifiedColumnError,
)
from adapters.exports.dlp.masks import DROP, EMPTY, PASS, TEXT, YEAR, plan_column

if TYPE_CHECKING:
    from collections.abc import Mapping

    from adapters.exports.dlp.masks import Column


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON; re-serialising them would write invalid JSON.
    raise ValueError(name)


_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class JsonlEngine:
    """Transforms JSON Lines blocks; columns are planned as keys first appear."""

    def __init__(
        self, *, columns: Mapping[str, str], preset: str, key: bytes, context: str
    ) -> None:
        self.columns = columns
        self.preset = preset
        self.key = key
        self.context = context
        self.plan: dict[str, Column] = {}
        self.raise_on_residual = preset != "none"
        self.counts: dict[str, dict[str, int]] = {}
        self.rows = 0
        self.residual = 0

    def _plan(self, obj: dict[str, Any], line: int) -> None:
        missing = [k for k in obj if k not in self.plan]
        unclassified = [k for k in missing if k not in self.columns]
        if unclassified and self.preset == "tokenize_strict":
            raise UnclassifiedColumnError(sorted(unclassified), row=line)
        for k in missing:
            self.plan[k] = plan_column(
                k, self.columns.get(k), self.preset, self.key, self.context
            )

    def transform_block(self, raw: bytes, first_line: int) -> str:
        """Output text for a line-aligned block starting at line ``first_line``."""
        lines = decode_block(raw, first_line).split("\n")
        if lines[-1] == "":
            lines.pop()
        out: list[str] = []
        scans: dict[str, tuple[list[int], list[str]]] = {}
        decode = _JSON_DECODER.decode
        for number, line in enumerate(lines, first_line):
            if not line.strip():
                continue
            try:
                obj = decode(line)
            except ValueError:
                raise SourceFormatError(number, "is not valid JSON") from None
            if not isinstance(obj, dict):
                raise SourceFormatError(number, "is not a JSON object")
            result = self._object(obj, number, scans)
            out.append(json.dumps(result, sort_keys=True, separators=(",", ":")) + "\n")
        hits = [
            (numbers[i], name, found)
            for name, (numbers, texts) in scans.items()
            for i, found in rec.scan_column(texts)
        ]
        if hits:
            self.residual += len(hits)
            if self.raise_on_residual:
                raise ResidualPiiError(sorted(hits))
        self.rows += len(out)
        return "".join(out)

    def _object(
        self,
        obj: dict[str, Any],
        number: int,
        scans: dict[str, tuple[list[int], list[str]]],
    ) -> dict[str, Any]:
        """The output object; queues the values to re-scan in ``scans``."""
        if not obj.keys() <= self.plan.keys():
            self._plan(obj, number)
        result: dict[str, Any] = {}
        for name, value in obj.items():
            col = self.plan[name]
            per = self.counts.setdefault(name, {})
            label, value_out = self._value(col, value, per)
            if label:
                per[label] = per.get(label, 0) + 1
            if col.kind == DROP:
                continue
            result[name] = value_out
            if col.scan and value_out is not None and value_out != "":
                numbers, texts = scans.setdefault(name, ([], []))
                numbers.append(number)
                texts.append(_as_text(value_out))
        return result

    @staticmethod
    def _value(  # noqa: PLR0911 - one case per column kind
        col: Column, value: Any, per: dict[str, int]
    ) -> tuple[str, Any]:
        """(report label, output value) of one JSON value; "" if counted already."""
        kind = col.kind
        if kind in {PASS, DROP}:
            return col.label, value
        if value is None or value == "":
            if kind == TEXT:
                return "", value
            return ("emptied" if kind == EMPTY else "empty"), value
        if kind == EMPTY:
            return col.label, ""
        text = _as_text(value)
        if kind == TEXT:
            redacted = rec.redact(text, per)
            return "", value if redacted == text else redacted
        assert col.fn is not None
        result = col.fn(text)
        if result:
            return col.label, result
        return ("dob_unparsed" if kind == YEAR else "empty"), result
