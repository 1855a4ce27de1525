"""The streaming DLP transformer: presets, tokens, recognisers, failures, streaming."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import random
import tracemalloc
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.exports.dlp import recognisers as rec
from adapters.exports.dlp.engine import PRESETS, DlpReport, transform_file
from adapters.exports.dlp.errors import (
    ResidualPiiError,
    SourceFormatError,
    UnclassifiedColumnError,
)
from adapters.exports.dlp.masks import ValueCache, dob_year, plan_column

if TYPE_CHECKING:
    from pathlib import Path

KEY = b"test-key-0123456789abcdef"
CONTEXT = "tenant-a/export-1"
COLUMNS = {
    "id": "public",
    "name": "pii.name",
    "email": "pii.email",
    "phone": "pii.phone",
    "address": "pii.address",
    "dob": "pii.dob",
    "ssn": "id.national",
    "api_key": "secret",
    "amount": "public",
    "notes": "free_text",
}
SOURCE_CSV = (
    "id,name,email,phone,address,dob,ssn,api_key,amount,notes\n"
    '1,Ann Lee, Ann@Example.COM ,+44 20 7946 0958,"1 High St, Leeds",1987-05-14,'
    "123-45-6789,sk_live_1,12.50,mail ann@example.com or call 020 7946 0958\n"
    "2,Bob Ray,bob@example.org,(415) 555-2671,2 Oak Rd,19900102,234-56-7890,sk_2,"
    "1234.56,card 4111 1111 1111 1111 ok\n"
    "3,,,,,31/12/2001,,,0.99,nothing to see\n"
)
JSONL_COLUMNS = {
    "id": "public",
    "name": "pii.name",
    "email": "pii.email",
    "phone": "pii.phone",
    "dob": "pii.dob",
    "ssn": "id.national",
    "notes": "free_text",
}
SOURCE_JSONL = (
    '{"id": 1, "name": "Ann Lee", "email": "ANN@example.com", "phone": 4155552671,'
    ' "dob": "1987-05-14", "ssn": "123-45-6789", "notes": "call +1 415 555 2671"}\n'
    '{"id": 2, "name": null, "email": "", "dob": "not a date", "notes": null}\n'
)


def tok(value: str, column: str, *, key: bytes = KEY, context: str = CONTEXT) -> str:
    """The token the spec defines: HMAC-SHA-256(key, context|column|value), 128 bits."""
    message = f"{context}|{column}|{value}".encode()
    return "tok_" + hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def run(
    tmp_path: Path,
    text: str,
    *,
    suffix: str = ".csv",
    columns: dict[str, str] | None = None,
    preset: str = "tokenize_strict",
    **kwargs: object,
) -> tuple[str, DlpReport]:
    source = tmp_path / f"source{suffix}"
    source.write_bytes(text.encode())
    destination = tmp_path / f"out{suffix}"
    report = transform_file(
        source,
        destination,
        columns=COLUMNS if columns is None else columns,
        preset=preset,
        key=kwargs.pop("key", KEY),  # type: ignore[arg-type]
        context=kwargs.pop("context", CONTEXT),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )
    return destination.read_bytes().decode(), report


def token_of(
    tmp_path: Path, value: str, column: str = "email", **kwargs: object
) -> str:
    classification = {"email": "pii.email", "phone": "pii.phone"}.get(
        column, "pii.name"
    )
    out, _ = run(
        tmp_path, f"{column}\n{value}\n", columns={column: classification}, **kwargs
    )
    return out.splitlines()[1]


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".")))


# ------------------------------------------------------------------------- presets


def test_tokenize_strict_csv_gives_the_exact_expected_export(tmp_path: Path) -> None:
    """Identifiers tokenised, dob to year, ids/secrets dropped, free text redacted."""
    out, report = run(tmp_path, SOURCE_CSV)
    a_addr, b_addr = tok("1 High St, Leeds", "address"), tok("2 Oak Rd", "address")
    assert out == (
        "id,name,email,phone,address,dob,amount,notes\n"
        f"1,{tok('Ann Lee', 'name')},{tok('ann@example.com', 'email')},"
        f"{tok('442079460958', 'phone')},{a_addr},1987,12.50,"
        "mail [EMAIL] or call [PHONE]\n"
        f"2,{tok('Bob Ray', 'name')},{tok('bob@example.org', 'email')},"
        f"{tok('4155552671', 'phone')},{b_addr},1990,1234.56,card [CARD] ok\n"
        "3,,,,,2001,0.99,nothing to see\n"
    )
    assert report.transforms == {
        "id": {"passed": 3},
        "name": {"tokenized": 2, "empty": 1},
        "email": {"tokenized": 2, "empty": 1},
        "phone": {"tokenized": 2, "empty": 1},
        "address": {"tokenized": 2, "empty": 1},
        "dob": {"generalized": 3},
        "ssn": {"dropped": 3},
        "api_key": {"dropped": 3},
        "amount": {"passed": 3},
        "notes": {"redacted_email": 1, "redacted_phone": 1, "redacted_card": 1},
    }
    assert report.rows == 3
    assert report.residual_hits == 0


def test_mask_csv_keeps_shape_hints_and_drops_unclassified(tmp_path: Path) -> None:
    """Mask: j***@e***.com, last two phone digits, initials; unclassified dropped."""
    source = SOURCE_CSV.replace("amount", "extra")
    out, report = run(tmp_path, source, preset="mask")
    assert out == (
        "id,name,email,phone,address,dob,notes\n"
        "1,A***,A***@E***.COM,**********58,***,1987,mail [EMAIL] or call [PHONE]\n"
        "2,B***,b***@e***.org,********71,***,1990,card [CARD] ok\n"
        "3,,,,,2001,nothing to see\n"
    )
    assert report.transforms["name"] == {"masked": 2, "empty": 1}
    assert report.transforms["extra"] == {"dropped_unclassified": 3}
    assert report.transforms["ssn"] == {"dropped": 3}


def test_redact_csv_empties_every_non_public_column(tmp_path: Path) -> None:
    """Redact: classified non-public values emptied, ids/secrets/unclassified gone."""
    source = SOURCE_CSV.replace("api_key", "extra")
    out, report = run(tmp_path, source, preset="redact")
    assert out == (
        "id,name,email,phone,address,dob,amount,notes\n"
        "1,,,,,,12.50,\n"
        "2,,,,,,1234.56,\n"
        "3,,,,,,0.99,\n"
    )
    assert report.transforms["notes"] == {"emptied": 3}
    assert report.transforms["extra"] == {"dropped_unclassified": 3}


def test_none_copies_everything_and_only_counts_residual_pii(tmp_path: Path) -> None:
    """Preset none copies all columns (even unclassified) and reports the hits."""
    source = SOURCE_CSV.replace("api_key", "extra")
    out, report = run(tmp_path, source, preset="none")
    assert list(csv.reader(io.StringIO(out))) == list(csv.reader(io.StringIO(source)))
    assert report.residual_hits > 0
    assert set(report.transforms["extra"]) == {"passed"}


def test_tokenize_strict_jsonl_gives_the_exact_expected_export(tmp_path: Path) -> None:
    """JSONL: compact sorted objects; null and "" stay; non-strings are tokenised."""
    out, report = run(tmp_path, SOURCE_JSONL, suffix=".jsonl", columns=JSONL_COLUMNS)
    first = {
        "dob": "1987",
        "email": tok("ann@example.com", "email"),
        "id": 1,
        "name": tok("Ann Lee", "name"),
        "notes": "call [PHONE]",
        "phone": tok("4155552671", "phone"),
    }
    second = {"dob": "", "email": "", "id": 2, "name": None, "notes": None}
    assert out == "".join(
        json.dumps(o, sort_keys=True, separators=(",", ":")) + "\n"
        for o in (first, second)
    )
    assert report.transforms["dob"] == {"generalized": 1, "dob_unparsed": 1}
    assert report.transforms["ssn"] == {"dropped": 1}
    assert report.transforms["notes"] == {"redacted_phone": 1}
    assert report.rows == 2


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        (
            "mask",
            {"dob": "1987", "email": "A***@e***.com", "id": 1, "name": "A***"},
        ),
        ("redact", {"dob": "", "email": "", "id": 1, "name": ""}),
    ],
)
def test_mask_and_redact_jsonl_give_the_exact_expected_export(
    tmp_path: Path, preset: str, expected: dict[str, object]
) -> None:
    """JSONL under mask/redact; the unclassified key is dropped, not fatal."""
    line = (
        '{"id": 1, "name": "Ann", "email": "Ann@example.com", "dob": "14/05/1987",'
        ' "ssn": "123-45-6789", "extra": "x"}\n'
    )
    out, report = run(
        tmp_path, line, suffix=".ndjson", columns=JSONL_COLUMNS, preset=preset
    )
    assert json.loads(out) == expected
    assert report.transforms["extra"] == {"dropped_unclassified": 1}


def test_presets_are_the_four_documented(tmp_path: Path) -> None:
    """The preset names are public API; anything else is refused."""
    assert PRESETS == ("tokenize_strict", "mask", "redact", "none")
    with pytest.raises(ValueError, match="unknown preset"):
        run(tmp_path, SOURCE_CSV, preset="scramble")


# -------------------------------------------------------------------------- tokens


def test_tokens_are_deterministic_and_keyed(tmp_path: Path) -> None:
    """Same value -> same token; another key, context or column -> another token."""
    base = token_of(tmp_path, "ann@example.com")
    assert base == token_of(tmp_path, "ann@example.com")
    assert base == tok("ann@example.com", "email")
    others = {
        token_of(tmp_path, "ann@example.com", key=b"another-key-0123456789"),
        token_of(tmp_path, "ann@example.com", context="tenant-b/export-1"),
        token_of(tmp_path, "ann@example.com", column="contact"),
        token_of(tmp_path, "bob@example.com"),
    }
    assert base not in others
    assert len(others) == 4
    assert len(base) == len("tok_") + 32  # 128 bits


@pytest.mark.parametrize(
    ("column", "variants"),
    [
        ("email", ["ann@example.com", " Ann@Example.COM ", "ANN@EXAMPLE.COM"]),
        ("phone", ["+44 20 7946 0958", "44-20-7946-0958", "(44) 2079460958"]),
    ],
)
def test_emails_and_phones_are_normalised_before_tokenising(
    tmp_path: Path, column: str, variants: list[str]
) -> None:
    """Equal identities written differently tokenise equally."""
    assert len({token_of(tmp_path, v, column=column) for v in variants}) == 1


def test_long_keys_follow_hmac(tmp_path: Path) -> None:
    """Keys longer than a SHA-256 block are hashed first, as HMAC specifies."""
    key = bytes(range(100))
    assert token_of(tmp_path, "Ann", column="name", key=key) == tok(
        "Ann", "name", key=key
    )


_TOKEN_TEXT = st.text(
    alphabet=st.sampled_from(
        [
            "a",
            "Z",
            "0",
            "7",
            "@",
            ".",
            " ",
            "\t",
            "\x00",
            "\x1c",
            "\u03a3",
            "\u0130",
            "-",
            "+",
        ]
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TOKEN_TEXT, max_size=20))
def test_column_tokens_equal_the_tokens_of_each_value(values: list[str]) -> None:
    """A column tokenised at once (joined, normalised, encoded as one string) gives
    each value's own token: spaces, case, sigma, NULs and empties included."""
    for column, classification in (
        ("email", "pii.email"),
        ("phone", "pii.phone"),
        ("name", "pii.name"),
    ):
        plan = plan_column(column, classification, "tokenize_strict", KEY, CONTEXT)
        assert plan.fn is not None
        assert plan.batch is not None
        assert plan.batch(values) == list(map(plan.fn, values))
    email = plan_column("email", "pii.email", "tokenize_strict", KEY, CONTEXT).fn
    assert email is not None
    assert [email(v) for v in values] == [
        tok(v.strip().lower(), "email") if v.strip() else "" for v in values
    ]


