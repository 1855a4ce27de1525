"""PII recognisers shared by free-text redaction and the export's residual re-scan.

Recognisers: email; phone (+CC / 00CC international, checked against the country's
numbering plan by ``phonenumbers`` (libphonenumber's metadata); common national
formats with spaces, dashes, dots or parentheses, at least 9 digits); payment card
(13-19 digits in groups, issuer prefix and Luhn checked); national id (US SSN
``###-##-####`` checked by python-stdnum's ``us.ssn``, UK National Insurance
``AA 99 99 99 A``). Digits are ASCII digits. The field libraries only run on the
few candidates the patterns found, so they cost nothing on ordinary text.

Speed comes from never running the full patterns over ordinary text: a cheap
trigger (an "@", or a run of 9 digit/separator characters, or a NINO's digits)
starts with a character class, which the regex engine skips in C; the full
patterns then only run on a few characters around each trigger. Every pattern is
linear-time (each repetition is delimited by characters it cannot consume), and
none crosses a NUL, so a whole column can be triggered as one joined string.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from functools import lru_cache
from itertools import accumulate, compress
from operator import add, itemgetter
from typing import TYPE_CHECKING

import phonenumbers
from stdnum.us import ssn as us_ssn

if TYPE_CHECKING:
    from collections.abc import Sequence

EMAIL = "email"
PHONE = "phone"
CARD = "card"
NATIONAL_ID = "national_id"
RECOGNISERS = (EMAIL, PHONE, CARD, NATIONAL_ID)
PLACEHOLDERS = {
    EMAIL: "[EMAIL]",
    PHONE: "[PHONE]",
    CARD: "[CARD]",
    NATIONAL_ID: "[NATIONAL_ID]",
}

# A number only matches where it does not continue a word, a number or a token:
# "tok_0123..." and "ID-555-123-4567" stay untouched.
_START = r"(?<![\w.+/-])"
_END = r"(?!\w|[.-][0-9])"
# The SSN's shape only; which areas, groups and serials are issued (no 000, 666 or
# 9xx area, no 00 group, no 0000 serial, not the numbers published in adverts) is
# python-stdnum's ``us.ssn`` check, run on each candidate.
_SSN = _START + r"[0-9]{3}-[0-9]{2}-[0-9]{4}" + _END
# UK National Insurance number; the prefixes HMRC never issues are excluded.
_NINO = (
    r"(?<!\w)(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?!\w)"
)
# 13+ digits in groups split by one space or dash; issuer and Luhn are checked on
# the candidate, so a longer run is captured whole rather than cut anywhere.
_CARD = _START + r"[0-9](?:[ -]?[0-9]){12,}(?!\w)"
_PHONE = (
    _START + r"(?:"
    # +CC or 00CC, then 9-15 digits split by at most two of " .()-" at a time
    r"(?P<intl>(?:\+|00(?=[0-9]{1,3}[ .-]))(?:[0-9][ .()-]{0,2}){8,14}[0-9])"
    r"|\([0-9]{3,5}\)[ .-]?[0-9]{3,4}[ .-]?[0-9]{3,4}"  # (020) 7946 0958
    r"|[0-9]{3}(?:-[0-9]{3}-|\.[0-9]{3}\.| [0-9]{3} )[0-9]{4}"  # 415-555-2671
    r"|0[0-9]{2,4}[ -][0-9]{3,4}[ -]?[0-9]{3,4}"  # 020 7946 0958, 07700 900123
    r"|0[1-9][0-9]{8,9}"  # 07700900123: bare national numbers with a trunk 0
    r")(?!\w|[ .-][0-9])"
)
_DIGITS = re.compile(
    f"(?P<ssn>{_SSN})|(?P<nino>{_NINO})|(?P<{CARD}>{_CARD})|(?P<{PHONE}>{_PHONE})"
)
# What may hide inside a digit run that is not a card ("ref 12 020 7946 0958").
_NOT_CARD = re.compile(f"(?P<ssn>{_SSN})|(?P<nino>{_NINO})|(?P<{PHONE}>{_PHONE})")
# An email is found from its "@": the domain forwards, the local part backwards
# (matched on the reversed text, as it must be a whole run of local characters).
_DOMAIN = re.compile(r"@(?:[^\W_][\w-]{0,62}\.){1,8}[^\W\d_]{2,24}(?![\w-])")
_LOCAL_REVERSED = re.compile(r"[\w.%+-]{1,64}(?![\w.%+-])")
# Necessary condition for the digit recognisers: phones, cards and SSNs have 9
# digits in a run of digits and " .()-"; a NINO has 6 digits and a letter.
_TRIGGER = re.compile(r"[0-9](?:[0-9 .()-]{7,}[0-9]|[0-9] ?[0-9]{2} ?[0-9]{2} ?[A-D])")
_DIGIT_RUN = re.compile(r"[0-9]+")
_BEFORE = 4  # "+", "(", or a NINO's "AB " precede the run the trigger sees
_AFTER = 4  # room for the patterns' look-aheads past the run
_ISSUER_FIRST_DIGITS = "23456"  # see _card_lengths
_SEP = "\x00"
_SHORTEST = 9  # "AB123456C"; phones, SSNs and cards are longer, emails have "@"
_KIND = {"ssn": NATIONAL_ID, "nino": NATIONAL_ID, CARD: CARD, PHONE: PHONE}
_PRIORITY = {EMAIL: 0, NATIONAL_ID: 1, CARD: 2, PHONE: 3}

Span = tuple[int, int, str]  # start, end, recogniser


@lru_cache(maxsize=4096)
def _valid_international(number: str) -> bool:
    """Whether a +CC / 00CC candidate is a valid number of that country's plan.

    A country code that does not exist, or a number its plan cannot hold
    ("+1 011 555 2671": no US area code starts with 0), is not a phone number.
    ~50 us a call, so only the pattern's candidates get here, and numbers that
    recur (a support line in every ticket) are answered from a bounded cache.
    """
    if number.startswith("00"):
        number = "+" + number[2:]
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(parsed))


def _accepted(match: re.Match[str]) -> bool:
    """Whether a digit-pattern match survives its field library's check."""
    group = match.lastgroup
    if group == "ssn":
        return bool(us_ssn.is_valid(match.group()))
    if group == PHONE and match.group("intl") is not None:
        return _valid_international(match.group())
    return True


