"""Token format v1: fixed length, opaque, authenticated, rotatable."""

from __future__ import annotations

import base64
import os

import pytest

from sealed_results.errors import IntegrityError, UnsupportedVersion
from sealed_results.format.token import TOKEN_LENGTH, TokenCodec

KEY = os.urandom(32)
OID, COMMIT = os.urandom(16), os.urandom(32)


def test_round_trip_and_fixed_length() -> None:
    codec = TokenCodec([KEY])
    token = codec.seal(OID, COMMIT)
    assert len(token) == TOKEN_LENGTH == 124
    assert codec.open(token) == (OID, COMMIT)
    assert token.isascii() and "=" not in token
    # Random nonces: the same object gives unlinkable tokens.
    assert codec.seal(OID, COMMIT) != token


def test_every_character_changed_fails() -> None:
    codec = TokenCodec([KEY])
    token = codec.seal(OID, COMMIT)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(token)):
        replacement = alphabet[(alphabet.index(token[i]) + 1) % 64]
        with pytest.raises(IntegrityError):
            codec.open(token[:i] + replacement + token[i + 1 :])


@pytest.mark.parametrize("bad", ["", "x", "A" * 123, "A" * 125, "é" * 124, 123, None])
def test_malformed_tokens(bad: object) -> None:
    with pytest.raises(IntegrityError):
        TokenCodec([KEY]).open(bad)  # type: ignore[arg-type]


def test_foreign_key_fails() -> None:
    token = TokenCodec([os.urandom(32)]).seal(OID, COMMIT)
    with pytest.raises(IntegrityError):
        TokenCodec([KEY]).open(token)


def test_rotation_keeps_old_tokens() -> None:
    old = TokenCodec([KEY]).seal(OID, COMMIT)
    rotated = TokenCodec([os.urandom(32), KEY])
    assert rotated.open(old) == (OID, COMMIT)
    new = rotated.seal(OID, COMMIT)
    with pytest.raises(IntegrityError):
        TokenCodec([KEY]).open(new)


def test_unknown_version_is_unsupported() -> None:
    raw = bytearray(base64.urlsafe_b64decode(TokenCodec([KEY]).seal(OID, COMMIT)))
    raw[0] = 2
    with pytest.raises(UnsupportedVersion):
        TokenCodec([KEY]).open(base64.urlsafe_b64encode(bytes(raw)).decode())


def test_non_canonical_base64_is_refused() -> None:
    token = TokenCodec([KEY]).seal(OID, COMMIT)
    # 93 bytes encode to exactly 124 characters with no spare bits; padding is not accepted.
    with pytest.raises(IntegrityError):
        TokenCodec([KEY]).open(token[:-1] + "=")
