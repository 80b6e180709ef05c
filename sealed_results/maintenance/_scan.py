"""What the maintenance operations share: the scan over stored objects on a small thread pool
(remote stores and providers are latency-bound), progress callbacks, defaults, and the small
helpers that read key versions off headers.

Every report names stored objects only by their opaque reference (the object name: random hex,
or ``keyset``), never by content; errors by their class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sealed_results.errors import (
    SealedResultsError,
)
from sealed_results.format import BlobHeader
from sealed_results.handlers import ResultHandler
from sealed_results.keyproviders import KeyProvider
from sealed_results.maintenance._keys import (
    ProviderState,
    provider_state,
    stanza_version,
)

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_MAX_IN_MEMORY",
    "DEFAULT_RETIRE_WAIT",
    "DEFAULT_SETTLE",
    "DEFAULT_WORKERS",
    "LIST_LIMIT",
    "Progress",
    "current_versions",
    "error_name",
    "is_stale",
    "no_progress",
    "providers_of",
    "run_all",
    "states_of",
    "version_label",
]

T = TypeVar("T")
R = TypeVar("R")

#: ``progress(phase, done, total)``: called as a scan advances (``total`` None: unknown yet).
Progress = Callable[[str, int, int | None], None]

DEFAULT_WORKERS = 8
DEFAULT_BATCH = 256
DEFAULT_SETTLE = 2.0
DEFAULT_MAX_IN_MEMORY = 1 << 30
DEFAULT_RETIRE_WAIT = 300.0
LIST_LIMIT = 1000  # names listed in a report (counts are always complete)


def no_progress(phase: str, done: int, total: int | None) -> None:
    return None


def error_name(exc: BaseException) -> str:
    if isinstance(exc, SealedResultsError):
        return type(exc).__name__
    return f"unexpected {type(exc).__name__}"


def run_all(
    items: Sequence[T],
    fn: Callable[[T], R],
    *,
    workers: int,
    progress: Progress,
    phase: str,
    done_before: int = 0,
    total: int | None = None,
) -> Iterator[tuple[T, R | BaseException]]:
    """``fn`` over ``items`` on ``workers`` threads, results in input order; an exception is
    returned in place of a result (maintenance keeps going and reports it)."""

    def safe(item: T) -> R | BaseException:
        try:
            return fn(item)
        except Exception as exc:
            return exc

    total = len(items) if total is None else total
    if workers <= 1:
        results: Iterable[R | BaseException] = map(safe, items)
        for index, (item, result) in enumerate(zip(items, results, strict=True)):
            progress(phase, done_before + index + 1, total)
            yield item, result
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for index, (item, result) in enumerate(zip(items, pool.map(safe, items), strict=True)):
            progress(phase, done_before + index + 1, total)
            yield item, result


def providers_of(handler: ResultHandler) -> tuple[KeyProvider, ...]:
    return handler.materials.providers()


def states_of(handler: ResultHandler) -> list[ProviderState]:
    return [provider_state(p) for p in providers_of(handler)]


def version_label(version: int | None) -> str:
    return "unknown" if version is None else f"v{version}"


def is_stale(header: BlobHeader, current: dict[str, set[int]]) -> bool:
    """Whether any stanza of a kind with known current versions names another version."""
    for stanza in header.stanzas:
        targets = current.get(stanza.kind)
        if targets:
            version = stanza_version(stanza)
            if version is None or version not in targets:
                return True
    return False


def current_versions(states: Sequence[ProviderState]) -> dict[str, set[int]]:
    current: dict[str, set[int]] = {}
    for state in states:
        if state.current is not None:
            current.setdefault(state.kind, set()).add(state.current)
    return current
