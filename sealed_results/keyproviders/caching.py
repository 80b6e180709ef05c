"""CachingKeyProvider: key materials that reuse data keys within bounds, for fewer round trips.

It is a layer of key materials over any provider or materials (``MultiKeyProvider`` too), not a
provider: it wraps nothing itself and writes no stanza of its own.

Why reuse is safe for the format: a blob never uses the data key directly. Its payload key and
key commitment come from HKDF over the data key with a fresh random 32-byte salt and the whole
fixed header (object id included) as input, so blobs sharing a data key still get independent
payload keys. The bounds below are therefore about exposure and revocation, not about AES-GCM
limits (docs/keyproviders.md has the trade-off):

- a leaked cached data key opens every blob written under it: ``max_uses`` and ``max_bytes``
  bound how many and how much;
- a revoked or rotated key-encryption key stops new writes only when the cached key ages out
  (``max_age``), and stops reads through this process only when the unwrap cache entry ages
  out (``unwrap_ttl``);
- every blob under one cached data key shares its key id and stanzas: the wrap binds the key id
  of the first blob that used the key, which is the key id the others carry too.

Accounting: a write of unknown size (``size_hint=None``, e.g. ``write_stream``) counts as
``max_bytes``: it always gets a fresh data key, which is then not cached. A write larger than
``max_bytes`` does the same. Any bound set to zero turns the matching cache off. The bounds are
per process: a forked worker keeps counting on its own copy, and a pickled provider carries no
cached key at all (plaintext data keys never travel).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sealed_results.errors import ConfigError
from sealed_results.format.stanza import Stanza
from sealed_results.keyproviders.base import KeyProvider
from sealed_results.keyproviders.materials import DataKey, KeyMaterials, as_materials

__all__ = ["CachingKeyProvider"]


@dataclass
class _Entry:
    data_key: DataKey
    created: float
    uses: int
    bytes: int


class CachingKeyProvider(KeyMaterials):
    """Wraps any provider or materials (a MultiKeyProvider too) with a data-key cache and an
    unwrap cache.

    ``max_age`` seconds, ``max_uses`` writes and ``max_bytes`` bytes bound each cached data key;
    ``unwrap_cache_size`` entries (LRU) for at most ``unwrap_ttl`` seconds bound the unwrap cache.
    ``clock`` is a test seam (seconds, monotonic).
    """

    def __init__(
        self,
        inner: KeyProvider | KeyMaterials,
        *,
        max_age: float = 300.0,
        max_uses: int = 10_000,
        max_bytes: int = 1 << 30,
        unwrap_cache_size: int = 1024,
        unwrap_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(inner, KeyProvider | KeyMaterials):
            raise ConfigError("CachingKeyProvider wraps a KeyProvider instance")
        if min(max_age, max_uses, max_bytes, unwrap_cache_size, unwrap_ttl) < 0:
            raise ConfigError("cache bounds must not be negative (zero turns a cache off)")
        self._inner = as_materials(inner)
        self._max_age, self._max_uses, self._max_bytes = float(max_age), int(max_uses), max_bytes
        self._unwrap_size, self._unwrap_ttl = int(unwrap_cache_size), float(unwrap_ttl)
        self._clock = clock
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._entry: _Entry | None = None
        self._unwrapped: OrderedDict[tuple[bytes, tuple[Stanza, ...]], tuple[bytes, float]] = (
            OrderedDict()
        )

    @property
    def inner(self) -> KeyMaterials:
        return self._inner

    def settings(self) -> dict[str, Any]:
        # Settings only: cached plaintext data keys must never leave this process.
        return {
            "inner": self._inner,
            "max_age": self._max_age,
            "max_uses": self._max_uses,
            "max_bytes": self._max_bytes,
            "unwrap_cache_size": self._unwrap_size,
            "unwrap_ttl": self._unwrap_ttl,
            "clock": self._clock,
        }

    def providers(self) -> tuple[KeyProvider, ...]:
        return self._inner.providers()

    def clear(self) -> None:
        """Forget every cached data key and unwrapped key (e.g. after a revocation)."""
        with self._write_lock:
            self._entry = None
        with self._read_lock:
            self._unwrapped.clear()

    # -- writing ---------------------------------------------------------------------------------
    def _reusable(self) -> bool:
        return self._max_age > 0 and self._max_uses > 0 and self._max_bytes > 0

    def new_data_key(self, size_hint: int | None = None) -> DataKey:
        size = self._max_bytes if size_hint is None else max(0, int(size_hint))
        if not self._reusable() or size >= self._max_bytes:
            # Unknown or large payloads get a key of their own, which is not kept for others.
            return self._remember(self._inner.new_data_key(size_hint))
        with self._write_lock:
            now = self._clock()
            entry = self._entry
            if (
                entry is None
                or now - entry.created >= self._max_age
                or entry.uses >= self._max_uses
                or entry.bytes + size > self._max_bytes
            ):
                # One refresh under the lock: concurrent writers wait for this key rather than
                # each asking the provider for one of their own.
                entry = _Entry(self._inner.new_data_key(size_hint), now, 0, 0)
                self._entry = entry
                self._remember(entry.data_key)
            entry.uses += 1
            entry.bytes += size
            return entry.data_key

    # -- reading ---------------------------------------------------------------------------------
    def _remember(self, data_key: DataKey) -> DataKey:
        """Seed the unwrap cache with a key this process made, so reading back what it just
        wrote costs no round trip. Same key and stanzas as an unwrap would have returned."""
        self._store((data_key.key_id, data_key.stanzas), data_key.plaintext)
        return data_key

    def _store(self, cache_key: tuple[bytes, tuple[Stanza, ...]], plaintext: bytes) -> None:
        if self._unwrap_size <= 0 or self._unwrap_ttl <= 0:
            return
        with self._read_lock:
            self._unwrapped[cache_key] = (plaintext, self._clock() + self._unwrap_ttl)
            self._unwrapped.move_to_end(cache_key)
            while len(self._unwrapped) > self._unwrap_size:
                self._unwrapped.popitem(last=False)

    def open_data_key(self, key_id: bytes, stanzas: tuple[Stanza, ...]) -> bytes:
        # Keyed by the exact stanza bytes: only bytes that already unwrapped once can hit, so a
        # tampered or moved stanza always goes to the provider and fails there.
        cache_key = (key_id, stanzas)
        if self._unwrap_size > 0 and self._unwrap_ttl > 0:
            with self._read_lock:
                hit = self._unwrapped.get(cache_key)
                if hit is not None:
                    if self._clock() < hit[1]:
                        self._unwrapped.move_to_end(cache_key)
                        return hit[0]
                    del self._unwrapped[cache_key]
        # The provider call happens outside the lock: reads of other blobs do not queue here.
        plaintext = self._inner.open_data_key(key_id, stanzas)
        self._store(cache_key, plaintext)
        return plaintext

    def rewrap_stanzas(self, key_id: bytes, stanzas: tuple[Stanza, ...]) -> tuple[Stanza, ...]:
        return self._inner.rewrap_stanzas(key_id, stanzas)

    def rotate(self) -> None:
        self._inner.rotate()
        # New writes in this process move to the new key version at once; other processes
        # follow when their cached key reaches max_age.
        with self._write_lock:
            self._entry = None

    def describe(self) -> dict[str, Any]:
        return {
            **self._inner.describe(),
            "cache": {
                "max_age": self._max_age,
                "max_uses": self._max_uses,
                "max_bytes": self._max_bytes,
                "unwrap_cache_size": self._unwrap_size,
                "unwrap_ttl": self._unwrap_ttl,
            },
        }
