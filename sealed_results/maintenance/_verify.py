"""verify: authenticate every stored blob, streaming, one segment in memory at a time."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sealed_results.errors import (
    IntegrityError,
    KeyProviderError,
    ResultNotFound,
    StorageError,
)
from sealed_results.handlers import ResultHandler
from sealed_results.handlers.base import KEYSET_NAME
from sealed_results.maintenance._scan import (
    LIST_LIMIT,
    Progress,
    error_name,
    no_progress,
    run_all,
)

__all__ = [
    "VerifyReport",
    "verify",
]


@dataclass
class VerifyReport:
    checked: int = 0
    ok: int = 0
    failed: int = 0
    bytes: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def _kind_of_failure(exc: BaseException) -> str:
    if isinstance(exc, IntegrityError):
        return "integrity"
    if isinstance(exc, KeyProviderError):
        return "key provider"
    if isinstance(exc, StorageError):
        return "store"
    return error_name(exc)


def verify(
    handler: ResultHandler,
    *,
    workers: int = 4,
    progress: Progress | None = None,
) -> VerifyReport:
    """Authenticate every stored blob (results and the keyset) in one streaming pass each,
    one segment in memory at a time. Failures are reported by count and by object reference
    (pass one to ``inspect``), never by content."""
    progress = progress or no_progress
    report = VerifyReport()
    names = sorted([*handler.list_objects(), KEYSET_NAME])
    for name, result in run_all(
        names, handler.check_object, workers=workers, progress=progress, phase="verify"
    ):
        if isinstance(result, ResultNotFound) and name == KEYSET_NAME:
            continue  # an empty root has no keyset yet
        if isinstance(result, ResultNotFound):
            continue  # deleted during the scan
        report.checked += 1
        if isinstance(result, BaseException):
            report.failed += 1
            if len(report.failures) < LIST_LIMIT:
                report.failures.append({"object": name, "error": _kind_of_failure(result)})
            continue
        report.ok += 1
        report.bytes += result.stored_size
    return report
