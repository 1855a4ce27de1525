"""GET /v1/exports/presets: what each preset does, read off the DLP engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from adapters.exports.dlp.engine import PRESETS, transform_file
from adapters.exports.dlp.errors import UnclassifiedColumnError
from domain.values import CLASSIFICATIONS
from tests.conftest import bearer

if TYPE_CHECKING:
    from pathlib import Path

    from litestar.testing import TestClient

pytestmark = pytest.mark.integration

VALUES = {
    "pii.dob": "1990-04-02",
    "pii.email": "ann@example.com",
    "free_text": "write to ann@example.com",
}
"""A value per classification the engine accepts (the rest take plain text)."""


def _presets(client: TestClient[Any]) -> dict[str, Any]:
    got = client.get("/v1/exports/presets", headers=bearer("acme", "export.request"))
    assert got.status_code == 200, got.text
    return {p["name"]: p for p in got.json()["presets"]}


def test_every_preset_and_classification_is_described(
    client: TestClient[Any],
) -> None:
    presets = _presets(client)
    assert set(presets) == set(PRESETS)
    for preset in presets.values():
        assert set(preset["classifications"]) == {*CLASSIFICATIONS, "(unclassified)"}
        assert all(c["meaning"] for c in preset["classifications"].values())
    assert presets["none"]["alwaysDenied"] is True
    assert not any(presets[p]["alwaysDenied"] for p in PRESETS if p != "none")
    strict = presets["tokenize_strict"]["classifications"]
    assert strict["pii.email"]["action"] == "tokenized"
    assert strict["(unclassified)"]["action"] == "refused"
    assert presets["redact"]["classifications"]["pii.email"]["action"] == "emptied"
    assert presets["mask"]["classifications"]["pii.email"]["action"] == "masked"


@pytest.mark.parametrize("preset", PRESETS)
def test_the_description_is_what_an_export_does(
    client: TestClient[Any], tmp_path: Path, preset: str
) -> None:
    """Run the engine on one column of each classification: its report names
    the action the route describes (so the table cannot be hand-copied)."""
    described = _presets(client)[preset]["classifications"]
    names = sorted(CLASSIFICATIONS)
    columns = {f"c{i}": label for i, label in enumerate(names)}
    source = tmp_path / "in.csv"
    header = ",".join([*columns, "loose"])
    row = ",".join([*(VALUES.get(label, "plain") for label in names), "plain"])
    source.write_text(f"{header}\n{row}\n")
    try:
        report = transform_file(
            source, tmp_path / "out.csv", columns=columns, preset=preset,
            key=b"k" * 32, context="test",
        )  # fmt: skip
    except UnclassifiedColumnError:
        assert described["(unclassified)"]["action"] == "refused"
        report = transform_file(
            source, tmp_path / "out.csv", columns={**columns, "loose": "public"},
            preset=preset, key=b"k" * 32, context="test",
        )  # fmt: skip
    else:
        assert set(report.transforms["loose"]) == {
            described["(unclassified)"]["action"]
        }
    for column, label in columns.items():
        action = described[label]["action"]  # free text: redacted_<kind> per span
        done = set(report.transforms[column])
        assert done, label
        assert all(d == action or d.startswith(f"{action}_") for d in done), label


def test_presets_need_a_token(client: TestClient[Any]) -> None:
    assert client.get("/v1/exports/presets").status_code == 401
