"""Key materials: how a handler gets data keys from its key providers.

The AWS Encryption SDK's materials managers are the model. A ``KeyProvider`` only wraps and
unwraps one data key under its own key-encryption key; ``KeyMaterials`` decides which providers
wrap a new data key (one, or several for a break-glass copy), which stanza of a blob to open
with which provider, and whether a data key may be reused (``CachingKeyProvider``). Handlers
speak only to materials; a plain provider given to a handler is wrapped in
``ProviderMaterials``.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sealed_results.errors import (
    ConfigError,
    IntegrityError,
    KeyProviderError,
    SealedResultsError,
)
from sealed_results.format.stanza import MAX_STANZAS, Stanza
from sealed_results.keyproviders.base import KEY_ID_SIZE, KeyProvider
from sealed_results.pickling import Rebuildable

__all__ = [
    "DataKey",
    "KeyMaterials",
    "MultiKeyProvider",
    "ProviderMaterials",
    "as_materials",
    "rewrap_each",
    "unwrap_first",
]


@dataclass(frozen=True, slots=True)
class DataKey:
    """A plaintext data key with the stanzas that wrap it. Never logged: repr shows no bytes."""

    plaintext: bytes = field(repr=False)
    key_id: bytes = field(repr=False)
    stanzas: tuple[Stanza, ...] = field(repr=False)


class KeyMaterials(Rebuildable, abc.ABC):
    """Data keys for a handler, from one or more key providers."""

    @abc.abstractmethod
    def new_data_key(self, size_hint: int | None = None) -> DataKey:
        """A data key for one payload of about ``size_hint`` bytes (None: unknown), with a
        random key id that every stanza is bound to."""

    @abc.abstractmethod
    def open_data_key(self, key_id: bytes, stanzas: tuple[Stanza, ...]) -> bytes:
        """The data key from the first stanza a provider here opens. IntegrityError when none
        does; KeyProviderError when a provider failed and no other opened it."""

    @abc.abstractmethod
    def rewrap_stanzas(self, key_id: bytes, stanzas: tuple[Stanza, ...]) -> tuple[Stanza, ...]:
        """The stanzas rewrapped under each provider's newest key version; stanzas no provider
        here knows are kept as they are."""

    @abc.abstractmethod
    def providers(self) -> tuple[KeyProvider, ...]:
        """The concrete providers, in the order they are tried."""

    def rotate(self) -> None:
        """A new key-encryption key version in every provider (each is tried even when another
        fails: a new version is harmless to repeat; the failure is raised afterwards)."""
        providers = self.providers()
        failures: list[SealedResultsError] = []
        for provider in providers:
            try:
                provider.rotate()
            except SealedResultsError as exc:
                failures.append(exc)
        if failures:
            raise KeyProviderError(
                f"{len(failures)} of {len(providers)} key providers failed to rotate"
            ) from None

    def describe(self) -> dict[str, Any]:
        """What these materials are made of, for the user's own terminal (``doctor``)."""
        return {"providers": [provider.describe() for provider in self.providers()]}

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class ProviderMaterials(KeyMaterials):
    """One provider: it generates and wraps every data key, and opens stanzas of its kind."""

    def __init__(self, provider: KeyProvider) -> None:
        if not isinstance(provider, KeyProvider):
            raise ConfigError("ProviderMaterials takes a KeyProvider instance")
        self._provider = provider
        self._providers = (provider,)

    def settings(self) -> dict[str, Any]:
        return {"provider": self._provider}

    def providers(self) -> tuple[KeyProvider, ...]:
        return self._providers

    def new_data_key(self, size_hint: int | None = None) -> DataKey:
        key_id = os.urandom(KEY_ID_SIZE)
        data_key, wrapped = self._provider.generate_data_key(key_id)
        return DataKey(data_key, key_id, (Stanza(self._provider.kind, wrapped),))

    def open_data_key(self, key_id: bytes, stanzas: tuple[Stanza, ...]) -> bytes:
        return unwrap_first(self._providers, key_id, stanzas)

    def rewrap_stanzas(self, key_id: bytes, stanzas: tuple[Stanza, ...]) -> tuple[Stanza, ...]:
        return rewrap_each(self._providers, key_id, stanzas)


