"""CountingKeyProvider: a real provider, wrapped to count its round trips.

For measuring what a cache saves (``benchmarks/bench_provider_roundtrips.py``) and for tests that
assert a number of provider calls without mocking the provider: every call still goes through.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from sealed_results.keyproviders.base import KeyProvider

__all__ = ["CountingKeyProvider"]


class CountingKeyProvider(KeyProvider):
    """Delegates every primitive to ``inner`` and counts the calls by name in ``calls``."""

    def __init__(self, inner: KeyProvider) -> None:
        self.inner = inner
        self.kind = inner.kind  # type: ignore[misc]  # stanzas must keep the inner kind
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def settings(self) -> dict[str, Any]:
        return {"inner": self.inner}

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def _generate(self, context: bytes) -> tuple[bytes, bytes]:
        self._count("generate")
        return self.inner.generate_data_key(context)

    def _wrap(self, data_key: bytes, context: bytes) -> bytes:
        self._count("wrap")
        return self.inner.wrap_data_key(data_key, context)

    def _unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        self._count("unwrap")
        return self.inner.unwrap_data_key(wrapped, context)

    def _rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        self._count("rewrap")
        return self.inner.rewrap_data_key(wrapped, context)

    def _rotate(self) -> None:
        self._count("rotate")
        self.inner.rotate()

    def _describe(self) -> dict[str, Any]:
        return self.inner.describe()
