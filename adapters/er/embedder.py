"""A keyed, text-free record embedder: hashed character 2-3-grams, in numpy.

Each field value is cut into character 2- and 3-grams (with a boundary mark at
both ends). Every n-gram is hashed, with a key derived from the tenant's
secret, to one of ``dims`` buckets and a sign; a record's vector is the signed
sum over its fields (each field scaled to unit weight), L2-normalised. Plain
n-gram hashes could be dictionary-attacked (hash every name, compare vectors);
without the tenant key the bucket of an n-gram is unknown, so they cannot.

The keyed hash of an n-gram is a lookup in a per (key, field) table filled by
keyed BLAKE2b in counter mode: entry ``i`` is 16 bits of
``BLAKE2b(key, salt=field, counter=i // 32)``. The n-gram alphabet is small
(letters, digits, separator, other, boundary: 39 symbols, 60,840 n-grams), so
one table per field is 120 KB, is built in a few milliseconds and turns the
per-record work into array indexing and one ``bincount``. Values live only in
the arrays of one call; nothing here stores or logs them.
"""

from __future__ import annotations

import hashlib
import unicodedata
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

    from application.ports import TenantSecrets

FEBRL_FIELDS = (
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
)
"""Febrl's field names (soc_sec_id is left out: real inputs rarely carry one)."""

ALPHABET = 39
"""0 boundary, 1-26 letters, 27-36 digits, 37 separator, 38 anything else."""
NGRAMS = ALPHABET**2 + ALPHABET**3
MAX_WIDTH = 32
"""Characters of a value that count (longer values are cut)."""
CHUNK = 4096
"""Records per bincount (bounds the temporary arrays to a few MB)."""


def _symbol_table() -> npt.NDArray[np.uint8]:
    table = np.full(257, 38, dtype=np.uint8)  # 256: every code point above 255
    table[0] = 0
    for offset, char in enumerate("abcdefghijklmnopqrstuvwxyz", start=1):
        table[ord(char)] = table[ord(char.upper())] = offset
    for offset, char in enumerate("0123456789", start=27):
        table[ord(char)] = offset
    for char in " \t-_.,/'&()#":
        table[ord(char)] = 37
    return table


SYMBOLS = _symbol_table()


def embedding_key(tokenization_key: bytes) -> bytes:
    """The embedder's own key, derived from the tenant key (domain-separated)."""
    return hashlib.blake2b(
        b"conductor/er-embedding/v1", key=tokenization_key[:64], digest_size=32
    ).digest()


@lru_cache(maxsize=512)
def ngram_table(
    key: bytes, field: str, dims: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """Bucket and sign of every n-gram id of ``field`` under ``key``."""
    salt = hashlib.blake2b(field.encode(), digest_size=16).digest()
    blocks = -(-NGRAMS * 2 // 64)
    stream = b"".join(
        hashlib.blake2b(
            i.to_bytes(8, "big"), key=key, salt=salt, person=b"er-ngram-v1"
        ).digest()
        for i in range(blocks)
    )
    raw = np.frombuffer(stream[: NGRAMS * 2], dtype="<u2")
    buckets = (raw & 0x7FFF).astype(np.intp) % dims
    signs = np.where(raw & 0x8000, -1.0, 1.0).astype(np.float32)
    buckets.flags.writeable = False
    signs.flags.writeable = False
    return buckets, signs


def _fold(values: Sequence[str]) -> Sequence[str]:
    """Accents off (é -> e) when a column has any non-ASCII text; else as is."""
    if "".join(values).isascii():
        return values
    return [
        unicodedata.normalize("NFKD", v).encode("ascii", "ignore").decode()
        for v in values
    ]


def ngram_ids(
    values: Sequence[str],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """(rows x windows) n-gram ids of each value and which windows are real."""
    folded = _fold(values)
    width = min(max((len(v) for v in folded), default=0), MAX_WIDTH)
    rows = len(folded)
    padded = np.zeros((rows, width + 2), dtype=np.intp)
    if width:
        points = np.array(folded, dtype=f"<U{width}").view(np.uint32)
        padded[:, 1 : width + 1] = SYMBOLS[np.minimum(points.reshape(rows, width), 256)]
    first, second, third = padded[:, :-2], padded[:, 1:-1], padded[:, 2:]
    bigrams = padded[:, :-1] * ALPHABET + padded[:, 1:]
    trigrams = ALPHABET**2 + (first * ALPHABET + second) * ALPHABET + third
    ids = np.concatenate([bigrams, trigrams], axis=1)
    # A window counts if it touches the value: bigrams with a character,
    # trigrams centred on one. So the trailing padding a wider neighbour in
    # the batch brings adds nothing: a record embeds the same in any batch.
    real = np.concatenate(
        [(padded[:, :-1] != 0) | (padded[:, 1:] != 0), second != 0], axis=1
    )
    return ids, real


class HashingEmbedder:
    """Keyed character 2-3-gram hashing into ``dims`` float32 dimensions."""

    def __init__(
        self,
        secrets: TenantSecrets,
        *,
        fields: Sequence[str] = FEBRL_FIELDS,
        dims: int = 512,
    ) -> None:
        self._secrets = secrets
        self.fields = tuple(fields)
        self.dims = dims
        self.name = f"hash-ngram-2-3/blake2b-keyed/{dims}"

    def key(self, tenant: str) -> bytes:
        return embedding_key(self._secrets.tokenization_key(tenant))

    def embed(
        self, tenant: str, columns: Mapping[str, Sequence[str]]
    ) -> npt.NDArray[np.float32]:
        """One L2-normalised row per record; missing fields count as empty."""
        key = self.key(tenant)
        rows = len(next(iter(columns.values()), ()))
        out = np.empty((rows, self.dims), dtype=np.float32)
        for start in range(0, rows, CHUNK):
            stop = min(start + CHUNK, rows)
            part = {f: v[start:stop] for f, v in columns.items() if f in self.fields}
            out[start:stop] = self._embed_chunk(key, part, stop - start)
        return out

    def _embed_chunk(
        self, key: bytes, columns: Mapping[str, Sequence[str]], rows: int
    ) -> npt.NDArray[np.float32]:
        flat: list[npt.NDArray[np.intp]] = []
        weights: list[npt.NDArray[np.float32]] = []
        base = (np.arange(rows, dtype=np.intp) * self.dims)[:, None]
        for field in self.fields:
            values = columns.get(field)
            if values is None:
                continue
            ids, real = ngram_ids(values)
            if not ids.size:
                continue
            buckets, signs = ngram_table(key, field, self.dims)
            count = real.sum(axis=1, keepdims=True)
            # Each field weighs the same however long its value is.
            scale = (1.0 / np.sqrt(np.maximum(count, 1))).astype(np.float32)
            flat.append((base + buckets[ids])[real])
            weights.append((signs[ids] * scale)[real])
        if not flat:
            return np.zeros((rows, self.dims), dtype=np.float32)
        summed = np.bincount(
            np.concatenate(flat),
            weights=np.concatenate(weights),
            minlength=rows * self.dims,
        ).reshape(rows, self.dims)
        norms = np.linalg.norm(summed, axis=1, keepdims=True)
        return (summed / np.where(norms == 0, 1.0, norms)).astype(np.float32)
