"""inventory: stored results per key provider and version, from headers (and store sizes)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from sealed_results.errors import (
    ResultNotFound,
    SealedResultsError,
)
from sealed_results.format import BlobHeader
from sealed_results.handlers import ResultHandler
from sealed_results.handlers.base import KEYSET_NAME
from sealed_results.maintenance._journal import (
    load_journal,
)
from sealed_results.maintenance._keys import (
    stanza_version,
)
from sealed_results.maintenance._scan import (
    DEFAULT_WORKERS,
    LIST_LIMIT,
    Progress,
    current_versions,
    error_name,
    is_stale,
    no_progress,
    run_all,
    states_of,
    version_label,
)

__all__ = [
    "Inventory",
    "inventory",
]


@dataclass
class Inventory:
    """Stored results per key provider and key version, from headers only."""

    objects: int = 0
    bytes: int | None = 0
    by_key: list[dict[str, Any]] = field(default_factory=list)
    outdated: int = 0  # results with a stanza below its provider's current version
    providers: list[dict[str, Any]] = field(default_factory=list)
    token_keys: int | None = None
    keyset: list[dict[str, Any]] = field(default_factory=list)
    unreadable: int = 0
    unreadable_objects: list[dict[str, str]] = field(default_factory=list)
    rotation: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.unreadable else 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def _header_of(handler: ResultHandler, name: str) -> tuple[BlobHeader, int | None]:
    """The object's header and its size from ``Store.info`` (None if the store failed to tell;
    ResultNotFound, as for the header, if it is gone)."""
    header = handler.read_header(name)
    try:
        size: int | None = handler.store.info(name).size
    except ResultNotFound:
        raise
    except SealedResultsError:
        size = None
    return header, size


def inventory(
    handler: ResultHandler,
    *,
    workers: int = DEFAULT_WORKERS,
    progress: Progress | None = None,
) -> Inventory:
    """Count stored results and bytes per key provider kind and key version, token-key
    generations, and anything unreadable. Reads headers only: no payload, no provider call
    for results (the keyset is opened to count its token keys)."""
    progress = progress or no_progress
    report = Inventory()
    states = states_of(handler)
    report.providers = [s.to_dict() for s in states]
    current = current_versions(states)
    names = sorted(handler.list_objects())
    rows: Counter[tuple[str, int | None]] = Counter()
    row_bytes: Counter[tuple[str, int | None]] = Counter()
    sizes_known = True
    for name, result in run_all(
        names,
        lambda n: _header_of(handler, n),
        workers=workers,
        progress=progress,
        phase="inventory",
    ):
        if isinstance(result, ResultNotFound):
            continue  # deleted during the scan
        if isinstance(result, BaseException):
            report.unreadable += 1
            if len(report.unreadable_objects) < LIST_LIMIT:
                report.unreadable_objects.append({"object": name, "error": error_name(result)})
            continue
        header, size = result
        report.objects += 1
        if size is None:
            sizes_known = False
        else:
            assert report.bytes is not None or not sizes_known
            report.bytes = (report.bytes or 0) + size
        for stanza in header.stanzas:
            key = (stanza.kind, stanza_version(stanza))
            rows[key] += 1
            row_bytes[key] += size or 0
        if is_stale(header, current):
            report.outdated += 1
    if not sizes_known:
        report.bytes = None
        report.notes.append("the store did not tell the size of every object: bytes unknown")
    report.by_key = [
        {
            "kind": kind,
            "version": version_label(version),
            "objects": count,
            "bytes": row_bytes[(kind, version)] if sizes_known else None,
        }
        for (kind, version), count in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))
    ]
    try:
        if handler.keyset_exists():
            keyset = handler.read_header(KEYSET_NAME)
            report.keyset = [
                {"kind": s.kind, "version": version_label(stanza_version(s))}
                for s in keyset.stanzas
            ]
            report.token_keys = handler.open_keyset()
    except SealedResultsError as exc:
        report.notes.append(f"keyset: {error_name(exc)}: {exc}")
    try:
        journal, _ = load_journal(handler)
    except SealedResultsError as exc:
        report.notes.append(f"rotation journal: {error_name(exc)}")
    else:
        if journal is not None:
            report.rotation = {"state": journal.state, "run": journal.run, "passes": journal.passes}
    return report
