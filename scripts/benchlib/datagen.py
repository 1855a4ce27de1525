"""Deterministic, realistic catalog data and a fixed-seed query mix for bench_core.

Plain module for scripts/bench_core (put on sys.path by the script); product
code never imports it.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass
from typing import Any

SEED = 20240611

# The most common words of the vocabulary: what data catalogs are full of.
_COMMON = """
customer orders order events event sales revenue daily monthly weekly hourly user
users account accounts payment payments invoice invoices product products
inventory stock shipment shipments delivery returns refund refunds transaction
transactions ledger balance billing subscription subscriptions churn cohort
session sessions click clicks page views impression impressions campaign
campaigns marketing email emails survey responses feedback ticket tickets support
agent agents call calls chat messages device devices sensor sensors telemetry
metrics logs audit access login logins signup signups profile profiles address
addresses contact contacts lead leads opportunity pipeline forecast budget cost
costs expense expenses payroll employee employees salary hr hiring candidate
candidates vendor vendors supplier suppliers purchase purchases warehouse store
stores region regional country city zip geo location locations route routes fleet
vehicle vehicles trip trips driver drivers rider riders booking bookings
reservation hotel flight flights airport price prices pricing discount coupon
promo promotion loyalty points reward rewards score scores risk fraud alert alerts
claim claims policy policies patient patients visit visits diagnosis lab labs
prescription pharmacy clinic provider providers member members enrollment
student students course courses grade grades exam attendance teacher school
model models feature features training prediction predictions experiment
experiments variant variants test tests snapshot snapshots raw clean curated
staging mart warehouse lake export import sync batch stream streaming aggregate
summary report reports dashboard kpi finance financial accounting tax taxes
compliance gdpr consent consents privacy retention archive archived history
historical current latest backfill legacy migration master reference lookup
dimension fact facts bridge mapping catalog taxonomy category categories brand
brands segment segments cluster clusters score label labels annotation images
image video videos audio text documents document contract contracts legal
""".split()

_ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s",
           "t", "v", "w", "z", "br", "cr", "dr", "fl", "gr", "kl", "pr", "st", "tr",
           "sh", "ch", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "io", "ou")
_CODAS = ("", "", "n", "r", "s", "l", "x", "m", "nd", "rt", "st")

PURPOSES = ("analytics", "billing", "fraud-detection", "marketing", "research",
            "support", "compliance", "investigation", "personalization",
            "forecasting", "security", "operations")
REGIONS = ("US", "EU", "UK")
LICENSES = ("Internal", "Restricted-TOS", "CC-BY-4.0", "CC-BY-SA-4.0", "CC0-1.0",
            "ODbL-1.0", "Apache-2.0", "MIT", "Proprietary", "Partner-Only",
            "Vendor-EULA", "Public-Domain", "CDLA-Permissive-2.0",
            "CDLA-Sharing-1.0", "Research-Only")
RETENTIONS = ("P30D", "P90D", "P6M", "P1Y", "P2Y", "P5Y", "P7Y", "indefinite")
CONTRACT_STATUSES = ("active", "active", "active", "draft", "suspended", "expired")
CLASSIFICATIONS = ("public", "public", "public", "pii.name", "pii.email",
                   "pii.phone", "pii.address", "pii.dob", "id.national", "secret",
                   "free_text")
COLUMN_WORDS = ("id", "name", "email", "phone", "created_at", "updated_at",
                "amount", "currency", "status", "country", "city", "zip", "street",
                "birth_date", "ssn", "ip", "user_agent", "score", "label", "comment",
                "quantity", "price", "sku", "order_id", "customer_id", "account_id",
                "session_id", "device_id", "lat", "lon", "event_type", "event_time",
                "source", "channel", "campaign_id", "discount", "tax", "total",
                "notes", "owner", "region", "plan", "tier", "balance", "iban")


def _synthetic_words(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    words: list[str] = []
    while len(words) < n:
        syllables = rng.choice((2, 2, 3, 3, 4))
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS)
                    for _ in range(syllables)) + rng.choice(_CODAS)
        if 4 <= len(w) <= 14 and w not in taken:
            taken.add(w)
            words.append(w)
    return words


class Zipf:
    """Weighted choice with weight 1/rank^s (cumulative table + bisect)."""

    def __init__(self, items: list[Any] | tuple[Any, ...], s: float = 1.05) -> None:
        self.items = list(items)
        self.cum = list(itertools.accumulate(1.0 / (r ** s)
                                             for r in range(1, len(items) + 1)))

    def __call__(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_left(self.cum, rng.random() * self.cum[-1])]


@dataclass
class Vocabulary:
    words: list[str]
    word: Zipf
    license: Zipf
    purpose: Zipf
    tag_list: list[str]
    tag: Zipf
    region: Zipf


def vocabulary(size: int = 2000, seed: int = SEED) -> Vocabulary:
    rng = random.Random(seed)
    common = list(dict.fromkeys(_COMMON))
    taken = set(common)
    words = common + _synthetic_words(rng, max(0, size - len(common)), taken)
    words = words[:size]
    # Ranks: common words first (shuffled among themselves), then the long tail.
    head, tail = words[: len(common)], words[len(common):]
    rng.shuffle(head)
    tags = list(dict.fromkeys(
        [*PURPOSES[:4], "pii", "gold", "silver", "bronze", "deprecated", "critical",
         "sla-24h", "sla-1h", "external", "internal", "ml", "bi", "finance", "ops",
         "growth", "product", "security", "raw", "curated", "sandbox"]
        + [f"{rng.choice(common)}-{rng.choice(common)}" for _ in range(200)]
    ))[:100]
    return Vocabulary(
        words=head + tail,
        word=Zipf(head + tail, 1.0),
        license=Zipf(LICENSES, 1.1),
        purpose=Zipf(PURPOSES, 0.8),
        tag_list=tags,
        tag=Zipf(tags, 1.0),
        region=Zipf(REGIONS, 0.5),
    )


def dataset_body(voc: Vocabulary, rng: random.Random, name: str) -> dict[str, Any]:
    """A registration body (API JSON field names, camelCase)."""
    purposes = list(dict.fromkeys(voc.purpose(rng) for _ in range(rng.randint(1, 3))))
    tags = list(dict.fromkeys(voc.tag(rng) for _ in range(rng.randint(0, 4))))
    ncols = rng.randint(3, 12)
    cols = list(dict.fromkeys(rng.choice(COLUMN_WORDS) for _ in range(ncols * 2)))
    cols = cols[:ncols]
    return {
        "name": name,
        "description": " ".join(voc.word(rng) for _ in range(rng.randint(10, 30))),
        "license": voc.license(rng),
        "purposes": purposes,
        "retention": rng.choice(RETENTIONS),
        "region": voc.region(rng),
        "contractVersion": f"v{rng.randint(1, 5)}",
        "contractStatus": rng.choice(CONTRACT_STATUSES),
        "tags": tags,
        "owner": f"team-{voc.words[rng.randrange(40)]}",
        "location": f"{voc.word(rng)}/{name}.{rng.choice(('csv', 'jsonl', 'ndjson'))}",
        "columns": [{"name": c, "classification": rng.choice(CLASSIFICATIONS)}
                    for c in cols],
    }


def dataset_names(voc: Vocabulary, rng: random.Random, n: int) -> list[str]:
    """n distinct slug names of 2-3 Zipf words (numbered on collision)."""
    seen: dict[str, int] = {}
    names = []
    for _ in range(n):
        base = "-".join(voc.word(rng) for _ in range(rng.choice((2, 2, 3))))
        k = seen.get(base, 0)
        seen[base] = k + 1
        names.append(base if k == 0 else f"{base}-{k + 1}")
    return names


def dataset_bodies(n: int, seed: int = SEED) -> list[dict[str, Any]]:
    voc = vocabulary(seed=seed)
    rng = random.Random(seed + 1)
    return [dataset_body(voc, rng, name) for name in dataset_names(voc, rng, n)]


@dataclass(frozen=True)
class Query:
    """One search of the mix: what CatalogQuery and GET /v1/datasets both take."""

    kind: str  # text | text+facet | facet | list
    q: str = ""
    license: str | None = None
    purpose: str | None = None
    region: str | None = None
    tag: str | None = None
    second_page: bool = False

    def params(self) -> dict[str, str]:
        out = {"q": self.q, "license": self.license, "purpose": self.purpose,
               "region": self.region, "tag": self.tag}
        return {k: v for k, v in out.items() if v}


def _facet(voc: Vocabulary, rng: random.Random, exclude: set[str]) -> tuple[str, str]:
    name = rng.choice([f for f in ("license", "purpose", "region", "tag")
                       if f not in exclude])
    value = {"license": voc.license, "purpose": voc.purpose, "region": voc.region,
             "tag": voc.tag}[name](rng)
    return name, value


def query_mix(n: int, seed: int = SEED) -> list[Query]:
    """~40% text (1-2 words), ~30% text + 1 facet, ~20% facets only (1-2),
    ~10% unfiltered listing; ~10% of them also fetch page 2 via the cursor."""
    voc = vocabulary(seed=seed)
    rng = random.Random(seed + 2)
    out = []
    for _ in range(n):
        r = rng.random()
        filters: dict[str, str] = {}
        q = ""
        if r < 0.70:
            q = " ".join(voc.word(rng) for _ in range(rng.choice((1, 1, 2))))
        if 0.40 <= r < 0.70:
            k, v = _facet(voc, rng, set())
            filters[k] = v
        elif 0.70 <= r < 0.90:
            for _ in range(rng.choice((1, 2))):
                k, v = _facet(voc, rng, set(filters))
                filters[k] = v
        kind = ("text" if r < 0.40 else "text+facet" if r < 0.70
                else "facet" if r < 0.90 else "list")
        out.append(Query(kind=kind, q=q, second_page=rng.random() < 0.10, **filters))
    return out
