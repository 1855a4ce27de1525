"""The export gate: the platform floor's Rego, fail-closed evaluation, the
Export states."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from adapters.exports.rego import UNDEFINED, RegoEngine
from application.exports.gate import input_digest, platform_policy_sources
from domain.catalog.dataset import Dataset
from domain.errors import ValidationError
from domain.exports.export import Export, ExportStateError
from domain.exports.policy import Policy, policy_digest
from domain.exports.request import export_input
from domain.values import Column, DatasetSpec

REGIONS = frozenset({"US", "EU", "UK"})
SOURCES = platform_policy_sources()
DIGEST = policy_digest(SOURCES)
ENGINE = RegoEngine()


def dataset(**overrides: Any) -> Dataset:
    spec = DatasetSpec(
        name="orders",
        license="Restricted-TOS",
        purposes=("investigation",),
        retention="P1Y",
        region="EU",
        contract_version="v1",
        columns=(Column("email", "pii.email"),),
    )
    return Dataset.register(
        tenant="acme",
        spec=DatasetSpec(**{**spec.__dict__, **overrides}),
        regions=REGIONS,
    )


def decide(document: dict[str, Any]) -> tuple[bool, tuple[str, ...]]:
    verdict = ENGINE.evaluate(DIGEST, SOURCES, document)
    return verdict.allow, verdict.reasons


def good_input(**dataset_overrides: Any) -> dict[str, Any]:
    return export_input(
        dataset(**dataset_overrides),
        preset="tokenize_strict",
        purpose="investigation",
        destination_region="EU",
        requester="alice",
    )


class TestPlatformFloor:
    def test_a_compliant_request_is_allowed(self) -> None:
        """License ok, purpose permitted, preset set, region allowed: allow."""
        assert decide(good_input()) == (True, ())

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"dataset": {"license": "Embargoed"}}, "license_embargoed"),
            ({"request": {"purpose": "marketing"}}, "purpose_not_permitted"),
            ({"request": {"preset": "none"}}, "dlp_preset_none"),
            ({"request": {"destination_region": "US"}}, "residency_violation"),
            ({"dataset": {"status": "retired"}}, "dataset_retired"),
            ({"dataset": {"contract_status": "expired"}}, "contract_not_active"),
        ],
    )
    def test_each_rule_denies_with_its_reason(
        self, change: dict[str, dict[str, str]], reason: str
    ) -> None:
        """Every deny rule names itself, and only itself."""
        document = copy.deepcopy(good_input())
        for part, fields in change.items():
            document[part].update(fields)
        assert decide(document) == (False, (reason,))

    def test_uk_data_may_go_to_the_eu_but_not_the_reverse(self) -> None:
        """Residency is per dataset region."""
        uk = good_input(region="UK")
        uk["request"]["destination_region"] = "EU"
        assert decide(uk) == (True, ())
        assert decide(good_input())[0] is True
        eu_to_uk = good_input()
        eu_to_uk["request"]["destination_region"] = "UK"
        assert decide(eu_to_uk) == (False, ("residency_violation",))

    @pytest.mark.parametrize(
        "missing", ["license", "purposes", "region", "status", "contract_status"]
    )
    def test_a_missing_dataset_field_fails_closed(self, missing: str) -> None:
        """Leaving a field out never slips past a rule: it is a denial."""
        document = good_input()
        del document["dataset"][missing]
        allow, reasons = decide(document)
        assert allow is False
        assert f"missing_field:dataset.{missing}" in reasons

    def test_an_empty_input_is_denied_for_every_missing_part(self) -> None:
        """No input at all: denied, with the reasons listed."""
        allow, reasons = decide({})
        assert allow is False
        assert "missing_input" in reasons

    @pytest.mark.parametrize("part", ["dataset", "request"])
    @pytest.mark.parametrize("value", [None, 1, "x", [], True])
    def test_a_part_that_is_not_an_object_fails_closed(
        self, part: str, value: object
    ) -> None:
        """A wrong type makes every field read undefined: that must deny, not allow."""
        document: dict[str, object] = dict(good_input())
        document[part] = value
        allow, reasons = decide(document)
        assert allow is False
        assert "missing_input" in reasons
        field = "license" if part == "dataset" else "purpose"
        assert f"missing_field:{part}.{field}" in reasons


class TestEngine:
    def test_a_policy_without_a_decision_is_refused_at_publication(self) -> None:
        """check() compiles and insists on data.conductor.export.decision."""
        with pytest.raises(ValueError, match="decision"):
            ENGINE.check([("x.rego", "package x\nimport rego.v1\nallow := true\n")])

    def test_broken_rego_names_the_module_and_the_error(self) -> None:
        """Compile errors carry the module name and rego-cpp's message."""
        with pytest.raises(ValueError, match=r"x\.rego.*unclosed"):
            ENGINE.check([("x.rego", "package x\nimport rego.v1\nallow if {")])

    def test_an_undefined_decision_denies(self) -> None:
        """A policy whose decision is undefined for an input fails closed."""
        sources = [
            (
                "e.rego",
                "package conductor.export\nimport rego.v1\n"
                'decision := {"allow": true, "deny": []} if input.ok\n',
            )
        ]
        digest = policy_digest(sources)
        assert ENGINE.evaluate(digest, sources, {"ok": True}).allow is True
        verdict = ENGINE.evaluate(digest, sources, {})
        assert (verdict.allow, verdict.reasons) == (False, (UNDEFINED,))

    def test_allow_with_reasons_is_a_denial(self) -> None:
        """A contradictory policy (allow: true, deny: [...]) does not let data out."""
        sources = [
            (
                "e.rego",
                "package conductor.export\nimport rego.v1\n"
                'decision := {"allow": true, "deny": ["odd"]}\n',
            )
        ]
        verdict = ENGINE.evaluate(policy_digest(sources), sources, {})
        assert (verdict.allow, verdict.reasons) == (False, ("odd",))


