"""rotate: new key versions, every data key rewrapped by compare-and-swap, a new token key;
journaled, so a rerun resumes a rotation a crash interrupted."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sealed_results.errors import (
    ConfigError,
    IntegrityError,
)
from sealed_results.format import BlobHeader
from sealed_results.handlers import ResultHandler
from sealed_results.handlers.base import KEYSET_NAME
from sealed_results.keyproviders import CachingKeyProvider
from sealed_results.maintenance._inventory import inventory
from sealed_results.maintenance._journal import (
    Journal,
    claim_journal,
    load_journal,
    save_journal,
)
from sealed_results.maintenance._keys import (
    ProviderState,
    provider_state,
)
from sealed_results.maintenance._scan import (
    DEFAULT_BATCH,
    DEFAULT_MAX_IN_MEMORY,
    DEFAULT_SETTLE,
    DEFAULT_WORKERS,
    LIST_LIMIT,
    Progress,
    current_versions,
    error_name,
    is_stale,
    no_progress,
    providers_of,
    run_all,
    states_of,
)

__all__ = [
    "RotationReport",
    "rotate",
]


@dataclass
class RotationReport:
    """What ``rotate`` did (or, in a dry run, would do)."""

    applied: bool
    state: str = "planned"  # planned | done | incomplete | none (resume: nothing to resume)
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
    return {kind: sorted(versions) for kind, versions in current_versions(states).items()}


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
    resume: bool = False,
) -> RotationReport:
    """Rotate the key-encryption keys and rewrap every stored data key to the new version.

    ``resume``: only finish a rotation that a crash or a kill left unfinished; when the last
    one is done (or there is none) change nothing and say so. That is the safe command after a
    run was killed: a kill can also land after the journal says ``done`` but before the
    command's output, and a plain rerun would then start another rotation.

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
    progress = progress or no_progress
    started = time.monotonic()
    report = RotationReport(applied=apply, rewrap_only=rewrap_only)
    states = states_of(handler)
    report.providers_before = [s.to_dict() for s in states]
    if not apply:
        return _plan(handler, report, states, rewrap_only, workers, progress)

    owner = _owner()
    fresh: list[bool] = []

    if resume:
        current, _ = load_journal(handler)
        if current is None or current.state == "done":
            report.state = "done" if current is not None else "none"
            report.notes.append(
                "no unfinished rotation to resume"
                + (f" (rotation {current.run} is done)" if current is not None else "")
            )
            report.seconds = round(time.monotonic() - started, 3)
            return report

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
    report.providers_after = [s.to_dict() for s in states_of(handler)]
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
    providers = providers_of(handler)
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
    states = states_of(handler)
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
    kinds = {p.kind for p in providers_of(handler)}
    unknown = kinds - set(targets)

    def needs(header: BlobHeader) -> bool:
        for stanza in header.stanzas:
            if stanza.kind in unknown:
                return True
        return is_stale(header, targets)

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
        for name, result in run_all(
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
                if len(report.failures) < LIST_LIMIT:
                    report.failures.append({"object": name, "error": error_name(result)})
            elif result == "rewrapped":
                counts["rewrapped"] += 1
            elif result == "current":
                counts["current"] += 1
            else:
                counts["skipped"] += 1
                if result == "too-large":
                    counts["retry"] += 1
                if len(report.skipped_objects) < LIST_LIMIT:
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
