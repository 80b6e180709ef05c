"""The rotation journal: a small sealed blob at the fixed name ``.rotation`` under the root.

It records how far a rotation got, so that one killed at any point and started again finishes
the job without a second key-encryption-key version and without a second token key:

    state      "key"      rotating providers; ``before`` holds each provider's version marker
                          (current version, or KMS rotation count) read before any rotated, and
                          ``rotated`` which of them this rotation has seen rotate
               "rewrap"   rewrapping stored objects in name order; ``cursor`` is the last name
                          of the last finished batch (everything up to it is done); ``targets``
                          the versions each kind rewraps to. After the first pass the new token
                          key is added (``token_keys_before``, saved first, tells a restart
                          whether that happened); a pass with failures another try may cure
                          starts over (cursor reset) on the next run
               "done"     finished; the next ``rotate --apply`` starts a new rotation

It is an ordinary v1 blob (object id ``sealed-results:r``, JSON payload) sealed by the profile's
key provider, so a writer of the store cannot forge progress, and read and written only by
compare-and-swap. Each run puts its own random ``owner`` in it; a run that finds another owner
there when it next saves stops (another run took over, e.g. after this one was presumed dead).
Its name starts with a dot: never listed as a result, never taken by gc, and not counted as a
result by the keyset's "root holds results" check.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sealed_results.errors import (
    IntegrityError,
    ResultNotFound,
    SealedResultsError,
    StoreConflict,
)
from sealed_results.format import open_blob, seal_blob
from sealed_results.handlers import ResultHandler

__all__ = [
    "JOURNAL_NAME",
    "Journal",
    "RotationTakenOver",
    "claim_journal",
    "load_journal",
    "save_journal",
]

JOURNAL_NAME = ".rotation"
JOURNAL_OBJECT_ID = b"sealed-results:r"  # 16 bytes, like the keyset's fixed id
_MAX_SIZE = 1 << 20
_ATTEMPTS = 20


class RotationTakenOver(SealedResultsError):
    """Another rotation run took over the journal: this one stops (nothing is lost)."""

    def __init__(
        self,
        message: str = "another rotation run took over (its journal owner differs); this one "
        "stopped without harm",
    ) -> None:
        super().__init__(message)


@dataclass
class Journal:
    state: str = "key"
    run: str = field(default_factory=lambda: os.urandom(8).hex())
    owner: str = ""
    rotate_keys: bool = True
    new_token_key: bool = True
    before: list[Any] = field(default_factory=list)
    rotated: list[bool] = field(default_factory=list)
    targets: dict[str, list[int]] = field(default_factory=dict)
    settle_until: float = 0.0
    cursor: str | None = None
    passes: int = 0
    token_keys_before: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_journal(handler: ResultHandler) -> tuple[Journal | None, str | None]:
    """The journal and its store version, or (None, None) when there is none."""
    try:
        blob, version = handler.store.get_versioned(JOURNAL_NAME, max_size=_MAX_SIZE)
    except ResultNotFound:
        return None, None
    name, payload = open_blob(blob, handler.materials.open_data_key, object_id=JOURNAL_OBJECT_ID)
    try:
        document = json.loads(payload)
        journal = Journal(**document)
    except (ValueError, TypeError):
        raise IntegrityError() from None
    if name != "json":
        raise IntegrityError()
    return journal, version


def _seal(handler: ResultHandler, journal: Journal) -> bytes:
    journal.updated = time.time()
    data_key = handler.materials.new_data_key(None)
    return seal_blob(
        json.dumps(journal.to_dict()).encode(),
        data_key.plaintext,
        data_key.stanzas,
        object_id=JOURNAL_OBJECT_ID,
        key_id=data_key.key_id,
        serializer="json",
    )


def save_journal(handler: ResultHandler, journal: Journal) -> None:
    """Write the journal if this run still owns it (compare-and-swap on the version read just
    before); RotationTakenOver when another run's owner is there."""
    for _ in range(_ATTEMPTS):
        current, version = load_journal(handler)
        if current is not None and current.owner != journal.owner:
            raise RotationTakenOver()
        try:
            handler.store.swap(JOURNAL_NAME, _seal(handler, journal), version)
        except StoreConflict:
            continue
        return
    raise StoreConflict("the rotation journal kept changing; is another rotation running?")


def claim_journal(
    handler: ResultHandler, owner: str, decide: Callable[[Journal | None], Journal]
) -> Journal:
    """Become the journal's owner: ``decide(current journal or None)`` returns the journal to
    continue with (the current one, or a new run), which is written with this run's owner by
    compare-and-swap. A run killed earlier simply loses ownership; a live one stops."""
    for _ in range(_ATTEMPTS):
        current, version = load_journal(handler)
        journal = decide(current)
        journal.owner = owner
        try:
            handler.store.swap(JOURNAL_NAME, _seal(handler, journal), version)
        except StoreConflict:
            continue
        return journal
    raise StoreConflict("the rotation journal kept changing; is another rotation running?")
