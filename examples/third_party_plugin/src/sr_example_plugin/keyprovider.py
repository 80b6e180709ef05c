"""``example-static``: one AES-256-GCM key-encryption key taken from an environment variable.

The option ``env`` names the variable (default ``SR_EXAMPLE_KEK``); its value is 32 bytes in
base64url. Only the variable's name is kept on the object, so pickling carries no key: the
receiving process reads the variable again.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealed_results import KeyProvider
from sealed_results.errors import ConfigError, IntegrityError, KeyProviderError

__all__ = ["ExampleStaticKeyProvider"]

_FORMAT = 1
_AAD = b"sr-example-plugin/static/v1"
_WRAPPED_SIZE = 1 + 12 + 32 + 16  # format byte, nonce, data key, tag


class ExampleStaticKeyProvider(KeyProvider):
    kind = "example-static"

    def __init__(self, env: str = "SR_EXAMPLE_KEK") -> None:
        if not isinstance(env, str) or not env:
            raise ConfigError("the example-static key provider needs the name of a variable")
        self._env = env

    def settings(self) -> dict[str, Any]:
        # What a copy in another process is built from: the variable's name, never its value.
        return {"env": self._env}

    def _kek(self) -> AESGCM:
        value = os.environ.get(self._env)
        if not value:
            raise KeyProviderError("the example-static key provider's variable is not set")
        try:
            raw = base64.urlsafe_b64decode(value.encode("ascii"))
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) != 32:
            raise ConfigError("the example-static key must be 32 bytes in base64url")
        return AESGCM(raw)

    def _wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        head = bytes([_FORMAT])
        return head + nonce + self._kek().encrypt(nonce, data_key, _AAD + head + context)

    def _unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        if len(wrapped) != _WRAPPED_SIZE or wrapped[0] != _FORMAT:
            raise IntegrityError()
        try:
            return self._kek().decrypt(wrapped[1:13], wrapped[13:], _AAD + wrapped[:1] + context)
        except InvalidTag:
            raise IntegrityError() from None

    def _rotate(self) -> None:
        raise KeyProviderError("the example-static key provider cannot rotate its key")

    def _describe(self) -> dict[str, Any]:
        return {"variable_set": bool(os.environ.get(self._env))}
