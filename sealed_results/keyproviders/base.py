"""The key-provider interface: wrap, unwrap, rewrap and rotate data keys.

A provider holds key-encryption keys (KEKs) and never sees payloads. The public methods check
arguments and turn every unexpected failure into ``KeyProviderError``; subclasses override only
the underscore methods (the aws-encryption-sdk habit), so a new provider is a few primitives.

Every wrap binds a ``context``: the 16-byte key id stored in the blob header. A wrapped key moved
into another blob's header therefore fails to unwrap there.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from sealed_results.errors import IntegrityError, KeyProviderError, SealedResultsError

_T = TypeVar("_T")
DATA_KEY_SIZE = 32
KEY_ID_SIZE = 16

__all__ = ["DATA_KEY_SIZE", "KEY_ID_SIZE", "DataKey", "KeyProvider", "Stanza"]


@dataclass(frozen=True, slots=True)
class Stanza:
    """One wrapping of a data key, as stored in a blob header: the provider kind and its bytes."""

    kind: str
    wrapped: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class DataKey:
    """A plaintext data key with the stanzas that wrap it. Never logged: repr shows no bytes."""

    plaintext: bytes = field(repr=False)
    key_id: bytes = field(repr=False)
    stanzas: tuple[Stanza, ...] = field(repr=False)


def _check_context(context: bytes) -> None:
    if not isinstance(context, bytes) or not 1 <= len(context) <= 64:
        raise ValueError("context must be 1 to 64 bytes")


class KeyProvider(abc.ABC):
    """Base of every key provider.

    ``kind`` names the stanza type in blob headers (``"local"``, ``"vault"``, ``"aws-kms"``); it is
    part of the stored format, so it never changes for a provider.
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

    def describe(self) -> dict[str, Any]:
        """Settings safe to print on the user's own terminal (``doctor``). Not for logs."""
        return {"kind": self.kind, **self._call(self._describe)}

    # -- stanza level: what handlers use; composites (several providers, caching) override -----
    def new_data_key(self, size_hint: int | None = None) -> DataKey:
        """A fresh data key for one payload of about ``size_hint`` bytes (None: unknown)."""
        key_id = os.urandom(KEY_ID_SIZE)
        data_key, wrapped = self.generate_data_key(key_id)
        return DataKey(data_key, key_id, (Stanza(self.kind, wrapped),))

    def open_data_key(self, key_id: bytes, stanzas: tuple[Stanza, ...]) -> bytes:
        """Unwrap the first stanza this provider can open."""
        return unwrap_first([self], key_id, stanzas)

    def rewrap_stanzas(self, key_id: bytes, stanzas: tuple[Stanza, ...]) -> tuple[Stanza, ...]:
        """Stanzas re-wrapped under the newest KEK version; stanzas of other kinds are kept."""
        return tuple(
            Stanza(s.kind, self.rewrap_data_key(s.wrapped, key_id)) if s.kind == self.kind else s
            for s in stanzas
        )

    def providers(self) -> tuple[KeyProvider, ...]:
        """The concrete providers behind this one (itself, unless it is a composite)."""
        return (self,)

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except SealedResultsError:
            raise
        except (ValueError, TypeError):
            raise
        except Exception as exc:  # an SDK's own error: keep it as __cause__, show ours
            raise KeyProviderError(f"the {self.kind} key provider failed") from exc

    def __repr__(self) -> str:
        # Paths, addresses and key names would reach the orchestrator through logs: none here.
        return f"<{type(self).__name__}>"


def unwrap_first(
    providers: list[KeyProvider] | tuple[KeyProvider, ...],
    key_id: bytes,
    stanzas: tuple[Stanza, ...],
) -> bytes:
    """Try each provider on each stanza of its kind; the first that opens wins.

    A provider failure (KeyProviderError) is remembered and re-raised only if nothing else opens
    the key, so one unreachable provider does not block reading through another.
    """
    failure: KeyProviderError | None = None
    for provider in providers:
        for stanza in stanzas:
            if stanza.kind != provider.kind:
                continue
            try:
                return provider.unwrap_data_key(stanza.wrapped, key_id)
            except IntegrityError:
                continue
            except KeyProviderError as exc:
                failure = exc
    if failure is not None:
        raise failure
    raise IntegrityError()