# ------------------------------------------------------------------------ failures


def test_unclassified_csv_columns_fail_closed_before_writing(tmp_path: Path) -> None:
    """tokenize_strict names every unclassified column and writes nothing."""
    source = SOURCE_CSV.replace("api_key", "extra").replace("amount", "more")
    with pytest.raises(UnclassifiedColumnError) as caught:
        run(tmp_path, source)
    assert caught.value.columns == ("extra", "more")
    assert leftovers(tmp_path) == []


def test_unclassified_jsonl_key_fails_the_whole_export(tmp_path: Path) -> None:
    """A new key on a later line fails the export and leaves no partial file."""
    lines = "".join(f'{{"id": {i}, "name": "n{i}"}}\n' for i in range(1, 5000))
    lines += '{"id": 5000, "surprise": "x"}\n'
    columns = {"id": "public", "name": "pii.name"}
    with pytest.raises(UnclassifiedColumnError) as caught:
        run(tmp_path, lines, suffix=".jsonl", columns=columns)
    assert caught.value.columns == ("surprise",)
    assert caught.value.row == 5000
    assert leftovers(tmp_path) == []


def test_residual_pii_in_a_public_column_blocks_the_export(tmp_path: Path) -> None:
    """A "public" column full of emails is caught; nothing raw is disclosed."""
    source = "id,contact\n1,nobody\n2,carol.secret@example.com\n3,+44 20 7946 0958\n"
    with pytest.raises(ResidualPiiError) as caught:
        run(tmp_path, source, columns={"id": "public", "contact": "public"})
    assert caught.value.hits == [(2, "contact", "email"), (3, "contact", "phone")]
    assert "carol" not in str(caught.value)
    assert "7946" not in str(caught.value)
    assert "carol" not in repr(caught.value.hits)
    assert leftovers(tmp_path) == []


