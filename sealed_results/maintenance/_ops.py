"""The maintenance operations: inventory, rotate, retire, verify, inspect, gc.

Every report names stored objects only by their opaque reference (the object name: random hex,
or ``keyset``), never by content; errors by their class. Scans run on a small thread pool
(``workers``), since remote stores and providers are latency-bound.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sealed_results.errors import (
    ConfigError,
    IntegrityError,
    KeyProviderError,
    ResultNotFound,
    SealedResultsError,
    StorageError,
)
from sealed_results.format import TOKEN_LENGTH, BlobHeader, read_header
from sealed_results.handlers import ResultHandler
from sealed_results.handlers.base import KEYSET_NAME, is_object_name
from sealed_results.keyproviders import CachingKeyProvider, KeyProvider
from sealed_results.maintenance._journal import (
    JOURNAL_NAME,
    Journal,
    claim_journal,
    load_journal,
    save_journal,
)
from sealed_results.maintenance._keys import (
    ProviderState,
    provider_state,
    raise_minimum,
    stanza_version,
)
from sealed_results.maintenance._objinfo import object_info, supports_times

__all__ = [
    "GcReport",
    "Inspection",
    "Inventory",
    "Progress",
    "RetireReport",
    "RotationReport",
    "VerifyReport",
    "gc",
    "inspect",
    "inventory",
    "parse_duration",
    "retire",
    "rotate",
    "verify",
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
_LIST_LIMIT = 1000  # names listed in a report (counts are always complete)


def _no_progress(phase: str, done: int, total: int | None) -> None:
    return None


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, SealedResultsError):
        return type(exc).__name__
    return f"unexpected {type(exc).__name__}"


def _run_all(
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


def _providers(handler: ResultHandler) -> tuple[KeyProvider, ...]:
    return handler.materials.providers()


def _states(handler: ResultHandler) -> list[ProviderState]:
    return [provider_state(p) for p in _providers(handler)]


def _version_label(version: int | None) -> str:
    return "unknown" if version is None else f"v{version}"


# -- inventory ------------------------------------------------------------------------------------
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
    header = handler.read_header(name)
    try:
        size, _ = object_info(handler.store, name)
    except ResultNotFound:
        size = None
    return header, size


def _stale(header: BlobHeader, current: dict[str, set[int]]) -> bool:
    """Whether any stanza of a kind with known current versions names another version."""
    for stanza in header.stanzas:
        targets = current.get(stanza.kind)
        if targets:
            version = stanza_version(stanza)
            if version is None or version not in targets:
                return True
    return False


def _current_versions(states: Sequence[ProviderState]) -> dict[str, set[int]]:
    current: dict[str, set[int]] = {}
    for state in states:
        if state.current is not None:
            current.setdefault(state.kind, set()).add(state.current)
    return current


def inventory(
    handler: ResultHandler,
    *,
    workers: int = DEFAULT_WORKERS,
    progress: Progress | None = None,
) -> Inventory:
    """Count stored results and bytes per key provider kind and key version, token-key
    generations, and anything unreadable. Reads headers only: no payload, no provider call
    for results (the keyset is opened to count its token keys)."""
    progress = progress or _no_progress
    report = Inventory()
    states = _states(handler)
    report.providers = [s.to_dict() for s in states]
    current = _current_versions(states)
    names = sorted(handler.list_objects())
    rows: Counter[tuple[str, int | None]] = Counter()
    row_bytes: Counter[tuple[str, int | None]] = Counter()
    sizes_known = True
    for name, result in _run_all(
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
            if len(report.unreadable_objects) < _LIST_LIMIT:
                report.unreadable_objects.append({"object": name, "error": _error_name(result)})
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
        if _stale(header, current):
            report.outdated += 1
    if not sizes_known:
        report.bytes = None
        report.notes.append("this store does not report object sizes: bytes unknown")
    report.by_key = [
        {
            "kind": kind,
            "version": _version_label(version),
            "objects": count,
            "bytes": row_bytes[(kind, version)] if sizes_known else None,
        }
        for (kind, version), count in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))
    ]
    try:
        if handler.keyset_exists():
            keyset = handler.read_header(KEYSET_NAME)
            report.keyset = [
                {"kind": s.kind, "version": _version_label(stanza_version(s))}
                for s in keyset.stanzas
            ]
            report.token_keys = handler.open_keyset()
    except SealedResultsError as exc:
        report.notes.append(f"keyset: {_error_name(exc)}: {exc}")
    try:
        journal, _ = load_journal(handler)
    except SealedResultsError as exc:
        report.notes.append(f"rotation journal: {_error_name(exc)}")
    else:
        if journal is not None:
            report.rotation = {"state": journal.state, "run": journal.run, "passes": journal.passes}
    return report


# -- rotate ---------------------------------------------------------------------------------------
@dataclass
class RotationReport:
    """What ``rotate`` did (or, in a dry run, would do)."""

    applied: bool
    state: str = "planned"  # planned | done | incomplete
    run: str | None = None
    resumed: bool = False
    rewrap_only: bool = False
    providers_before: list[dict[str, Any]] = field(default_factory=list)
    providers_after: list[dict[str, Any]] = field(default_factory=list)
    providers_rotated: list[str] = field(default_factory=list)
    objects: int = 0
    rewrapped: int = 0
    already_current: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    skipped_objects: list[dict[str, str]] = field(default_factory=list)
    would_rewrap: int | None = None
    token_key_added: bool = False
    token_keys: int | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or (self.applied and self.state != "done") else 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def _markers(states: Sequence[ProviderState]) -> list[Any]:
    return [s.marker for s in states]


def _targets(states: Sequence[ProviderState]) -> dict[str, list[int]]:
    return {kind: sorted(versions) for kind, versions in _current_versions(states).items()}


def _new_journal(rotate_keys: bool, new_token_key: bool) -> Journal:
    return Journal(
        state="key" if rotate_keys else "rewrap",
        rotate_keys=rotate_keys,
        new_token_key=new_token_key,
    )


def rotate(
    handler: ResultHandler,
    *,
    apply: bool = False,
    rewrap_only: bool = False,
    new_token_key: bool = True,
    settle: float = DEFAULT_SETTLE,
    workers: int = DEFAULT_WORKERS,
    batch: int = DEFAULT_BATCH,
    max_in_memory: int | None = DEFAULT_MAX_IN_MEMORY,
    progress: Progress | None = None,
) -> RotationReport:
    """Rotate the key-encryption keys and rewrap every stored data key to the new version.

    Dry run unless ``apply``. Applied, it runs (or resumes, from the journal ``.rotation``):
    1. each provider rotates once (a new KEK version; KMS: on-demand rotation), recorded so a
       restart never makes a second version;
    2. ``settle`` seconds pass so that readers elsewhere (local keyrings reload on a miss at
       most once a second) can open the new version before the first object names it;
    3. every result, and the keyset, is rewrapped in name order by compare-and-swap, only its
       key section rewritten; progress is journaled after each batch;
    4. a new primary token key is added (old ones stay: issued tokens stay valid);
    5. the journal says ``done``.
    ``rewrap_only``: no new KEK version and no token key; rewrap what is not current (e.g.
    stragglers written through a data-key cache after a rotation)."""
    progress = progress or _no_progress
    started = time.monotonic()
    report = RotationReport(applied=apply, rewrap_only=rewrap_only)
    states = _states(handler)
    report.providers_before = [s.to_dict() for s in states]
    if not apply:
        return _plan(handler, report, states, rewrap_only, workers, progress)

    owner = _owner()
    fresh: list[bool] = []

    def decide(current: Journal | None) -> Journal:
        fresh.clear()
        if current is None or current.state == "done":
            fresh.append(True)
            journal = _new_journal(not rewrap_only, new_token_key and not rewrap_only)
            journal.before = _markers(states)
            journal.rotated = [False] * len(states)
            if rewrap_only:
                journal.targets = _targets(states)
            return journal
        return current

    journal = claim_journal(handler, owner, decide)
    report.run = journal.run
    report.resumed = not fresh
    report.rewrap_only = not journal.rotate_keys
    if journal.state == "key":
        _rotate_providers(handler, journal, report, settle)
    if journal.state == "rewrap":
        wait = journal.settle_until - time.time()
        if wait > 0:
            time.sleep(wait)
        _rewrap_all(handler, journal, report, workers, batch, max_in_memory, progress)
    report.state = "done" if journal.state == "done" else "incomplete"
    report.providers_after = [s.to_dict() for s in _states(handler)]
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _owner() -> str:
    return f"{os.getpid()}-{os.urandom(6).hex()}"


def _plan(
    handler: ResultHandler,
    report: RotationReport,
    states: Sequence[ProviderState],
    rewrap_only: bool,
    workers: int,
    progress: Progress,
) -> RotationReport:
    seen = inventory(handler, workers=workers, progress=progress)
    report.objects = seen.objects
    report.would_rewrap = seen.outdated if rewrap_only else seen.objects
    report.token_keys = seen.token_keys
    if seen.rotation and seen.rotation["state"] != "done":
        report.notes.append(
            f"a rotation is unfinished (state {seen.rotation['state']}): --apply resumes it "
            "without a new key version"
        )
    elif not rewrap_only:
        report.providers_rotated = [s.kind for s in states]
    if seen.unreadable:
        report.notes.append(f"{seen.unreadable} object(s) have unreadable headers")
    report.notes.append("dry run: nothing was changed (add --apply)")
    return report


def _rotate_providers(
    handler: ResultHandler, journal: Journal, report: RotationReport, settle: float
) -> None:
    providers = _providers(handler)
    if len(journal.before) != len(providers):
        raise ConfigError(
            "the unfinished rotation was started with other key providers; finish it with the "
            "profile that started it"
        )
    for index, provider in enumerate(providers):
        if journal.rotated[index]:
            continue
        before = journal.before[index]
        now = provider_state(provider).marker
        if before is not None and now is not None and now != before:
            journal.rotated[index] = True  # a killed run rotated it and died before saving
            save_journal(handler, journal)
            continue
        provider.rotate()
        journal.rotated[index] = True
        report.providers_rotated.append(provider.kind)
        save_journal(handler, journal)
    materials = handler.materials
    if isinstance(materials, CachingKeyProvider):
        materials.clear()  # this process writes under the new version from now on
    states = _states(handler)
    journal.targets = _targets(states)
    journal.state = "rewrap"
    journal.settle_until = time.time() + max(0.0, settle)
    save_journal(handler, journal)


def _rewrap_all(
    handler: ResultHandler,
    journal: Journal,
    report: RotationReport,
    workers: int,
    batch: int,
    max_in_memory: int | None,
    progress: Progress,
) -> None:
    targets = {kind: set(versions) for kind, versions in journal.targets.items()}
    # Unknown versions (KMS; Vault without read on the key): no header can show the object is
    # current, so it is rewrapped unless the journal's cursor says it was done in this run.
    kinds = {p.kind for p in _providers(handler)}
    unknown = kinds - set(targets)

    def needs(header: BlobHeader) -> bool:
        for stanza in header.stanzas:
            if stanza.kind in unknown:
                return True
        return _stale(header, targets)

    names = sorted([*handler.list_objects(), KEYSET_NAME])
    todo = [n for n in names if journal.cursor is None or n > journal.cursor]
    # The first pass after a new key version finds nearly every object outdated: read each
    # whole at once. Later passes (retries, rewrap-only) mostly find current objects: read
    # just their headers first.
    peek = not journal.rotate_keys or journal.passes > 0
    report.objects = len(names)
    counts = Counter(journal.counts)
    done = len(names) - len(todo)
    for start in range(0, len(todo), max(1, batch)):
        chunk = todo[start : start + max(1, batch)]
        for name, result in _run_all(
            chunk,
            lambda n: handler.rewrap_object(
                n, needs_rewrap=needs, max_size=max_in_memory, header_first=peek
            ),
            workers=workers,
            progress=progress,
            phase="rewrap",
            done_before=done + start,
            total=len(names),
        ):
            if isinstance(result, BaseException):
                counts["failed"] += 1
                if not isinstance(result, IntegrityError):
                    counts["retry"] += 1
                if len(report.failures) < _LIST_LIMIT:
                    report.failures.append({"object": name, "error": _error_name(result)})
            elif result == "rewrapped":
                counts["rewrapped"] += 1
            elif result == "current":
                counts["current"] += 1
            else:
                counts["skipped"] += 1
                if result == "too-large":
                    counts["retry"] += 1
                if len(report.skipped_objects) < _LIST_LIMIT:
                    report.skipped_objects.append({"object": name, "reason": result})
        journal.cursor = chunk[-1]
        journal.counts = dict(counts)
        save_journal(handler, journal)
    report.rewrapped = counts["rewrapped"]
    report.already_current = counts["current"]
    report.skipped = counts["skipped"]
    report.failed = counts["failed"]
    journal.passes += 1
    if journal.new_token_key:
        _add_token_key(handler, journal, report)
    if counts["retry"]:
        # Failures another try may cure (a provider or store error, an object too large for
        # this run's memory bound): the next `rotate --apply` runs the pass again, with no new
        # key version. Objects whose header fails authentication never will: they are listed
        # (see verify, inspect) and do not hold the rotation open.
        journal.cursor = None
        journal.counts = {}
        save_journal(handler, journal)
        report.notes.append(
            f"{counts['retry']} object(s) may succeed on another try: run `rotate --apply` "
            "again (it resumes this rotation; no new key version)"
        )
        return
    report.token_keys = handler.open_keyset()
    journal.state = "done"
    save_journal(handler, journal)


def _add_token_key(handler: ResultHandler, journal: Journal, report: RotationReport) -> None:
    """One new primary token key per rotation, also across a crash: the count before is saved
    first, so a restart that finds more keys knows the key was added."""
    if journal.token_keys_before is None:
        journal.token_keys_before = handler.open_keyset()
        save_journal(handler, journal)
    if handler.open_keyset() <= journal.token_keys_before:
        handler.rotate_token_keys()
        report.token_key_added = True
    journal.new_token_key = False
    save_journal(handler, journal)


# -- retire ---------------------------------------------------------------------------------------
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
    progress = progress or _no_progress
    report = RetireReport(applied=apply)
    states = _states(handler)
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
    current = _current_versions(retirable)
    names = sorted([*handler.list_objects(), KEYSET_NAME])
    remaining: Counter[str] = Counter()
    for name, result in _run_all(
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
            if len(report.remaining_objects) < _LIST_LIMIT:
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
    for provider, state in zip(_providers(handler), states, strict=True):
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
        report.providers = [s.to_dict() for s in _states(handler)]
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


# -- verify ---------------------------------------------------------------------------------------
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
    return _error_name(exc)


def verify(
    handler: ResultHandler,
    *,
    workers: int = 4,
    progress: Progress | None = None,
) -> VerifyReport:
    """Authenticate every stored blob (results and the keyset) in one streaming pass each,
    one segment in memory at a time. Failures are reported by count and by object reference
    (pass one to ``inspect``), never by content."""
    progress = progress or _no_progress
    report = VerifyReport()
    names = sorted([*handler.list_objects(), KEYSET_NAME])
    for name, result in _run_all(
        names, handler.check_object, workers=workers, progress=progress, phase="verify"
    ):
        if isinstance(result, ResultNotFound) and name == KEYSET_NAME:
            continue  # an empty root has no keyset yet
        if isinstance(result, ResultNotFound):
            continue  # deleted during the scan
        report.checked += 1
        if isinstance(result, BaseException):
            report.failed += 1
            if len(report.failures) < _LIST_LIMIT:
                report.failures.append({"object": name, "error": _kind_of_failure(result)})
            continue
        report.ok += 1
        report.bytes += result.stored_size
    return report


# -- inspect --------------------------------------------------------------------------------------
@dataclass
class Inspection:
    object: str
    stored_size: int
    payload_size: int
    serializer: str
    key_stanzas: list[dict[str, str]]
    modified: str | None
    matches_token: bool | None = None
    notes: list[str] = field(default_factory=list)

    exit_code = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inspect(handler: ResultHandler, target: str) -> Inspection:
    """What a token (or an object reference from ``verify``/``rotate``) points to: object
    name, sizes, key providers and versions, serializer, last-modified time if the store
    tells it. The whole blob is authenticated on the way (IntegrityError if it fails)."""
    commitment: bytes | None = None
    if len(target) == TOKEN_LENGTH:
        name, commitment = handler.locate_token(target)
    elif is_object_name(target) or target == KEYSET_NAME:
        name = target
    else:
        raise ConfigError("expected a token (124 characters) or an object reference (32 hex)")
    check = handler.check_object(name)
    try:
        _, modified = object_info(handler.store, name)
    except ResultNotFound:
        modified = None
    notes = []
    if modified is None:
        notes.append("this store does not report object times: modified unknown")
    else:
        notes.append("modified is the store's time of the last write (rotation rewrites it)")
    return Inspection(
        object=name,
        stored_size=check.stored_size,
        payload_size=check.payload_size,
        serializer=check.serializer,
        key_stanzas=[
            {"kind": s.kind, "version": _version_label(stanza_version(s))}
            for s in check.header.stanzas
        ],
        modified=modified.isoformat() if modified else None,
        matches_token=None if commitment is None else check.header.commitment == commitment,
        notes=notes,
    )


# -- gc -------------------------------------------------------------------------------------------
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
    """Delete stored results whose store time is older than ``older_than``. Never the keyset
    or the rotation journal (only result names are considered), never an object whose time
    the store does not tell. Dry run unless ``apply``."""
    progress = progress or _no_progress
    bound = parse_duration(older_than)
    if bound <= timedelta(0):
        raise ConfigError("--older-than must be a positive duration")
    if not supports_times(handler.store):
        raise ConfigError("this store does not report object times, which gc needs")
    cutoff = (now or datetime.now(UTC)) - bound
    report = GcReport(apply, bound.total_seconds(), cutoff.isoformat())
    names = sorted(handler.list_objects())
    old: list[str] = []
    for name, result in _run_all(
        names,
        lambda n: object_info(handler.store, n),
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
        size, modified = result
        if modified is None:
            report.unknown_age += 1
        elif modified < cutoff:
            old.append(name)
            report.candidate_bytes += size or 0
        else:
            report.kept += 1
    report.candidates = len(old)
    report.candidate_objects = old[:_LIST_LIMIT]
    if not apply:
        report.notes.append("dry run: nothing was deleted (add --apply)")
        return report
    for name, outcome in _run_all(
        old, handler.store.delete, workers=workers, progress=progress, phase="gc delete"
    ):
        if isinstance(outcome, ResultNotFound):
            continue
        if isinstance(outcome, BaseException):
            report.failed += 1
            if len(report.failures) < _LIST_LIMIT:
                report.failures.append({"object": name, "error": _error_name(outcome)})
        else:
            report.deleted += 1
    return report
