"""MultiKeyProvider: several key providers wrap the same data key; any one of them opens it.

The usual use is a break-glass copy: Vault for day-to-day work plus a KMS key (or an offline
local keyring) that still opens every result when Vault is down or lost. The primary generates
each data key, every other provider wraps that same key (one stanza each, all bound to the same
key id), and reading tries the providers in order until one opens a stanza.

This is a composite that works on stanzas. Its ``kind`` ("multi") is never written into a blob:
each stanza carries the kind of the provider that made it.

Rotation rotates every provider: a break-glass wrapping that is never rotated would be the one
stanza left under an old key-encryption key after ``sealed-results rotate``. Each provider is
tried even when another fails (a new KEK version is harmless to repeat), and the failure is
raised afterwards, so the operator sees it and runs rotate again.
"""

from __future__ import annotations

import os
from typing import Any

from sealed_results.envelope import MAX_STANZAS
from sealed_results.errors import ConfigError, IntegrityError, KeyProviderError, SealedResultsError
from sealed_results.keyproviders.base import (
    KEY_ID_SIZE,
    DataKey,
    KeyProvider,
    Stanza,
    unwrap_first,
)

__all__ = ["MultiKeyProvider"]


class MultiKeyProvider(KeyProvider):
    """``MultiKeyProvider(primary, *others)``: the primary generates, every provider wraps.

    Nested MultiKeyProviders are flattened. A caching wrapper belongs outside, around the
    MultiKeyProvider (``CachingKeyProvider(MultiKeyProvider(...))``), so that one cached data
    key carries all its stanzas; inside it would cache nothing useful, hence a ConfigError.
    """

    kind = "multi"

    def __init__(self, primary: KeyProvider, *others: KeyProvider) -> None:
        providers: list[KeyProvider] = []
        for provider in (primary, *others):
            if not isinstance(provider, KeyProvider):
                raise ConfigError("MultiKeyProvider takes KeyProvider instances")
            if isinstance(provider, MultiKeyProvider):
                providers.extend(provider.providers())
            elif provider.providers() != (provider,):
                raise ConfigError(
                    "wrap the MultiKeyProvider in the cache, not the cache in the MultiKeyProvider"
                )
            else:
                providers.append(provider)
        if len(providers) > MAX_STANZAS:
            raise ConfigError(f"a blob holds at most {MAX_STANZAS} key stanzas")
        self._providers = tuple(providers)

    def __getstate__(self) -> dict[str, Any]:
        return {"_providers": self._providers}  # each provider pickles without secrets

    def providers(self) -> tuple[KeyProvider, ...]:
        return self._providers

    # -- stanza level ----------------------------------------------------------------------------
    def new_data_key(self, size_hint: int | None = None) -> DataKey:
        key_id = os.urandom(KEY_ID_SIZE)
        primary, *others = self._providers
        data_key, wrapped = primary.generate_data_key(key_id)
        stanzas = [Stanza(primary.kind, wrapped)]
        # Every provider must wrap: a blob silently missing its break-glass stanza would only
        # be found out on the day it is needed.
        for provider in others:
            stanzas.append(Stanza(provider.kind, provider.wrap_data_key(data_key, key_id)))
        return DataKey(data_key, key_id, tuple(stanzas))

    def open_data_key(self, key_id: bytes, stanzas: tuple[Stanza, ...]) -> bytes:
        return unwrap_first(self._providers, key_id, stanzas)

    def rewrap_stanzas(self, key_id: bytes, stanzas: tuple[Stanza, ...]) -> tuple[Stanza, ...]:
        """Each stanza rewrapped by the provider that opens it; kinds nobody here knows are
        kept as they are. Two providers of one kind (two Vaults) are told apart by trying."""
        out = []
        for stanza in stanzas:
            candidates = [p for p in self._providers if p.kind == stanza.kind]
            if candidates:
                stanza = Stanza(stanza.kind, _rewrap_one(candidates, stanza.wrapped, key_id))
            out.append(stanza)
        return tuple(out)

    # -- primitives: a composite has no single wrapping, so these are not meaningful ------------
    def _wrap(self, data_key: bytes, context: bytes) -> bytes:
        raise TypeError("MultiKeyProvider works on stanzas: use new_data_key / open_data_key")

    def _unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        raise TypeError("MultiKeyProvider works on stanzas: use new_data_key / open_data_key")

    def _rotate(self) -> None:
        failures: list[SealedResultsError] = []
        for provider in self._providers:
            try:
                provider.rotate()
            except SealedResultsError as exc:
                failures.append(exc)
        if failures:
            raise KeyProviderError(
                f"{len(failures)} of {len(self._providers)} key providers failed to rotate"
            ) from failures[0]

    def describe(self) -> dict[str, Any]:
        described: list[dict[str, Any]] = []
        for provider in self._providers:
            try:
                described.append(provider.describe())
            except SealedResultsError as exc:  # doctor should still show the others
                described.append({"kind": provider.kind, "error": str(exc)})
        return {"kind": self.kind, "providers": described}


def _rewrap_one(candidates: list[KeyProvider], wrapped: bytes, key_id: bytes) -> bytes:
    failure: KeyProviderError | None = None
    for provider in candidates:
        try:
            return provider.rewrap_data_key(wrapped, key_id)
        except IntegrityError:
            continue  # not this provider's stanza (or bad bytes): try the next of this kind
        except KeyProviderError as exc:
            failure = exc
    if failure is not None:
        raise failure
    raise IntegrityError()