class MultiKeyProvider(KeyMaterials):
    """``MultiKeyProvider(primary, *others)``: the primary generates, every provider wraps.

    The usual use is a break-glass copy: Vault for day-to-day work plus a KMS key (or an offline
    local keyring) that still opens every result when Vault is down or lost. Every provider
    wraps the same data key (one stanza each, all bound to the same key id); reading tries the
    providers in order until one opens a stanza; rotation rotates every provider, since a
    break-glass wrapping never rotated would be the one stanza left under an old key.

    Nested ones are flattened. A cache belongs outside (``CachingKeyProvider(MultiKeyProvider(
    ...))``), so that one cached data key carries all its stanzas: inside it would cache nothing
    useful, hence a ConfigError.
    """

    def __init__(
        self, primary: KeyProvider | KeyMaterials, *others: KeyProvider | KeyMaterials
    ) -> None:
        providers: list[KeyProvider] = []
        for item in (primary, *others):
            if isinstance(item, MultiKeyProvider):
                providers.extend(item.providers())
            elif isinstance(item, ProviderMaterials):
                providers.append(item.providers()[0])
            elif isinstance(item, KeyMaterials):
                raise ConfigError(
                    "wrap the MultiKeyProvider in the cache, not the cache in the MultiKeyProvider"
                )
            elif isinstance(item, KeyProvider):
                providers.append(item)
            else:
                raise ConfigError("MultiKeyProvider takes KeyProvider instances")
        if len(providers) > MAX_STANZAS:
            raise ConfigError(f"a blob holds at most {MAX_STANZAS} key stanzas")
        self._providers = tuple(providers)

    def __reduce__(self) -> tuple[Any, ...]:
        # Still "pickles as its constructor arguments", which are positional here.
        return (MultiKeyProvider, self._providers)

    def providers(self) -> tuple[KeyProvider, ...]:
        return self._providers

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
        return rewrap_each(self._providers, key_id, stanzas)

    def describe(self) -> dict[str, Any]:
        described: list[dict[str, Any]] = []
        for provider in self._providers:
            try:
                described.append(provider.describe())
            except KeyProviderError as exc:  # doctor should still show the others
                described.append({"kind": provider.kind, "error": str(exc)})
        return {"providers": described}


def as_materials(
    keyprovider: KeyProvider | KeyMaterials | Sequence[KeyProvider | KeyMaterials],
) -> KeyMaterials:
    """What a handler's ``keyprovider=`` argument means: materials as they are, one provider
    alone, or a list of providers that all wrap every data key (``MultiKeyProvider``)."""
    if isinstance(keyprovider, KeyMaterials):
        return keyprovider
    if isinstance(keyprovider, KeyProvider):
        return ProviderMaterials(keyprovider)
    if isinstance(keyprovider, list | tuple):
        return MultiKeyProvider(*keyprovider)
    raise ConfigError("keyprovider must be a KeyProvider instance or a list of them")


# Writers put one stanza per provider; two of one kind (two Vaults) is the most a real header
# has for any one reader's provider.
MAX_TRIES_PER_PROVIDER = 2


def unwrap_first(
    providers: Sequence[KeyProvider], key_id: bytes, stanzas: tuple[Stanza, ...]
) -> bytes:
    """Try each provider on each stanza of its kind; the first that opens wins.

    A provider failure (KeyProviderError) is remembered and re-raised only if nothing else opens
    the key, so one unreachable provider does not block reading through another. Each provider
    tries at most ``MAX_TRIES_PER_PROVIDER`` stanzas: a header is not trusted before a key opens
    it, and junk stanzas of the right kind must not buy an attacker a provider round trip each.
    """
    failure: KeyProviderError | None = None
    for provider in providers:
        tries = 0
        for stanza in stanzas:
            if stanza.kind != provider.kind:
                continue
            if tries == MAX_TRIES_PER_PROVIDER:
                break
            tries += 1
            try:
                return provider.unwrap_data_key(stanza.wrapped, key_id)
            except IntegrityError:
                continue
            except KeyProviderError as exc:
                failure = exc
    if failure is not None:
        raise failure
    raise IntegrityError()


def rewrap_each(
    providers: Sequence[KeyProvider], key_id: bytes, stanzas: tuple[Stanza, ...]
) -> tuple[Stanza, ...]:
    """Each stanza rewrapped by the provider that opens it; kinds nobody here knows are kept.
    Two providers of one kind (two Vaults) are told apart by trying."""
    out = []
    for stanza in stanzas:
        candidates = [p for p in providers if p.kind == stanza.kind]
        if candidates:
            stanza = Stanza(stanza.kind, _rewrap_one(candidates, stanza.wrapped, key_id))
        out.append(stanza)
    return tuple(out)


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