class TestPolicyAndExport:
    def test_the_digest_covers_the_module_set_not_its_order(self) -> None:
        """Same modules, any order: same digest and id; any byte changed: another."""
        a = Policy.publish(name="export", sources=[("a.rego", "x"), ("b.rego", "y")])
        b = Policy.publish(name="export", sources=[("b.rego", "y"), ("a.rego", "x")])
        c = Policy.publish(name="export", sources=[("a.rego", "x"), ("b.rego", "y ")])
        assert a.digest == b.digest != c.digest
        assert a.id == b.id

    def test_the_input_digest_is_stable(self) -> None:
        """The same dataset state and request always digest alike (RFC 8785)."""
        d = dataset()
        first = export_input(
            d, preset="mask", purpose="p", destination_region="EU", requester="a"
        )
        second = export_input(
            d, preset="mask", purpose="p", destination_region="EU", requester="a"
        )
        assert input_digest(first) == input_digest(second)
        assert input_digest(first) != input_digest({**first, "request": {}})

    def test_export_steps_only_go_forward(self) -> None:
        """requested -> allowed -> delivered -> proven; nothing out of order."""
        export = Export.request(
            tenant="acme",
            dataset=dataset(),
            dataset_position=1,
            preset="mask",
            purpose="investigation",
            destination_region="EU",
            requester="a",
            regions=REGIONS,
        )
        with pytest.raises(ExportStateError):
            export.issue_proof(manifest_sha256="x", key_id="k", checkpoint_size=1)
        export.decide(
            allow=True,
            reasons=(),
            policy_digest="d",
            policy_position=2,
            input_digest="i",
            engine="e",
        )
        with pytest.raises(ExportStateError):
            export.decide(
                allow=False,
                reasons=(),
                policy_digest="d",
                policy_position=2,
                input_digest="i",
                engine="e",
            )
        export.deliver(
            file_name="f.csv", content_sha256="c", size=10, rows=2, transforms=()
        )
        export.issue_proof(manifest_sha256="m", key_id="k", checkpoint_size=5)
        assert export.status == "proven"

    def test_a_denied_export_cannot_be_delivered(self) -> None:
        """A denial is final."""
        export = Export.request(
            tenant="acme",
            dataset=dataset(),
            dataset_position=1,
            preset="none",
            purpose="investigation",
            destination_region="EU",
            requester="a",
            regions=REGIONS,
        )
        export.decide(
            allow=False,
            reasons=("dlp_preset_none",),
            policy_digest="d",
            policy_position=2,
            input_digest="i",
            engine="e",
        )
        with pytest.raises(ExportStateError):
            export.deliver(
                file_name="f", content_sha256="c", size=1, rows=1, transforms=()
            )

    def test_request_fields_are_validated(self) -> None:
        """Unknown preset and region are field errors, before any policy runs."""
        with pytest.raises(ValidationError) as caught:
            Export.request(
                tenant="acme",
                dataset=dataset(),
                dataset_position=1,
                preset="zip",
                purpose="",
                destination_region="MARS",
                requester="a",
                regions=REGIONS,
            )
        fields = {v.field for v in caught.value.violations}
        assert fields == {"preset", "purpose", "destination_region"}


def test_librego_calls_keep_the_gil_and_their_signatures() -> None:
    """After import, regopy calls librego through a PyDLL with the same types."""
    import ctypes  # noqa: PLC0415

    import regopy  # noqa: PLC0415

    from adapters.exports.rego import hold_gil_during_rego  # noqa: PLC0415

    library = regopy.rego_shared.rego
    assert isinstance(library, ctypes.PyDLL)
    fresh = ctypes.CDLL(library._name)
    assert fresh.regoInputString.argtypes is None  # types come from regopy only
    assert library.regoInputString.argtypes == [ctypes.c_void_p, ctypes.c_char_p]
    assert library.regoInputString.restype is ctypes.c_uint32
    hold_gil_during_rego()  # a second call leaves the binding as it is
    assert regopy.rego_shared.rego is library
    verdict = ENGINE.evaluate(DIGEST, SOURCES, {}, tenant="acme")
    assert verdict.allow is False