def luhn_valid(digits: str) -> bool:
    """Whether a string of ASCII digits passes the Luhn checksum."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if i % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_lengths(digits: str) -> range:  # noqa: PLR0911 - one issuer per line
    """The lengths card networks issue for the prefix of ``digits`` (maybe none).

    Luhn alone passes one random number in ten; requiring a real issuer range
    keeps long numeric ids, timestamps and order numbers out of the [CARD] bucket.
    """
    first2 = int(digits[:2])
    if digits[0] == "4":  # Visa
        return range(13, 20, 3)
    if 51 <= first2 <= 55 or 2221 <= int(digits[:4]) <= 2720:  # Mastercard
        return range(16, 17)
    if first2 in {34, 37}:  # American Express
        return range(15, 16)
    if first2 in {30, 36, 38, 39}:  # Diners Club
        return range(14, 20)
    if first2 == 35:  # JCB
        return range(16, 20)
    if digits[0] == "6" or first2 in {50, 56, 57, 58}:  # Discover, UnionPay, Maestro
        return range(13, 20)
    return range(0)


def is_card_number(digits: str) -> bool:
    """Whether a string of digits is a plausible, Luhn-valid payment card."""
    return (
        13 <= len(digits) <= 19
        and len(digits) in _card_lengths(digits)
        and luhn_valid(digits)
    )


_VALUES = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED = bytes.maketrans(b"0123456789", bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))


class _Luhn:
    """Luhn checks of any slice of a digit string in O(1), from prefix sums.

    A run of digit groups holds many overlapping 13-19 digit slices; checking each
    from scratch let adversarial runs ("4 4 4 4 ...") cost ~10 us a character.
    """

    def __init__(self, digits: str) -> None:
        raw = digits.encode()
        plain, doubled = raw.translate(_VALUES), raw.translate(_DOUBLED)
        # [p][k]: sum over the first k digits at positions of parity p.
        self.plain = [[0, *accumulate(plain[p::2])] for p in (0, 1)]
        self.doubled = [[0, *accumulate(doubled[p::2])] for p in (0, 1)]

    def valid(self, start: int, end: int) -> bool:
        """Whether ``digits[start:end]`` passes Luhn (its last digit not doubled)."""
        r = (end - 1) % 2  # the parity of the digits kept as they are
        q = 1 - r

        def count(p: int, i: int) -> int:  # positions < i of parity p
            return (i - p + 1) // 2

        plain, doubled = self.plain[r], self.doubled[q]
        total = plain[count(r, end)] - plain[count(r, start)]
        total += doubled[count(q, end)] - doubled[count(q, start)]
        return total % 10 == 0


def _has_card(run: str) -> bool:
    """Whether a run of digit groups holds a card number.

    The run may hold a card and neighbouring numbers ("ref 12 4111 1111 1111
    1111"), so slices of whole groups holding 13-19 digits are tried: at most 7
    per group, each O(1), so the work is linear in the run.
    """
    groups = [(m.start(), m.end()) for m in _DIGIT_RUN.finditer(run)]
    digits = "".join(run[a:b] for a, b in groups)
    if len(groups) == 1:
        return is_card_number(digits)
    offsets = list(accumulate((b - a for a, b in groups), initial=0))
    luhn = _Luhn(digits)
    for first in range(len(groups)):
        s = offsets[first]
        if digits[s] not in _ISSUER_FIRST_DIGITS or len(digits) - s < 13:
            continue
        lengths = _card_lengths(digits[s : s + 4])
        for end in range(first, len(groups)):
            n = offsets[end + 1] - s
            if n > 19:
                break
            if n >= 13 and n in lengths and luhn.valid(s, s + n):
                return True
    return False


def _digit_spans(text: str, *, windowed: bool = True) -> list[Span]:
    """Phone, card and national id spans, found around the triggers only.

    Args:
        text: the text.
        windowed: False runs the patterns over the whole text (the reference
            the trigger windows are tested against).
    """
    spans: list[Span] = []
    last = 0
    windows = (
        ((t.start() - _BEFORE, t.end() + _AFTER) for t in _TRIGGER.finditer(text))
        if windowed
        else [(0, len(text))]
    )
    for start, end in windows:
        # pos/endpos keep the text around visible to the look-behinds.
        for match in _DIGITS.finditer(text, max(last, start, 0), min(end, len(text))):
            if match.start() < last:
                continue
            a, b = match.span()
            last = b
            kind = _KIND[match.lastgroup or ""]
            if kind == CARD:
                spans += _card_run_spans(text, a, b)
            elif _accepted(match):
                spans.append((a, b, kind))
    return spans


def _card_run_spans(text: str, a: int, b: int) -> list[Span]:
    """A run of digit groups: one card span if it holds a card, else what it holds.

    The whole run is the card: which neighbouring groups belong to the number is
    ambiguous, and redacting a few digits too many beats leaking some of a card.
    """
    if _has_card(text[a:b]):
        return [(a, b, CARD)]
    stop = min(b + _AFTER, len(text))
    return [
        (*m.span(), _KIND[m.lastgroup or ""])
        for m in _NOT_CARD.finditer(text, a, stop)
        if m.start() < b and _accepted(m)
    ]


def _email_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    at = text.find("@")
    while at >= 0:
        domain = _DOMAIN.match(text, at)
        if domain is not None:
            local = _LOCAL_REVERSED.match(text[max(0, at - 65) : at][::-1])
            if local is not None:
                spans.append((at - local.end(), domain.end(), EMAIL))
        at = text.find("@", at + 1)
    return spans


def pii_spans(text: str, *, windowed: bool = True) -> list[Span]:
    """Non-overlapping ``(start, end, recogniser)`` of the PII in ``text``.

    Where two matches overlap the leftmost wins, then email > national id > card >
    phone. ``windowed`` as in _digit_spans.
    """
    spans = _email_spans(text) if "@" in text else []
    spans += _digit_spans(text, windowed=windowed)
    if len(spans) < 2:
        return spans
    spans.sort(key=lambda s: (s[0], _PRIORITY[s[2]]))
    kept: list[Span] = []
    for span in spans:
        if not kept or span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


def find_pii(text: str) -> list[str]:
    """The recognisers matching in ``text``, in order of appearance (with repeats)."""
    return [kind for _, _, kind in pii_spans(text)]


def redact(text: str, counts: dict[str, int] | None = None) -> str:
    """``text`` with each recognised value replaced by its placeholder.

    Args:
        text: the free text.
        counts: incremented at ``redacted_<recogniser>`` per replacement.
    """
    spans = pii_spans(text)
    return _replaced(text, spans, counts) if spans else text


def _replaced(text: str, spans: list[Span], counts: dict[str, int] | None) -> str:
    parts: list[str] = []
    done = 0
    for start, end, kind in spans:
        parts += (text[done:start], PLACEHOLDERS[kind])
        done = end
        if counts is not None:
            key = "redacted_" + kind
            counts[key] = counts.get(key, 0) + 1
    parts.append(text[done:])
    return "".join(parts)


_EVIDENCE = b"0123456789@" + _SEP.encode()
_NOT_EVIDENCE = bytes(b for b in range(256) if b not in _EVIDENCE)
_MIN_DIGITS = 6  # a NINO's; phones, SSNs and cards have 9 or more
# Truthy for a piece of at least _MIN_DIGITS bytes (a slice, so never raises).
_LONG_ENOUGH = itemgetter(slice(_MIN_DIGITS - 1, _MIN_DIGITS))


def _evidence(text: str) -> bytes:
    """The ASCII digits and NULs of ``text``, each "@" as _MIN_DIGITS of them.

    So a piece of it between NULs is at least _MIN_DIGITS long iff its value
    has that many digits or an "@". Two C passes over the text.
    """
    kept = text.encode("utf-8", "surrogatepass").translate(None, _NOT_EVIDENCE)
    return kept.replace(b"@", b"@" * _MIN_DIGITS) if b"@" in kept else kept


def suspects(values: Sequence[str]) -> list[int]:
    """Indexes of the values that may hold PII (a superset; usually few).

    Every digit pattern needs 6 ASCII digits and an email its "@", so a value
    with fewer digits and no "@" holds no PII. The column is joined by NULs and
    reduced to its evidence (see _evidence); split back at the NULs, the pieces
    long enough are the suspects. No regex and no Python call per value.
    """
    if not values:
        return []
    joined = _SEP.join(values)
    if "@" not in joined and max(map(len, values)) < _SHORTEST:
        return []
    if joined.count(_SEP) != len(values) - 1:
        # A value holds a NUL itself: pieces would not map back, go one by one.
        return [i for i, v in enumerate(values) if _may_hold_pii(v)]
    pieces = _evidence(joined).split(_SEP.encode())
    return list(compress(range(len(values)), map(_LONG_ENOUGH, pieces)))


def _may_hold_pii(value: str) -> bool:
    return len(_evidence(value).replace(_SEP.encode(), b"")) >= _MIN_DIGITS


def _joined(values: list[str]) -> str | None:
    """``values`` joined by NULs; None if a value holds a NUL itself.

    No pattern crosses a NUL, so the recognisers find in the joined text exactly
    what they find in each value, for one call per column instead of per value.
    """
    joined = _SEP.join(values)
    return joined if joined.count(_SEP) == len(values) - 1 else None


def redact_column(values: list[str], counts: dict[str, int]) -> list[int]:
    """Redact a column in place, counting replacements; returns the suspects.

    Values outside the returned indexes were left untouched and cannot hold PII,
    so a re-scan of the output only needs to look at those indexes.
    """
    found = suspects(values)
    if not found:
        return found
    joined = _joined([values[i] for i in found])
    if joined is None:
        for i in found:
            values[i] = redact(values[i], counts)
        return found
    spans = pii_spans(joined)
    if spans:
        # Placeholders hold no NUL: the pieces are the suspects, in order.
        pieces = _replaced(joined, spans, counts).split(_SEP)
        for i, piece in zip(found, pieces, strict=True):
            values[i] = piece
    return found


def scan_column(
    values: Sequence[str], candidates: Sequence[int] | None = None
) -> list[tuple[int, str]]:
    """``(index, recogniser)`` for each value holding PII, once per recogniser.

    Args:
        values: the column.
        candidates: indexes known to cover every suspect (from redact_column);
            computed when None.
    """
    indexes = suspects(values) if candidates is None else candidates
    if not indexes:
        return []
    chosen = [values[i] for i in indexes]
    joined = _joined(chosen)
    if joined is None:
        return [
            (i, kind) for i in indexes for kind in dict.fromkeys(find_pii(values[i]))
        ]
    spans = pii_spans(joined)
    if not spans:
        return []
    # ends[k] is the offset of the separator after value k (== len(joined) at end).
    ends = list(map(add, accumulate(map(len, chosen)), range(len(chosen))))
    hits = {
        (indexes[bisect_right(ends, start)], kind): None for start, _, kind in spans
    }
    return list(hits)
