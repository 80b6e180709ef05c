"""The key-provider interface: generate, wrap, unwrap, rewrap and rotate data keys; describe.

A provider holds key-encryption keys (KEKs) and never sees payloads or storage. The public
methods check arguments and turn every unexpected failure into ``KeyProviderError``; a provider
implements the underscore primitives (the aws-encryption-sdk habit: ``_wrap``, ``_unwrap`` and
``_rotate`` are required, ``_generate``, ``_rewrap`` and ``_describe`` optional), so a new
provider is a few methods, documented in docs/config.md and checked by
``sealed_results.testing.KeyProviderSuite``. How several providers combine, and caching, are
the key-materials layer's business (``keyproviders.materials``), not a provider's.

Every wrap binds a ``context``: the 16-byte key id stored in the blob header. A wrapped key moved
into another blob's header therefore fails to unwrap there.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from sealed_results.errors import (
    ConfigError,
    IntegrityError,
    KeyProviderError,
    SealedResultsError,
)
from sealed_results.pickling import Rebuildable

_T = TypeVar("_T")
DATA_KEY_SIZE = 32
KEY_ID_SIZE = 16

__all__ = ["DATA_KEY_SIZE", "KEY_ID_SIZE", "KeyProvider"]


def _check_context(context: bytes) -> None:
    if not isinstance(context, bytes) or not 1 <= len(context) <= 64:
        raise ValueError("context must be 1 to 64 bytes")


class KeyProvider(Rebuildable, abc.ABC):
    """Base of every key provider.

    ``kind`` names the stanza type in blob headers (``"local"``, ``"vault"``, ``"aws-kms"``); it is
    part of the stored format, so it never changes for a provider. ``settings()`` returns the
    constructor arguments a copy in another process is built from: never a secret.
    """

    kind: ClassVar[str]

    # -- primitives: subclasses implement these ------------------------------------------------
    def _generate(self, context: bytes) -> tuple[bytes, bytes]:
        """Return ``(plaintext_data_key, wrapped)``. Default: a local random key, then ``_wrap``."""
        data_key = os.urandom(DATA_KEY_SIZE)
        return data_key, self._wrap(data_key, context)

    @abc.abstractmethod
    def _wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    @abc.abstractmethod
    def _unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Raise IntegrityError for bytes that do not verify, KeyProviderError for refusals."""

    def _rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Re-wrap under the newest KEK version. Providers with server-side rewrap override this
        so the plaintext data key never leaves the provider."""
        return self._wrap(self._unwrap(wrapped, context), context)

    @abc.abstractmethod
    def _rotate(self) -> None: ...

    def _describe(self) -> dict[str, Any]:
        return {}

    # -- public API: validates, then calls the primitives ------------------------------------
    def generate_data_key(self, context: bytes) -> tuple[bytes, bytes]:
        _check_context(context)
        data_key, wrapped = self._call(self._generate, context)
        if len(data_key) != DATA_KEY_SIZE:
            raise KeyProviderError("the key provider returned a data key of the wrong size")
        return data_key, wrapped

    def wrap_data_key(self, data_key: bytes, context: bytes) -> bytes:
        _check_context(context)
        if len(data_key) != DATA_KEY_SIZE:
            raise ValueError("data keys are 32 bytes")
        return self._call(self._wrap, data_key, context)

    def unwrap_data_key(self, wrapped: bytes, context: bytes) -> bytes:
        _check_context(context)
        data_key = self._call(self._unwrap, wrapped, context)
        if len(data_key) != DATA_KEY_SIZE:
            raise IntegrityError()
        return data_key

    def rewrap_data_key(self, wrapped: bytes, context: bytes) -> bytes:
        _check_context(context)
        return self._call(self._rewrap, wrapped, context)

    def rotate(self) -> None:
        """Create a new key-encryption key version and make it the one new wraps use."""
        self._call(self._rotate)

    def _retire_below(self, version: int) -> str:
        raise ConfigError(f"the {self.kind} key provider has no minimum key version to raise")

    def retire_below(self, version: int) -> str:
        """Make ``version`` the lowest key-encryption key version this provider still opens
        (after every stored data key was rewrapped past the older ones); what was done, in
        words fit for a terminal. ConfigError where the provider has no such minimum."""
        if not isinstance(version, int) or version < 1:
            raise ValueError("key versions start at 1")
        return self._call(self._retire_below, version)

    def describe(self) -> dict[str, Any]:
        """Settings safe to print on the user's own terminal (``doctor``). Not for logs."""
        return {"kind": self.kind, **self._call(self._describe)}

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except SealedResultsError:
            raise
        except (ValueError, TypeError):
            raise
        except Exception:
            # An SDK's message names addresses and keys, and a formatted traceback would carry
            # it to the orchestrator: it stays reachable as __context__ for local debugging.
            raise KeyProviderError(f"the {self.kind} key provider failed") from None

    def __repr__(self) -> str:
        # Paths, addresses and key names would reach the orchestrator through logs: none here.
        return f"<{type(self).__name__}>"