def test_residual_pii_in_jsonl_carries_line_numbers(tmp_path: Path) -> None:
    """JSONL hits name the line, the key and the recogniser."""
    source = '{"id": 1}\n\n{"id": 2, "ref": "4111 1111 1111 1111"}\n'
    with pytest.raises(ResidualPiiError) as caught:
        run(
            tmp_path, source, suffix=".jsonl", columns={"id": "public", "ref": "public"}
        )
    assert caught.value.hits == [(3, "ref", "card")]
    assert leftovers(tmp_path) == []


def test_a_failed_export_keeps_an_existing_destination_untouched(
    tmp_path: Path,
) -> None:
    """The output is renamed into place only when the export passed."""
    (tmp_path / "out.csv").write_text("previous export\n")
    with pytest.raises(ResidualPiiError):
        run(tmp_path, "a\nx@example.com\n", columns={"a": "public"})
    assert (tmp_path / "out.csv").read_text() == "previous export\n"


@pytest.mark.parametrize(
    ("text", "row"),
    [
        ("a,b\n1,2\n3\n4,5\n", 2),  # too few fields
        ("a,b\n1,2\n3,4\n5,6,7\n", 3),  # too many fields
        ('a,b\n1,2\n"3"x,4\n', 2),  # text after a closing quote
        ('a,b\n1,2\n3,"4 ""x"" y"z\n', 2),  # the same, past the fast path
        ("a,b\n1,2\n\n3\n", 3),  # blank lines keep their number
        ("a,b\n1,2,3\n4\n", 1),  # too many, then too few: the right total
        ('a,b\n"1,2",3,4\n5\n', 1),  # the same with a quoted delimiter
    ],
)
def test_malformed_csv_rows_are_reported_with_their_row_number(
    tmp_path: Path, text: str, row: int
) -> None:
    """Wrong field counts and bad quoting raise SourceFormatError(row)."""
    with pytest.raises(SourceFormatError) as caught:
        run(tmp_path, text, columns={"a": "public", "b": "public"})
    assert caught.value.row == row
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("text", "row"),
    [
        ('{"a": 1}\n{"a": 2,}\n', 2),
        ('{"a": 1}\n\n[1, 2]\n', 3),
        ('{"a": NaN}\n', 1),
    ],
)
def test_malformed_json_lines_are_reported_with_their_line_number(
    tmp_path: Path, text: str, row: int
) -> None:
    """Invalid JSON, non-objects and NaN raise SourceFormatError(line)."""
    with pytest.raises(SourceFormatError) as caught:
        run(tmp_path, text, suffix=".jsonl", columns={"a": "public"})
    assert caught.value.row == row
    assert leftovers(tmp_path) == []


