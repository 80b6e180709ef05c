"""gc: delete stored results older than a bound by the store's time, and sweep the store's
litter (temporary files of interrupted writes). Never the keyset or the rotation journal."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sealed_results.errors import ConfigError, ResultNotFound, SealedResultsError
from sealed_results.handlers import ResultHandler
from sealed_results.handlers.base import is_object_name
from sealed_results.maintenance._scan import (
    DEFAULT_WORKERS,
    LIST_LIMIT,
    Progress,
    error_name,
    no_progress,
    run_all,
)
from sealed_results.stores import Store

__all__ = [
    "SWEEP_MIN_AGE",
    "GcReport",
    "gc",
    "parse_duration",
]

#: Litter younger than this is never swept, whatever the bound: a slow write may still own it.
SWEEP_MIN_AGE = 3600.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | float | timedelta) -> timedelta:
    """``"30d"``, ``"12h"``, ``"1d12h"``, ``"90m"``, ``"45s"``, ``"2w"``, or seconds."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float):
        return timedelta(seconds=float(text))
    compact = text.strip().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts).lower() != compact.lower():
        raise ConfigError("a duration is a number with a unit: 45s, 90m, 12h, 30d, 2w, 1d12h")
    return timedelta(seconds=sum(float(n) * _UNITS[u.lower()] for n, u in parts))


@dataclass
class GcReport:
    applied: bool
    older_than_seconds: float
    cutoff: str
    scanned: int = 0
    candidates: int = 0
    candidate_bytes: int = 0
    deleted: int = 0
    kept: int = 0
    unknown_age: int = 0
    failed: int = 0
    swept: int = 0  # litter of interrupted writes removed (Store.sweep): temporary files
    failures: list[dict[str, str]] = field(default_factory=list)
    candidate_objects: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def gc(
    handler: ResultHandler,
    older_than: str | float | timedelta,
    *,
    apply: bool = False,
    now: datetime | None = None,
    workers: int = DEFAULT_WORKERS,
    progress: Progress | None = None,
) -> GcReport:
    """Delete stored results whose store time (``Store.info``) is older than ``older_than``.
    Never the keyset or the rotation journal (only result names are considered), never an
    object whose time the store does not tell. Applied, it then sweeps the store's litter
    (``Store.sweep``: temporary files that interrupted writes left) unchanged for as long, or
    an hour at least. Dry run unless ``apply``."""
    progress = progress or no_progress
    bound = parse_duration(older_than)
    if bound <= timedelta(0):
        raise ConfigError("--older-than must be a positive duration")
    if type(handler.store).info is Store.info:  # the default: sizes, but no times
        raise ConfigError("this store does not report object times, which gc needs")
    cutoff = (now or datetime.now(UTC)) - bound
    report = GcReport(apply, bound.total_seconds(), cutoff.isoformat())
    # Result names only: never the keyset or the journal, whatever list_objects lets through.
    names = sorted(n for n in handler.list_objects() if is_object_name(n))
    old: list[str] = []
    for name, result in run_all(
        names,
        handler.store.info,
        workers=workers,
        progress=progress,
        phase="gc scan",
    ):
        if isinstance(result, ResultNotFound):
            continue
        report.scanned += 1
        if isinstance(result, BaseException):
            report.unknown_age += 1
            continue
        if result.modified is None:
            report.unknown_age += 1
        elif result.modified < cutoff:
            old.append(name)
            report.candidate_bytes += result.size
        else:
            report.kept += 1
    report.candidates = len(old)
    report.candidate_objects = old[:LIST_LIMIT]
    if not apply:
        report.notes.append("dry run: nothing was deleted (add --apply)")
        return report
    for name, outcome in run_all(
        old, handler.store.delete, workers=workers, progress=progress, phase="gc delete"
    ):
        if isinstance(outcome, ResultNotFound):
            continue
        if isinstance(outcome, BaseException):
            report.failed += 1
            if len(report.failures) < LIST_LIMIT:
                report.failures.append({"object": name, "error": error_name(outcome)})
        else:
            report.deleted += 1
    try:
        report.swept = handler.store.sweep(max(bound.total_seconds(), SWEEP_MIN_AGE))
    except SealedResultsError as exc:
        report.failed += 1
        report.failures.append({"object": "(temporary files)", "error": error_name(exc)})
    return report
