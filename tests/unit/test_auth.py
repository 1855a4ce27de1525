"""Tokens: claims in, principal out; a remembered signature never outlives exp."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from litestar.exceptions import NotAuthorizedException

from api.auth import CachedToken, is_canonical_jwt, issue_token

SECRET = "s" * 40


def decode(token: str, secret: str = SECRET) -> CachedToken:
    return CachedToken.decode(token, secret, "HS256", require_claims=["exp", "sub"])


def test_issued_tokens_carry_tenant_and_scopes_as_top_level_claims() -> None:
    """Other issuers' tokens with plain tenant/scopes claims read the same way."""
    token = decode(issue_token(SECRET, tenant="acme", scopes=["catalog.read"]))
    assert token.extras["tenant"] == "acme"
    assert token.extras["scopes"] == ["catalog.read"]


def test_a_cached_token_is_refused_once_it_expires() -> None:
    """The signature check is remembered; the expiry is checked every time."""
    raw = issue_token(
        SECRET, tenant="acme", scopes=["catalog.read"], ttl=timedelta(seconds=2)
    )
    assert decode(raw).sub == "cli"
    assert decode(raw).sub == "cli"  # served from the cache
    time.sleep(2.1)
    with pytest.raises(NotAuthorizedException):
        decode(raw)


def test_the_cache_is_keyed_by_secret() -> None:
    """A token verified under one secret is not accepted under another."""
    raw = issue_token(SECRET, tenant="acme", scopes=["catalog.read"])
    decode(raw)
    with pytest.raises(NotAuthorizedException):
        decode(raw, secret="t" * 40)


def test_unknown_scopes_and_bad_tenants_are_refused_at_issue() -> None:
    """The CLI cannot mint tokens the API would silently ignore."""
    with pytest.raises(ValueError, match="unknown scope"):
        issue_token(SECRET, tenant="acme", scopes=["catalog.reed"])
    with pytest.raises(ValueError, match="tenant"):
        issue_token(SECRET, tenant="../etc", scopes=["catalog.read"])


@pytest.mark.parametrize("scope", ["audit.platform", "platform.operate"])
def test_operator_scopes_need_the_explicit_operator_flag(scope: str) -> None:
    """A scope over every tenant is never granted by accident."""
    with pytest.raises(ValueError, match="--operator"):
        issue_token(SECRET, tenant="ops", scopes=["audit.read", scope])
    token = decode(issue_token(SECRET, tenant="ops", scopes=[scope], operator=True))
    assert token.extras["scopes"] == [scope]


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda t: t + "=", id="padding"),
        pytest.param(lambda t: t.replace(".", "=.", 1), id="padded-header"),
        pytest.param(lambda t: t + "AA", id="impossible-length"),
        pytest.param(lambda t: t.replace(".", ". ", 1), id="space"),
        pytest.param(lambda t: t.rsplit(".", 1)[0] + ".", id="empty-signature"),
        pytest.param(lambda t: t + ".e30", id="four-segments"),
    ],
)
def test_only_the_canonical_spelling_of_a_token_decodes(spoil: Any) -> None:
    """Padding, stray characters or segments: 401, before and after a hit."""
    raw = issue_token(SECRET, tenant="acme", scopes=["catalog.read"])
    assert is_canonical_jwt(raw)
    for _ in range(2):  # a refusal is never remembered as valid
        assert not is_canonical_jwt(spoil(raw))
        with pytest.raises(NotAuthorizedException):
            decode(spoil(raw))
        assert decode(raw).sub == "cli"


def test_the_spare_bits_of_the_signature_must_be_zero() -> None:
    """Base64url of 32 bytes has 2 spare bits: set one, the bytes stay the same."""
    header, payload, signature = issue_token(
        SECRET, tenant="acme", scopes=["catalog.read"]
    ).split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = alphabet[alphabet.index(signature[-1]) ^ 1]
    assert not is_canonical_jwt(f"{header}.{payload}.{signature[:-1]}{spare}")
    with pytest.raises(NotAuthorizedException):
        decode(f"{header}.{payload}.{signature[:-1]}{spare}")
