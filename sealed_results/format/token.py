"""Token format v1: what the orchestrator's cloud sees (docs/format.md).

    token = base64url( version(1) || nonce(12) || AES-256-GCM(token key, plaintext, aad) )
    plaintext (64 bytes) = kind(1) || object id(16) || key commitment(32) || zero padding(15)

Every token has the same length (124 characters), so it says nothing of the store, path, key
ids, payload size, type or time. The object id names the blob; the key commitment pins the
exact blob that was written (it survives rotation, which changes only the key section, so old
tokens stay valid). Token keys live in the store under the root, wrapped by the key provider
(see ``keyset``); readers try each token key, newest first, like MultiFernet, because a key
id in the token would reveal which rotation period wrote it.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealed_results.errors import IntegrityError, UnsupportedVersion

__all__ = ["TOKEN_LENGTH", "TOKEN_VERSION", "TokenCodec"]

TOKEN_VERSION = 1
_KIND_BLOB = 1
_PLAIN_SIZE = 64
_AAD = b"sealed-results token v1"
_HASH_INFO = b"sealed-results keyed name v1: "
_RAW_SIZE = 1 + 12 + _PLAIN_SIZE + 16
TOKEN_LENGTH = (_RAW_SIZE * 4 + 2) // 3  # 124, no '=' padding


class TokenCodec:
    """Seals and opens tokens with a list of token keys; the first one seals."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(len(k) != 32 for k in keys):
            raise ValueError("token keys are 32 bytes and there is at least one")
        self._aeads = [AESGCM(k) for k in keys]
        self._primary = bytes(keys[0])

    @property
    def key_count(self) -> int:
        return len(self._aeads)

    def keyed_hash(self, purpose: str, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` under a key derived from the primary token key for
        ``purpose``: deterministic names that reveal nothing without the token keys."""
        key = HKDF(hashes.SHA256(), 32, salt=None, info=_HASH_INFO + purpose.encode()).derive(
            self._primary
        )
        mac = hmac.HMAC(key, hashes.SHA256())
        mac.update(data)
        return mac.finalize()

    def seal(self, object_id: bytes, commitment: bytes, *, nonce: bytes | None = None) -> str:
        """``nonce`` is a test seam; random 96-bit nonces bound a token key to ~2**32 tokens."""
        if len(object_id) != 16 or len(commitment) != 32:
            raise ValueError("object id is 16 bytes and commitment 32")
        nonce = os.urandom(12) if nonce is None else nonce
        plain = bytes([_KIND_BLOB]) + object_id + commitment
        plain += bytes(_PLAIN_SIZE - len(plain))
        head = bytes([TOKEN_VERSION]) + nonce
        raw = head + self._aeads[0].encrypt(nonce, plain, _AAD + head[:1])
        return base64.urlsafe_b64encode(raw).decode("ascii")

    def open(self, token: str) -> tuple[bytes, bytes]:
        """Return (object id, key commitment). Anything else: IntegrityError."""
        if not isinstance(token, str) or len(token) != TOKEN_LENGTH:
            raise IntegrityError()
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise IntegrityError() from None
        # Re-encoding catches non-canonical base64 (other trailing bits) that would decode alike.
        if len(raw) != _RAW_SIZE or base64.urlsafe_b64encode(raw).decode("ascii") != token:
            raise IntegrityError()
        if raw[0] != TOKEN_VERSION:
            raise UnsupportedVersion("this token was written by an unknown token format version")
        nonce, sealed = raw[1:13], raw[13:]
        for aead in self._aeads:
            try:
                plain = aead.decrypt(nonce, sealed, _AAD + raw[:1])
            except InvalidTag:
                continue
            if plain[0] != _KIND_BLOB or any(plain[49:]):
                raise IntegrityError()
            return plain[1:17], plain[17:49]
        raise IntegrityError()
