"""The pre-decode JSON check: depth, members and repeated keys, on bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.middleware.body_limits import MAX_DEPTH, MAX_ITEMS, check_body
from api.problems import Problem


def refusal(body: bytes) -> tuple[str, str] | None:
    """(field, rule) of the 400 refusal, or None when the body passes."""
    try:
        check_body(body)
    except Problem as problem:
        refused = problem
    else:
        return None
    assert refused.status_code == 400
    error = refused.extra["errors"][0]  # type: ignore[index]
    return error["field"], error["rule"]


keys = st.text(alphabet='ab"\\é\u2028:,[]{}', max_size=3)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | keys,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=40,
)


class TestWellFormedBodies:
    @settings(max_examples=300, deadline=None)
    @given(values, st.booleans())
    def test_any_json_within_the_limits_passes(self, value: Any, escaped: bool) -> None:
        """Strings full of brackets, quotes, escapes and colons fool nothing."""
        assert refusal(json.dumps(value, ensure_ascii=escaped).encode()) is None

    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(keys, values, min_size=1, max_size=4), st.data())
    def test_a_key_repeated_in_any_object_is_refused(
        self, members: dict[str, Any], data: st.DataObject
    ) -> None:
        """The repeat is found wherever the object sits, however it is spelled."""
        key = data.draw(st.sampled_from(sorted(members)))
        text = json.dumps(members)[:-1] + f", {json.dumps(key)}: 1}}"
        wrapped = data.draw(st.sampled_from(["{}", "[0, {}]", '{{"x": [{}]}}']))
        found = refusal(wrapped.format(text).encode())
        assert found is not None
        assert found[1] == "duplicate-key"

    def test_scalars_empty_bodies_and_malformed_bodies_are_left_to_msgspec(
        self,
    ) -> None:
        """Only the structure is checked; msgspec reports where a body breaks."""
        wide_second_value = b"[],[" + b"0," * MAX_ITEMS + b"0]"
        for body in [b"", b"1", b'"["', b'{"a":1,}', b"]]][[[", b'{"a":1}{"a":1}']:
            assert refusal(body) is None
        assert refusal(wide_second_value) is None  # two values: never reached


class TestLimits:
    def test_depth_64_passes_and_65_is_refused(self) -> None:
        """Arrays and objects both count; the body's own level is the first."""
        assert refusal(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is None
        deeper = b'{"a":' * MAX_DEPTH + b"[]" + b"}" * MAX_DEPTH
        assert refusal(deeper) == ("body", "max-depth")

    def test_100000_open_brackets_are_refused_as_too_deep(self) -> None:
        """Unbalanced, but msgspec would still recurse that far."""
        assert refusal(b"[" * 100_000) == ("body", "max-depth")

    def test_brackets_inside_strings_do_not_count(self) -> None:
        """Even after escaped quotes and escaped backslashes."""
        text = json.dumps({"a": '\\"' + "[" * 100, "b": "\\" * 3 + "{" * 100})
        assert refusal(text.encode()) is None

    def test_an_array_may_hold_10000_elements_not_10001(self) -> None:
        """The field names where the array sits."""
        ok = {"p": [1, list(range(MAX_ITEMS))]}
        assert refusal(json.dumps(ok).encode()) is None
        wide = {"p": [1, list(range(MAX_ITEMS + 1))]}
        assert refusal(json.dumps(wide).encode()) == ("p[1]", "max-array-length")

    def test_an_object_may_hold_10000_keys_not_10001(self) -> None:
        """Objects are bounded like arrays."""
        wide = {f"k{i}": 0 for i in range(MAX_ITEMS + 1)}
        assert refusal(json.dumps([wide]).encode()) == (
            "[0]",
            "max-object-members",
        )

    @pytest.mark.parametrize(
        ("body", "path"),
        [
            (b'{"name": 1, "name": 2}', "name"),
            (b'{"a": {"b": 1, "b": 2}}', "a.b"),
            (b'{"a": [{"x": 1}, {"y": 1, "y": 2}]}', "a[1].y"),
            (b'{"a": 1, "\\u0061": 2}', "a"),
            (b'{"\\u00e9": 1, "\xc3\xa9": 2}', "\u00e9"),
        ],
    )
    def test_a_repeated_key_is_named_by_its_path(self, body: bytes, path: str) -> None:
        """Escaped and raw spellings of one key are the same key."""
        assert refusal(body) == (path, "duplicate-key")

    @pytest.mark.parametrize(
        "repeat", ['"k500"', '"k\\u0035\\u00300"', '"\\u006b500"'], ids=str
    )
    def test_among_thousands_of_keys_one_repeat_is_found(self, repeat: str) -> None:
        """Many keys take the hashed path; an escaped spelling still matches."""
        members = ", ".join(f'"k{i}": {i}' for i in range(2000))
        body = f'{{"a": [{{{members}, {repeat}: 0}}]}}'.encode()
        assert refusal(body) == ("a[0].k500", "duplicate-key")

    def test_thousands_of_objects_sharing_their_keys_pass(self) -> None:
        """Hash-equal keys in different objects are not repeats."""
        rows = [{"name": f"c{i}", "kind": "public", "k\u00e9y": i} for i in range(3000)]
        assert refusal(json.dumps(rows).encode()) is None
        assert refusal(json.dumps(rows, ensure_ascii=False).encode()) is None

    def test_equal_keys_in_different_objects_are_fine(self) -> None:
        """Only a repeat within one object is refused."""
        assert refusal(b'[{"a": 1}, {"a": 1}, {"b": {"a": 1}, "a": 1}]') is None


class TestLargeBodies:
    def test_a_mebibyte_of_small_objects_passes(self) -> None:
        """The vectorised path (thousands of keys, escapes) on a body near the
        1 MiB ceiling; its cost is measured by hand, not asserted here."""
        rows = [{"name": f"c{i}", "kind": 'a\\"b', "v": [1, 2]} for i in range(9000)]
        body = json.dumps(rows).encode()
        assert len(body) > 400_000
        assert refusal(body) is None
