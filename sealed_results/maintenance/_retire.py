"""retire: raise each provider's lowest readable key version, once nothing uses an older one."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from sealed_results.errors import (
    ResultNotFound,
)
from sealed_results.format import BlobHeader, read_header
from sealed_results.handlers import ResultHandler
from sealed_results.handlers.base import KEYSET_NAME
from sealed_results.maintenance._journal import (
    JOURNAL_NAME,
    load_journal,
)
from sealed_results.maintenance._keys import (
    raise_minimum,
    stanza_version,
)
from sealed_results.maintenance._scan import (
    DEFAULT_RETIRE_WAIT,
    DEFAULT_WORKERS,
    LIST_LIMIT,
    Progress,
    current_versions,
    no_progress,
    providers_of,
    run_all,
    states_of,
)

__all__ = [
    "RetireReport",
    "retire",
]


@dataclass
class RetireReport:
    applied: bool
    refused: bool = False
    reason: str = ""
    scanned: int = 0
    remaining: dict[str, int] = field(default_factory=dict)
    remaining_objects: list[str] = field(default_factory=list)
    unreadable: int = 0
    providers: list[dict[str, Any]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.refused else 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def retire(
    handler: ResultHandler,
    *,
    apply: bool = False,
    min_wait: float = DEFAULT_RETIRE_WAIT,
    ignore_unreadable: bool = False,
    workers: int = DEFAULT_WORKERS,
    progress: Progress | None = None,
) -> RetireReport:
    """Raise each provider's lowest readable key version to its current one, once a scan of
    every header (results, keyset, rotation journal) proves nothing uses an older version;
    refuse, naming the count, while anything does. Dry run unless ``apply``.

    ``min_wait``: refuse until this many seconds have passed since the last rotation finished,
    so that writers that cache a data key or a keyring (5 minutes and 30 seconds by default)
    have stopped writing under the old version."""
    progress = progress or no_progress
    report = RetireReport(applied=apply)
    states = states_of(handler)
    report.providers = [s.to_dict() for s in states]
    journal, _ = load_journal(handler)
    if journal is not None and journal.state != "done":
        return _refuse(report, "a rotation is unfinished: run `rotate --apply` to finish it")
    if journal is not None and time.time() - journal.updated < min_wait:
        wait = int(min_wait - (time.time() - journal.updated)) + 1
        return _refuse(
            report,
            f"the last rotation finished less than {int(min_wait)} s ago: writers that cache "
            f"a data key may still write under the old version; try again in {wait} s",
        )
    retirable = [s for s in states if s.kind in ("local", "vault")]
    for state in states:
        if state.kind not in ("local", "vault"):
            report.notes.append(f"{state.kind}: no minimum key version to raise ({state.note})")
    unknown = [s for s in retirable if s.current is None]
    if unknown:
        return _refuse(report, f"{unknown[0].kind}: key versions unknown ({unknown[0].note})")
    current = current_versions(retirable)
    names = sorted([*handler.list_objects(), KEYSET_NAME])
    remaining: Counter[str] = Counter()
    for name, result in run_all(
        names, handler.read_header, workers=workers, progress=progress, phase="retire scan"
    ):
        if isinstance(result, ResultNotFound):
            continue
        if isinstance(result, BaseException):
            report.unreadable += 1
            continue
        report.scanned += 1
        old = _old_stanzas(result, current)
        if old:
            remaining.update(old)
            if len(report.remaining_objects) < LIST_LIMIT:
                report.remaining_objects.append(name)
    if journal is not None:
        try:
            header = _journal_header(handler)
        except ResultNotFound:
            header = None
        if header is not None and _old_stanzas(header, current):
            remaining.update(_old_stanzas(header, current))
    report.remaining = dict(remaining)
    if remaining:
        total = len(report.remaining_objects)
        return _refuse(
            report,
            f"{total} stored object(s) still use a key version below the current one "
            f"({', '.join(f'{k}: {n}' for k, n in sorted(remaining.items()))}); run "
            "`sealed-results rotate --apply --rewrap-only`, then retire again",
        )
    if report.unreadable and not ignore_unreadable:
        return _refuse(
            report,
            f"{report.unreadable} object(s) have unreadable headers, so their key versions "
            "are unknown (see verify; --ignore-unreadable to retire anyway)",
        )
    for provider, state in zip(providers_of(handler), states, strict=True):
        if state.kind not in ("local", "vault") or state.current is None:
            continue
        if state.minimum is not None and state.minimum >= state.current:
            report.actions.append(f"{state.kind}: nothing to retire (minimum is current)")
            continue
        if apply:
            report.actions.append(raise_minimum(provider, state.current))
        else:
            report.actions.append(
                f"{state.kind}: would make v{state.current} the lowest readable version"
            )
    if not apply:
        report.notes.append("dry run: nothing was changed (add --apply)")
    else:
        report.providers = [s.to_dict() for s in states_of(handler)]
    return report


def _journal_header(handler: ResultHandler) -> BlobHeader | None:
    source = handler.store.open(JOURNAL_NAME)
    try:
        return read_header(source)
    finally:
        source.close()


def _old_stanzas(header: BlobHeader, current: dict[str, set[int]]) -> list[str]:
    old = []
    for stanza in header.stanzas:
        targets = current.get(stanza.kind)
        if not targets:
            continue
        version = stanza_version(stanza)
        if version is None or version < min(targets):
            old.append(stanza.kind)
    return old


def _refuse(report: RetireReport, reason: str) -> RetireReport:
    report.refused = True
    report.reason = reason
    return report
