"""Where a repository names its datasets, parsed with real parsers.

- ``conductor-datasets.yaml`` (or ``.yml``) at any depth:
  ``datasets: [{name: orders, contractVersion: "1.0.0"}, {name: events}]``;
- dbt sources (any ``.yml``/``.yaml`` with a top-level ``sources:`` key, by
  dbt's format: ``sources: [{name: SOURCE, tables: [{name: TABLE}]}]``); the
  dataset is the table's name, or its ``meta.conductor.dataset`` when set
  (``meta.conductor.contractVersion`` pins a contract);
- OpenLineage run events (``.json`` files, or ``.jsonl``/``.ndjson`` with one
  event per line): every ``inputs[].name`` and ``outputs[].name``.

Line numbers come from PyYAML's node marks (JSON is read by the same
composer, so its lines are exact too). A file that cannot be parsed is a
``SourceError`` naming the file and the line, never a traceback.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from application.catalog.gate import DatasetUse

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

MANIFEST_NAMES = frozenset({"conductor-datasets.yaml", "conductor-datasets.yml"})
SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", "target"}
)
"""Never walked: VCS data, environments, dbt's compiled output."""
_DBT_HINT = re.compile(r"^sources\s*:", re.MULTILINE)
_OPENLINEAGE_KEYS = frozenset({"eventType", "run", "job"})


@dataclass(frozen=True, slots=True)
class SourceError:
    """A file the gate could not read."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class _MalformedError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _scalar(node: yaml.Node | None) -> str | None:
    if isinstance(node, yaml.ScalarNode):
        return str(node.value)
    return None


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if _scalar(k) == key and isinstance(v, yaml.Node):
            return v
    return None


def _items(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = int(mark.line) + 1 if mark is not None else 1
        context = ""
        if error.context and error.context_mark is not None:
            context = f"{error.context} (line {error.context_mark.line + 1}): "
        raise _MalformedError(
            line, f"malformed YAML: {context}{error.problem}"
        ) from None
    except yaml.YAMLError as error:
        raise _MalformedError(1, f"malformed YAML: {error}") from None


def _manifest(node: yaml.Node | None, file: str) -> list[DatasetUse]:
    datasets = _get(node, "datasets") if node is not None else None
    if not isinstance(datasets, yaml.SequenceNode):
        line = _line(node) if node is not None else 1
        raise _MalformedError(line, "a manifest needs a 'datasets:' list")
    uses = []
    for item in _items(datasets):
        name = (
            _scalar(_get(item, "name")) if isinstance(item, yaml.MappingNode) else None
        )
        if not name:
            raise _MalformedError(_line(item), "each dataset needs a 'name'")
        version = _scalar(_get(item, "contractVersion"))
        uses.append(DatasetUse(name, file, _line(item), "manifest", version))
    return uses


def _dbt(node: yaml.Node | None, file: str) -> list[DatasetUse]:
    sources = _get(node, "sources") if node is not None else None
    if sources is None:
        return []
    if not isinstance(sources, yaml.SequenceNode):
        raise _MalformedError(_line(sources), "dbt 'sources:' must be a list")
    uses = []
    for source in _items(sources):
        for table in _items(_get(source, "tables")):
            name = _scalar(_get(table, "name"))
            if not name:
                raise _MalformedError(
                    _line(table), "each dbt source table needs a 'name'"
                )
            conductor = _get(_get(table, "meta"), "conductor")
            override = _scalar(_get(conductor, "dataset"))
            version = _scalar(_get(conductor, "contractVersion"))
            line = _line(table)
            uses.append(DatasetUse(override or name, file, line, "dbt", version))
    return uses


def _openlineage_event(node: yaml.Node, file: str, offset: int) -> list[DatasetUse]:
    if not isinstance(node, yaml.MappingNode):
        return []
    keys = {_scalar(k) for k, _ in node.value}
    if not _OPENLINEAGE_KEYS & keys or not {"inputs", "outputs"} & keys:
        return []
    uses = []
    for side in ("inputs", "outputs"):
        for item in _items(_get(node, side)):
            name = _scalar(_get(item, "name"))
            if name:
                uses.append(
                    DatasetUse(name, file, _line(item) + offset, "openlineage", None)
                )
    return uses


def _json_node(text: str) -> yaml.Node | None:
    try:
        json.loads(text)
    except ValueError as error:
        line = getattr(error, "lineno", 1)
        raise _MalformedError(line, f"malformed JSON: {error}") from None
    # Valid JSON is valid YAML for PyYAML's composer but for tabs and \/.
    try:
        return yaml.compose(text.replace("\t", " "), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def _openlineage(text: str, file: str, *, lines: bool) -> list[DatasetUse]:
    if not lines:
        node = _json_node(text)
        return _openlineage_event(node, file, 0) if node is not None else []
    uses = []
    for number, line in enumerate(text.splitlines()):
        if line.strip():
            try:
                node = _json_node(line)
            except _MalformedError as error:
                raise _MalformedError(number + 1, error.message) from None
            if node is not None:
                uses += _openlineage_event(node, file, number)
    return uses


def _walk(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for child in sorted(path.iterdir()):
        if child.is_dir():
            if child.name not in SKIPPED_DIRS:
                yield from _walk(child)
        elif child.is_file():
            yield child


def _read_file(path: Path, shown: str) -> list[DatasetUse]:
    suffix = path.suffix.lower()
    if path.name in MANIFEST_NAMES:
        return _manifest(_compose(path.read_text(encoding="utf-8")), shown)
    if suffix in {".yml", ".yaml"}:
        text = path.read_text(encoding="utf-8")
        if not _DBT_HINT.search(text):
            return []  # not a dbt sources file: not the gate's business
        return _dbt(_compose(text), shown)
    if suffix == ".json":
        return _openlineage(path.read_text(encoding="utf-8"), shown, lines=False)
    if suffix in {".jsonl", ".ndjson"}:
        return _openlineage(path.read_text(encoding="utf-8"), shown, lines=True)
    return []


def find_uses(
    paths: Sequence[Path], *, relative_to: Path | None = None
) -> tuple[list[DatasetUse], list[SourceError]]:
    """Every dataset use under ``paths``, and the files that could not be read."""
    uses: list[DatasetUse] = []
    errors: list[SourceError] = []
    base = (relative_to or Path.cwd()).resolve()
    for root in paths:
        if not root.exists():
            errors.append(SourceError(str(root), 0, "no such file or directory"))
            continue
        for path in _walk(root):
            resolved = path.resolve()
            shown = (
                str(resolved.relative_to(base))
                if resolved.is_relative_to(base)
                else str(path)
            )
            try:
                uses += _read_file(path, shown)
            except _MalformedError as error:
                errors.append(SourceError(shown, error.line, error.message))
            except (OSError, UnicodeDecodeError) as error:
                errors.append(SourceError(shown, 0, f"cannot read: {error}"))
    return uses, errors