def test_invalid_utf8_is_a_source_format_error(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 fail with the row they are on."""
    source = tmp_path / "source.csv"
    source.write_bytes(b"a\nok\nbad \xff\n")
    with pytest.raises(SourceFormatError) as caught:
        transform_file(
            source,
            tmp_path / "out.csv",
            columns={"a": "public"},
            preset="tokenize_strict",
            key=KEY,
            context=CONTEXT,
        )
    assert caught.value.row == 2


# -------------------------------------------------------------------- recognisers


def _luhn_completed(prefix: str) -> str:
    for check in "0123456789":
        if rec.luhn_valid(prefix + check):
            return prefix + check
    raise AssertionError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reach jane.doe+tag@mail.example.co.uk today", ["email"]),
        ("josé@exämple.de", ["email"]),
        ("call +44 20 7946 0958.", ["phone"]),
        ("+1 (415) 555-2671", ["phone"]),
        ("(415) 555-2671", ["phone"]),
        ("415-555-2671 or 415.555.2671", ["phone", "phone"]),
        ("020 7946 0958", ["phone"]),
        ("07700 900123", ["phone"]),
        ("07700900123", ["phone"]),
        ("0044 20 7946 0958", ["phone"]),
        # Valid in their countries' numbering plans (phonenumbers' metadata).
        ("appel +33 1 23 45 67 89", ["phone"]),
        ("Anruf +49 30 123456", ["phone"]),
        ("ring 00353 1 234 5678", ["phone"]),
        ("4111 1111 1111 1111", ["card"]),
        ("4111-1111-1111-1111", ["card"]),
        ("5555555555554444", ["card"]),
        ("amex 3782 822463 10005", ["card"]),
        ("ref 12 4111 1111 1111 1111", ["card"]),
        ("ssn 123-45-6789", ["national_id"]),
        ("ssn 536-90-4399", ["national_id"]),
        ("NI AB 12 34 56 C", ["national_id"]),
        ("AB123456C", ["national_id"]),
    ],
)
def test_recognisers_find_true_positives(text: str, expected: list[str]) -> None:
    """Emails, phones, Luhn-valid cards and national ids are recognised."""
    assert rec.find_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn-invalid
        _luhn_completed("123456789012345"),  # Luhn-valid, no card issuer
        "1234.56",
        "total 1,234,567.89 and 12345678.90",
        "born 1987, joined 2024",
        "2024-06-11",
        "2024-06-11T10:20:30Z",
        "11/06/2024",
        "20240611",
        "000-12-3456",
        "666-12-3456",
        "912-12-3456",
        "123-00-4567",
        "123-45-0000",
        # SSA never issued these (python-stdnum's us.ssn): the "Woolworth wallet"
        # number and two more printed in adverts.
        "078-05-1120",
        "219-09-9999",
        "457-55-5462",
        # Phone-shaped, but no such number: no country code 999, no US area code
        # starting with 0 or 1, no UK number starting 00 after the country code.
        "+999 1234 5678 90",
        "+1 011 555 2671",
        "+1 123 555 2671",
        "+44 00 0000 0000",
        "GB 12 34 56 A",
        "QQ 12 34 56 C",
        "AB 12 34 56 E",
        "order 12345, qty 3",
        "1234567890",
        "ip 192.168.100.200",
        "x@y",
        "ID-555-123-4567",
        "tok_0123456789abcdef0123456789abcdef",
        "tok_4111111111111111abcdef0123456789",
        "tok_12345678901234567890123456789012",
    ],
)
def test_recognisers_ignore_true_negatives(text: str) -> None:
    """Invalid cards/SSNs, amounts, dates, years, plain numbers, tokens: no hit."""
    assert rec.find_pii(text) == []


def test_tokens_never_trigger_a_recogniser() -> None:
    """Thousands of tokens, alone or in text, hold nothing a recogniser flags."""
    rng = random.Random(7)
    tokens = [
        "tok_" + hmac.new(KEY, rng.randbytes(8), hashlib.sha256).hexdigest()[:32]
        for _ in range(5000)
    ]
    tokens += ["tok_" + "".join(rng.choices("0123456789", k=32)) for _ in range(500)]
    assert rec.scan_column(tokens) == []
    assert rec.find_pii(" ".join(tokens)) == []


def test_redaction_replaces_each_match_with_its_placeholder() -> None:
    """Every recogniser has its placeholder; counts are per recogniser."""
    counts: dict[str, int] = {}
    text = "a@b.io, 4111 1111 1111 1111, 123-45-6789, +44 20 7946 0958, AB123456C"
    assert rec.redact(text, counts) == (
        "[EMAIL], [CARD], [NATIONAL_ID], [PHONE], [NATIONAL_ID]"
    )
    assert counts == {
        "redacted_email": 1,
        "redacted_card": 1,
        "redacted_national_id": 2,
        "redacted_phone": 1,
    }


def test_recognisers_stay_linear_on_adversarial_input() -> None:
    """Long runs of near-matches cannot make the regexes backtrack for long."""
    nasty = [
        "1 " * 20000,
        "a" * 50000 + "@",
        "+" + "1-" * 20000,
        "(" * 20000 + "1" * 20000,
        "a." * 20000 + "@" + "b." * 20000,
    ]
    for text in nasty:
        rec.find_pii(text)
        rec.scan_column([text, text])


def _reference_kinds(text: str) -> list[str]:
    """find_pii with the patterns run over the whole text, not trigger windows."""
    return [kind for _, _, kind in rec.pii_spans(text, windowed=False)]


_PIECES = st.sampled_from(
    [
        "0",
        "1",
        "4",
        "5",
        "9",
        "00",
        "07",
        "123",
        "4111",
        "1111",
        " ",
        "-",
        ".",
        "(",
        ")",
        "+",
        "@",
        "a",
        "AB",
        "C",
        "x.com",
        "tok_",
        ",",
        "/",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_windowed_recognition_equals_a_full_text_scan(text: str) -> None:
    """The trigger prefilter never hides a match the full patterns would find."""
    assert rec.find_pii(text) == _reference_kinds(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_PIECES, max_size=12).map("".join), max_size=12))
def test_column_suspects_cover_every_value_holding_pii(values: list[str]) -> None:
    """Joined-column triggering maps every hit back to its value."""
    flagged = {i for i, v in enumerate(values) if rec.find_pii(v)}
    assert flagged <= set(rec.suspects(values))


_COLUMN_VALUES = st.lists(
    st.lists(
        st.one_of(
            _PIECES,
            st.sampled_from(
                [
                    "ann@example.com",
                    "+44 20 7946 0958",
                    "020 7946 0958",
                    "4111 1111 1111 1111",
                    "123-45-6789",
                    "AB123456C",
                    "\x00",
                ]
            ),
        ),
        max_size=8,
    ).map("".join),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(_COLUMN_VALUES)
def test_column_redaction_equals_redacting_each_value(values: list[str]) -> None:
    """Redacting and re-scanning a column as one NUL-joined text finds exactly what
    each value alone gives (a value holding a NUL itself is done alone)."""
    column = list(values)
    counts: dict[str, int] = {}
    candidates = rec.redact_column(column, counts)
    one_by_one: dict[str, int] = {}
    assert column == [rec.redact(v, one_by_one) for v in values]
    assert counts == one_by_one
    assert set(candidates) >= {i for i, v in enumerate(values) if rec.find_pii(v)}
    expected = [
        (i, kind)
        for i, v in enumerate(values)
        for kind in dict.fromkeys(rec.find_pii(v))
    ]
    assert rec.scan_column(values) == expected
    assert rec.scan_column(values, candidates) == expected


# ----------------------------------------------------------------------------- dob


def test_value_cache_gives_the_uncached_tokens_and_stays_bounded() -> None:
    """Repeated values are looked up, unique ones switch the cache off; same output."""
    token = plan_column("name", "pii.name", "tokenize_strict", KEY, "ctx").fn
    assert token is not None
    rng = random.Random(3)
    names = [f"name {i}" for i in range(300)]
    cache = ValueCache(token, limit=256, probe=2000)
    for _ in range(20):
        chunk = [*rng.choices(names, k=500), ""]
        assert cache.map(chunk) == list(map(token, chunk))
        assert len(cache.tokens) <= 256
    assert cache.enabled  # 300 names over 10,000 values: mostly hits
    unique = ValueCache(token, probe=2000)
    for i in range(10):
        chunk = [f"user{i}-{j}@example.com" for j in range(500)]
        assert unique.map(chunk) == list(map(token, chunk))
    assert not unique.enabled
    assert unique.tokens == {}


@pytest.mark.parametrize(
    ("value", "year"),
    [
        ("1987-05-14", "1987"),
        ("19870514", "1987"),
        ("14/05/1987", "1987"),
        (" 1987-05-14 ", "1987"),
        ("2000-02-29", "2000"),
        ("1999-02-29", ""),
        ("1987-13-01", ""),
        ("32/01/1987", ""),
        ("05/14/1987", ""),
        ("1987", ""),
        ("May 14, 1987", ""),
        ("1987-05-14T00:00:00", ""),
        ("\u0661\u0669\u0668\u0667-\u0660\u0665-\u0661\u0664", ""),  # Arabic-Indic
        ("", ""),
    ],
)
def test_dob_is_generalised_to_the_year_of_accepted_formats(
    value: str, year: str
) -> None:
    """YYYY-MM-DD, YYYYMMDD and DD/MM/YYYY (real dates only) give their year."""
    assert dob_year(value) == year


def test_unparseable_dobs_are_emptied_and_counted(tmp_path: Path) -> None:
    """A dob that is not a date becomes empty and is counted as dob_unparsed."""
    out, report = run(
        tmp_path, "dob\n1987-05-14\nsoon\n\n31/02/2000\n", columns={"dob": "pii.dob"}
    )
    assert out == 'dob\n1987\n""\n""\n'
    assert report.transforms["dob"] == {"generalized": 1, "dob_unparsed": 2}


# -------------------------------------------------------------------- report, CSV


def test_report_counts_sizes_and_the_sha256_of_the_output(tmp_path: Path) -> None:
    """bytes_in/out and sha256 describe the actual files."""
    progress: list[tuple[int, int]] = []
    _, report = run(
        tmp_path,
        SOURCE_CSV,
        progress=lambda done, total: progress.append((done, total)),
    )
    data = (tmp_path / "out.csv").read_bytes()
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.bytes_out == len(data)
    assert report.bytes_in == len(SOURCE_CSV.encode())
    assert progress[-1] == (report.bytes_in, report.bytes_in)


def test_csv_dialect_basics_are_kept(tmp_path: Path) -> None:
    """Semicolons and CRLF in, semicolons and CRLF out; quoting is minimal."""
    source = 'id;note\r\n1;"a; b"\r\n2;"say ""hi"""\r\n3;plain\r\n'
    out, _ = run(tmp_path, source, columns={"id": "public", "note": "free_text"})
    assert out == source


def test_quoted_fields_spanning_lines_are_handled(tmp_path: Path) -> None:
    """A quoted newline switches to the csv module and is written back quoted."""
    source = 'id,note\n1,"line one\nline two a@b.io"\n2,"x, y"\n3,z\n'
    out, report = run(tmp_path, source, columns={"id": "public", "note": "free_text"})
    assert out == 'id,note\n1,"line one\nline two [EMAIL]"\n2,"x, y"\n3,z\n'
    assert report.rows == 3


_FIELD = st.lists(
    st.sampled_from(["a", "b c", ",", ";", '"', '""', "\x01", " ", "7", "\n", "\r\n"]),
    max_size=4,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(_FIELD, min_size=3, max_size=3), min_size=1, max_size=30),
    spanning=st.booleans(),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    terminator=st.sampled_from(["\n", "\r\n"]),
    delimiter=st.sampled_from([",", ";"]),
    blanks=st.lists(st.integers(min_value=0, max_value=30), max_size=3),
)
def test_csv_records_read_back_as_the_csv_module_reads_them(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[list[str]],
    spanning: bool,
    quoting: int,
    terminator: str,
    delimiter: str,
    blanks: list[int],
) -> None:
    """Whatever the quoting, terminators, blank lines or fields spanning lines, the
    export holds the records the csv module reads from the source."""
    if not spanning:  # one field spanning lines sends the whole file to csv
        rows = [[f.replace("\r", "").replace("\n", "") for f in row] for row in rows]
    lines = [_row_text(row, delimiter, quoting, terminator) for row in rows]
    for at in sorted(blanks, reverse=True):
        lines.insert(min(at, len(lines)), terminator)
    header = _row_text(["x", "y", "z"], delimiter, quoting, terminator)
    source = header + "".join(lines)
    out, report = run(
        tmp_path_factory.mktemp("records"),
        source,
        columns={"x": "public", "y": "public", "z": "public"},
        preset="none",
    )
    read = [
        r for r in csv.reader(io.StringIO(source, newline=""), delimiter=delimiter) if r
    ]
    assert list(csv.reader(io.StringIO(out, newline=""), delimiter=delimiter)) == read
    assert report.rows == len(read) - 1


