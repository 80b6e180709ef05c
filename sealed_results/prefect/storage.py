"""The Prefect result storage block: Prefect's whole result record, sealed, at a keyed name.

Prefect hands a storage block the serialized result record (its metadata and the serialized
value) and a storage key. The block maps the key to ``derive_name("prefect-result", key)``, a
keyed hash, and stores the record with ``write_at``: encrypted, bound to that name (a blob moved
to another name does not open), replaced atomically when a cache entry is rewritten after it
expired. The block's only field is a profile name, because Prefect's API stores every field of
a saved block; roots, buckets and key-provider settings stay in the profile on the user's
machines.

Prefect refuses an unsaved storage block at decoration time, yet saving needs a reachable API
and tasks are often decorated before one is (module import, tests, a worker that loads code
first). A block made by ``sealed()`` therefore saves itself lazily: the first time Prefect asks
for its document id inside a run, it is saved under its name (once per API URL per process) and
the real id is returned; outside a run it answers with a placeholder that only satisfies the
decorator's check. Blocks made any other way behave like every Prefect block.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from typing import Any, ClassVar, cast

import anyio.to_thread
from prefect.context import FlowRunContext, TaskRunContext
from prefect.filesystems import WritableFileSystem
from prefect.settings import get_current_settings
from pydantic import Field, PrivateAttr

from sealed_results.errors import ResultNotFound
from sealed_results.handlers.base import ResultHandler
from sealed_results.prefect.serializer import SERIALIZED_FORM, SERIALIZER_TYPE
from sealed_results.sealing import profile_handler

__all__ = [
    "BLOCK_TYPE_SLUG",
    "PrefectResultNotFound",
    "SealedResultStorage",
    "document_name",
    "handler_for",
    "storage_name",
]

BLOCK_TYPE_SLUG = "sealed-results-storage"
RESULT_PURPOSE = "prefect-result"
# Stands in for the document id when Prefect checks a lazily saved block outside a run
# (decoration). Prefect only tests it against None there; inside a run the real id is used.
_PENDING_ID = uuid.UUID(int=0)
_VALID_DOCUMENT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class PrefectResultNotFound(ResultNotFound, ValueError):
    """No sealed result under this Prefect storage key. A ValueError too, as Prefect's own
    storage blocks raise for a missing path, so Prefect treats it as a miss."""

    def __init__(self) -> None:
        super().__init__("no sealed result for this Prefect storage key")


def document_name(profile: str | None) -> str:
    """The block document name for a profile: the profile's own name when Prefect accepts it
    (lower-case letters, digits, dashes), else a digest of it; ``default`` for None."""
    if profile is None:
        return "default"
    if _VALID_DOCUMENT_NAME.fullmatch(profile):
        return profile
    return "profile-" + uuid.uuid5(uuid.NAMESPACE_URL, profile).hex[:16]


def handler_for(profile: str | None) -> ResultHandler:
    """The profile's handler for Prefect records: the profile's store and keys, with the
    ``bytes`` serializer, since the record is already bytes (values inside it were serialized by
    ``SealedSerializer`` with the profile's serializer). Cached per process; the cache key
    follows the config-file and profile variables, so a changed environment is honoured. The
    profile's settings are registered for log redaction (``sealed_results.sealing``)."""
    return profile_handler(profile, serializer="bytes")


def storage_name(profile: str | None, path: str) -> str:
    """The object name that Prefect storage key ``path`` maps to (a keyed hash of it)."""
    return handler_for(profile).derive_name(RESULT_PURPOSE, path.encode("utf-8"))


def _as_record(serialized: bytes, profile: str | None) -> bytes:
    record = {
        "metadata": {"serializer": {"type": SERIALIZER_TYPE, "profile": profile}},
        "result": serialized.decode("ascii"),
    }
    return json.dumps(record).encode("ascii")


# -- lazy saving ---------------------------------------------------------------------------
_SAVED: dict[tuple[str, str], uuid.UUID] = {}
_SAVED_LOCK = threading.Lock()


def _api_key() -> str:
    return str(get_current_settings().api.url or "ephemeral")


def _in_run() -> bool:
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


class SealedResultStorage(WritableFileSystem):
    """Stores Prefect results encrypted in your own storage (sealed-results).

    Every result record Prefect writes (the serialized value and its metadata) is sealed with a
    fresh data key under the named sealed-results profile and stored under a keyed hash of
    Prefect's storage key. Prefect's API stores only this block's profile name; where results
    live and which keys protect them stay in the profile's configuration on your machines.
    """

    _block_type_name: ClassVar[str | None] = "Sealed Results Storage"
    _block_type_slug: ClassVar[str | None] = BLOCK_TYPE_SLUG
    _documentation_url: ClassVar[Any] = (
        "https://github.com/sealed-results/sealed-results/blob/main/docs/prefect.md"
    )
    _description: ClassVar[str | None] = (
        "Stores Prefect results encrypted in your own storage: Prefect's API sees only "
        "this block's profile name and opaque storage keys."
    )
    _code_example: ClassVar[str | None] = (
        "```python\n"
        "from sealed_results.prefect import SealedResultStorage\n\n"
        'sealed_results_storage_block = SealedResultStorage.load("BLOCK_NAME")\n'
        "```"
    )

    profile: str | None = Field(
        default=None,
        description=(
            "Name of the sealed-results profile to use on the machine that runs the flow "
            "(empty for the default profile)."
        ),
    )
    # True for blocks made by sealed()/sealed_flow(): saved on first use inside a run.
    _lazy_save: bool = PrivateAttr(default=False)

    @classmethod
    def lazy(cls, profile: str | None) -> SealedResultStorage:
        """A block for ``profile`` that saves itself (under ``document_name(profile)``) the
        first time Prefect needs it inside a run, once per API URL per process."""
        block = cls(profile=profile)
        block._lazy_save = True
        return block

    # Prefect reads this private attribute (decorator check, result metadata); a property on the
    # subclass is found before pydantic's private storage, which still receives assignments.
    @property  # type: ignore[misc]
    def _block_document_id(self) -> uuid.UUID | None:  # type: ignore[override]
        private = self.__pydantic_private__ or {}
        known: uuid.UUID | None = private.get("_block_document_id")
        if known is not None or not private.get("_lazy_save"):
            return known
        key = (_api_key(), document_name(self.profile))
        saved = _SAVED.get(key)
        if saved is not None:
            return saved
        if not _in_run():
            return _PENDING_ID
        with _SAVED_LOCK:
            saved = _SAVED.get(key)
            if saved is None:
                # A plain copy is saved, so this lazy block keeps following the current API.
                copy = type(self)(profile=self.profile)
                saved = cast(uuid.UUID, copy.save(key[1], overwrite=True, _sync=True))  # type: ignore[call-arg]
                _SAVED[key] = saved
        return saved

    # -- reading and writing (sync, and the async forms Prefect prefers) --------------------
    def read_path(self, path: str, _sync: bool | None = None) -> bytes:  # type: ignore[override]
        handler = handler_for(self.profile)
        name = handler.derive_name(RESULT_PURPOSE, path.encode("utf-8"))
        try:
            data = bytes(handler.read_at(name))
        except ResultNotFound:
            raise PrefectResultNotFound() from None
        if not data.startswith(b"{") and SERIALIZED_FORM.match(data):
            # A flow's result is stored without its record (Prefect keeps a flow's metadata in
            # the API), and a fresh process parses that metadata before the entry point has
            # imported our serializer. Wrapped in a record here, after this block was loaded,
            # it parses with the serializer registered.
            return _as_record(data, self.profile)
        return data

    def write_path(  # type: ignore[override]
        self, path: str, content: bytes, _sync: bool | None = None
    ) -> str:
        handler = handler_for(self.profile)
        name = handler.derive_name(RESULT_PURPOSE, path.encode("utf-8"))
        # overwrite: a cache entry rewritten after its expiry is replaced atomically.
        handler.write_at(name, bytes(content), overwrite=True)
        return path

    async def aread_path(self, path: str) -> bytes:
        return await anyio.to_thread.run_sync(self.read_path, path)

    async def awrite_path(self, path: str, content: bytes) -> str:
        return await anyio.to_thread.run_sync(self.write_path, path, content)
