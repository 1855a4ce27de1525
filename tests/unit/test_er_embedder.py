"""The keyed hashing embedder: deterministic, keyed per tenant, text-free."""

from __future__ import annotations

import numpy as np
import pytest

from adapters.er.embedder import (
    ALPHABET,
    FEBRL_FIELDS,
    SYMBOLS,
    HashingEmbedder,
    ngram_table,
)


class TwoTenants:
    """Fixed per-tenant keys (FileSecrets derives them from a master secret)."""

    def tokenization_key(self, tenant: str) -> bytes:
        return {"acme": b"a" * 32, "globex": b"g" * 32}[tenant]


PEOPLE = {
    "given_name": ["james", "jmaes", "olga", "", "josé"],
    "surname": ["waller", "waller", "petrova", "nguyen", "garcia"],
    "street_number": ["21", "21", "7", "", "3"],
    "address_1": ["kingsford street", "kingsford st", "hay road", "", "calle mayor"],
    "postcode": ["2600", "2600", "3000", "4000", "2000"],
    "date_of_birth": ["19700101", "19700101", "19811224", "", "19900505"],
}


def reference(key: bytes, record: dict[str, str], dims: int = 512) -> np.ndarray:
    """One record, one n-gram at a time: the definition the numpy code must meet."""
    acc = np.zeros(dims)
    for field in FEBRL_FIELDS:
        value = record.get(field, "")[:32]
        if not value:
            continue
        codes = [0, *(int(SYMBOLS[min(ord(c), 256)]) for c in value), 0]
        grams = [codes[n] * ALPHABET + codes[n + 1] for n in range(len(codes) - 1)]
        grams += [
            ALPHABET**2 + (codes[n] * ALPHABET + codes[n + 1]) * ALPHABET + codes[n + 2]
            for n in range(len(codes) - 2)
        ]
        buckets, signs = ngram_table(key, field, dims)
        for gram in grams:
            acc[buckets[gram]] += signs[gram] / len(grams) ** 0.5
    norm = np.linalg.norm(acc)
    return acc / norm if norm else acc


class TestHashingEmbedder:
    def test_same_records_give_the_same_vectors_in_any_batch(self) -> None:
        """Deterministic: again, by a new instance, alone or among other records."""
        vectors = HashingEmbedder(TwoTenants()).embed("acme", PEOPLE)
        again = HashingEmbedder(TwoTenants()).embed("acme", PEOPLE)
        alone = HashingEmbedder(TwoTenants()).embed(
            "acme", {f: v[2:3] for f, v in PEOPLE.items()}
        )
        assert np.array_equal(vectors, again)
        np.testing.assert_allclose(alone[0], vectors[2], atol=1e-6)

    def test_vectors_are_unit_length_float32_of_512_dims(self) -> None:
        """L2-normalised float32 rows, one per record."""
        vectors = HashingEmbedder(TwoTenants()).embed("acme", PEOPLE)
        assert vectors.dtype == np.float32
        assert vectors.shape == (5, 512)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    def test_numpy_code_matches_the_per_record_definition(self) -> None:
        """The vectorised path gives the per-n-gram reference's vectors."""
        embedder = HashingEmbedder(TwoTenants())
        vectors = embedder.embed("acme", PEOPLE)
        key = embedder.key("acme")
        for n in range(4):  # the fifth has an accent: folded first, see below
            record = {f: v[n] for f, v in PEOPLE.items()}
            np.testing.assert_allclose(vectors[n], reference(key, record), atol=1e-5)

    def test_a_typo_stays_close_and_another_person_far(self) -> None:
        """Near-duplicates are near neighbours; different people are not."""
        v = HashingEmbedder(TwoTenants()).embed("acme", PEOPLE)
        assert v[0] @ v[1] > 0.7
        assert abs(v[0] @ v[2]) < 0.3

    def test_two_tenants_keys_give_unrelated_vectors(self) -> None:
        """The same record under another tenant's key is as far as a stranger."""
        embedder = HashingEmbedder(TwoTenants())
        acme = embedder.embed("acme", PEOPLE)
        globex = embedder.embed("globex", PEOPLE)
        same_record = np.abs(np.sum(acme * globex, axis=1))
        assert same_record.max() < 0.3
        assert embedder.key("acme") != embedder.key("globex")
        assert not np.array_equal(
            ngram_table(embedder.key("acme"), "surname", 512)[0],
            ngram_table(embedder.key("globex"), "surname", 512)[0],
        )

    def test_accents_fold_and_unknown_fields_are_ignored(self) -> None:
        """josé embeds as jose; a field the embedder does not read changes nothing."""
        embedder = HashingEmbedder(TwoTenants())
        plain = embedder.embed("acme", {"given_name": ["jose"]})
        accented = embedder.embed(
            "acme", {"given_name": ["josé"], "favourite_colour": ["red"]}
        )
        np.testing.assert_allclose(plain, accented, atol=1e-6)

    def test_an_empty_record_is_the_zero_vector(self) -> None:
        """Nothing to hash gives zeros, not NaN."""
        vectors = HashingEmbedder(TwoTenants()).embed("acme", {"surname": [""]})
        assert not np.isnan(vectors).any()
        assert not vectors.any()

    @pytest.mark.parametrize("dims", [64, 512])
    def test_dimensions_are_configurable(self, dims: int) -> None:
        """A smaller space still gives unit rows."""
        vectors = HashingEmbedder(TwoTenants(), dims=dims).embed("acme", PEOPLE)
        assert vectors.shape == (5, dims)