def _row_text(row: list[str], delimiter: str, quoting: int, terminator: str) -> str:
    buffer = io.StringIO()
    csv.writer(
        buffer, delimiter=delimiter, quoting=quoting, lineterminator=terminator
    ).writerow(row)
    return buffer.getvalue()


def test_blank_lines_and_a_missing_final_newline_are_tolerated(tmp_path: Path) -> None:
    """Blank lines are skipped (as csv.DictReader does); the last line may end."""
    out, report = run(tmp_path, "a\n1\n\n2", columns={"a": "public"})
    assert out == "a\n1\n2\n"
    assert report.rows == 2


# ------------------------------------------------------------ parallel, streaming


def _write_big_csv(
    path: Path, target: int, *, extra: dict[int, str] | None = None
) -> int:
    """A realistic CSV of about ``target`` bytes; ``extra`` overrides amounts."""
    rng = random.Random(11)
    names = ["Ann Lee", "Bob Ray", "Chen Wu", "Dee Okafor", "Eve Novak"]
    notes = [
        "all good",
        "asked for a refund, order 12345",
        "call back on 020 7946 0958",
        "mail to x.y@example.org please",
        "paid by 4111 1111 1111 1111",
        'said "thanks"',
    ]
    extra = extra or {}
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        while f.tell() < target:
            rows += 1
            writer.writerow(
                [
                    rows,
                    rng.choice(names),
                    f"user{rng.randrange(10**6)}@example.com",
                    f"+44 20 7946 {rng.randrange(10000):04d}",
                    f"{rng.randrange(300)} High St, Leeds",
                    f"19{rng.randrange(40, 99)}-0{rng.randrange(1, 9)}-12",
                    "123-45-6789",
                    "sk_x",
                    extra.get(rows, f"{rng.randrange(10**5) / 100:.2f}"),
                    rng.choice(notes),
                ]
            )
    return rows


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "source.csv"
    _write_big_csv(path, 20 * 1024 * 1024)
    return path


def _export(source: Path, destination: Path, **kwargs: object) -> DlpReport:
    return transform_file(
        source,
        destination,
        columns=COLUMNS,
        preset="tokenize_strict",
        key=KEY,
        context=CONTEXT,
        **kwargs,  # type: ignore[arg-type]
    )


def test_two_workers_write_the_same_bytes_as_one(big_csv: Path, tmp_path: Path) -> None:
    """workers=2 output is byte-identical to workers=1, with the same report."""
    one = _export(big_csv, tmp_path / "one.csv", workers=1)
    two = _export(big_csv, tmp_path / "two.csv", workers=2)
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    assert one == two
    assert two.sha256 == hashlib.sha256((tmp_path / "two.csv").read_bytes()).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.csv", "two.csv"]


def test_parallel_failures_carry_global_row_numbers(tmp_path: Path) -> None:
    """A hit deep in a later range is reported at its row in the whole file."""
    source = tmp_path / "source.csv"
    _write_big_csv(source, 6 * 1024 * 1024, extra={40000: "leak@example.com"})
    for workers in (1, 2):
        with pytest.raises(ResidualPiiError) as caught:
            _export(source, tmp_path / "out.csv", workers=workers)
        assert caught.value.hits == [(40000, "amount", "email")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.csv"]


def test_parallel_falls_back_when_a_quoted_field_spans_lines(tmp_path: Path) -> None:
    """Byte ranges cannot split multi-line fields: workers=2 falls back, same bytes."""
    source = tmp_path / "source.csv"
    _write_big_csv(source, 5 * 1024 * 1024, extra={30000: '"two\nlines"'})
    one = _export(source, tmp_path / "one.csv", workers=1)
    two = _export(source, tmp_path / "two.csv", workers=2)
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    assert one.rows == two.rows


def test_memory_stays_flat_on_a_50_mb_file(tmp_path: Path) -> None:
    """Streaming: a ~50 MB CSV (and a JSONL file) export allocates a few MB at most."""
    blob = " ".join(["lorem ipsum dolor sit amet"] * 80)
    csv_source = tmp_path / "source.csv"
    with csv_source.open("w", encoding="utf-8") as f:
        f.write("id,email,text\n")
        for block in range(230):
            f.write(
                "".join(
                    f'{block * 100 + i},u{i}@example.com,"{blob}, {i}"\n'
                    for i in range(100)
                )
            )
    jsonl_source = tmp_path / "source.jsonl"
    with jsonl_source.open("w", encoding="utf-8") as f:
        for i in range(5000):
            f.write(f'{{"id": {i}, "email": "u{i}@example.com", "text": "{blob}"}}\n')
    assert csv_source.stat().st_size > 50 * 1000 * 1000
    columns = {"id": "public", "email": "pii.email", "text": "free_text"}
    for path in (csv_source, jsonl_source):
        tracemalloc.start()
        try:
            transform_file(
                path,
                tmp_path / f"out{path.suffix}",
                columns=columns,
                preset="tokenize_strict",
                key=KEY,
                context=CONTEXT,
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * 1024 * 1024, (path.name, peak)
