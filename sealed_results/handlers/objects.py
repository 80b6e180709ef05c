"""Stored objects by name: the public building blocks of doctor and maintenance.

Each method takes a stored object by its name, an opaque reference (random hex, or
``keyset``) that says nothing of the value, which is what maintenance reports print. None
returns plaintext. ``ResultHandler`` inherits these; they use only its store, its key
materials and its token keys.
"""

from __future__ import annotations

import hmac
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar

from sealed_results.errors import IntegrityError, ResultNotFound, StoreConflict
from sealed_results.format import (
    DESCRIPTOR_SIZE,
    BlobHeader,
    BlobReader,
    encode_stanzas,
    open_descriptor,
    read_exact,
    read_header,
)
from sealed_results.handlers.keyset import KEYSET_NAME, KEYSET_OBJECT_ID
from sealed_results.keyproviders.materials import KeyMaterials
from sealed_results.stores.base import Store

__all__ = ["ObjectCheck", "StoredObjects", "is_object_name", "object_id_of", "object_name"]


def object_name(object_id: bytes) -> str:
    return object_id.hex()


def is_object_name(name: str) -> bool:
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)


def object_id_of(name: str) -> bytes:
    """The object id a blob stored under ``name`` must carry (IntegrityError: no such name)."""
    if name == KEYSET_NAME:
        return KEYSET_OBJECT_ID
    if not is_object_name(name):
        raise IntegrityError()
    return bytes.fromhex(name)


class StoredObjects:
    """Inventory and key maintenance of the objects under one root (a mixin of
    ``ResultHandler``, which provides the store, the materials and ``_locate``)."""

    _store: Store
    _materials: KeyMaterials

    def _locate(self, token: str) -> tuple[bytes, bytes]:
        raise NotImplementedError

    def list_objects(self) -> Iterator[str]:
        """Names of the stored results under the root (the keyset and temporary files are not
        listed). A name is an opaque reference: it says nothing of the value or the task."""
        return (name for name in self._store.list() if is_object_name(name))

    def read_header(self, name: str) -> BlobHeader:
        """The header of stored object ``name`` (a result or ``keyset``), without reading its
        payload or asking a key provider. IntegrityError if it is not a blob of that name."""
        source = self._store.open(name)
        try:
            header = read_header(source)
        finally:
            source.close()
        if header.object_id != object_id_of(name):
            raise IntegrityError()
        return header

    def rewrap(self, name: str) -> bool:
        """Rewrap the data key of stored object ``name`` under each provider's newest key
        version, replacing only the key section, atomically (the rotation primitive). Payload
        bytes, the object's name and every token stay as they are. False when nothing
        changed (already current). ``rewrap_object`` is the same with more control."""
        return self.rewrap_object(name) == "rewrapped"

    REWRAP_ATTEMPTS: ClassVar[int] = 8

    def locate_token(self, token: str) -> tuple[str, bytes]:
        """The name of the stored object a token names and the key commitment it pins (the
        token is authenticated; the store is not asked). IntegrityError for a token that no
        token key of this root opens."""
        object_id, commitment = self._locate(token)
        return object_name(object_id), commitment

    def rewrap_object(
        self,
        name: str,
        *,
        needs_rewrap: Callable[[BlobHeader], bool] | None = None,
        max_size: int | None = None,
        header_first: bool = True,
    ) -> str:
        """Rewrap the data key of object ``name`` under each provider's newest key version by a
        compare-and-swap: only the key section changes (payload bytes, commitment, name and
        every token stay), and the new object replaces the old one only if nobody changed or
        deleted it meanwhile; otherwise it is read again. Stores with ``rewrite_head`` of their
        own (local, S3, Azure) keep the payload where it is (a kernel or server-side copy): bounded
        memory. Others are read whole and swapped whole: objects over ``max_size`` bytes are
        then left alone (``"too-large"``).

        ``needs_rewrap(header)`` False: ``"current"`` with no provider call (with
        ``header_first``, on the in-memory path, only the header is read for that). Returns
        ``"rewrapped"``, ``"current"`` (nothing changed), ``"gone"`` (deleted meanwhile) or
        ``"too-large"``."""
        if needs_rewrap is not None and header_first:
            try:
                header = self.read_header(name)
            except ResultNotFound:
                return "gone"
            if not needs_rewrap(header):
                return "current"
        object_id = object_id_of(name)
        if type(self._store).rewrite_head is not Store.rewrite_head:
            return self._rewrap_streaming(name, object_id, needs_rewrap)
        for _ in range(self.REWRAP_ATTEMPTS):
            try:
                blob, version = self._store.get_versioned(name, max_size=max_size)
            except ResultNotFound:
                return "gone"
            except IntegrityError:
                if max_size is None:
                    raise
                return "too-large"  # the header read above was fine: the store refused the size
            source = io.BytesIO(blob)
            header = read_header(source)
            if not hmac.compare_digest(header.object_id, object_id):
                raise IntegrityError()
            if needs_rewrap is not None and not needs_rewrap(header):
                return "current"
            stanzas = self._materials.rewrap_stanzas(header.key_id, header.stanzas)
            if stanzas == header.stanzas:
                return "current"
            rest = memoryview(blob)[source.tell() :]
            try:
                self._store.swap(name, header.fixed + encode_stanzas(stanzas) + rest, version)
            except StoreConflict:
                continue  # written or deleted meanwhile: look again
            finally:
                rest.release()
            return "rewrapped"
        raise StoreConflict("the object kept changing during its rewrap; run it again")

    def _rewrap_streaming(
        self,
        name: str,
        object_id: bytes,
        needs_rewrap: Callable[[BlobHeader], bool] | None,
    ) -> str:
        """``rewrap_object`` through ``Store.rewrite_head``: only the header is read here, and
        the store keeps the rest (LocalStore: a kernel copy; S3Store and AzureBlobStore: a
        server-side copy for large objects, or bounded blocks through the client), so memory
        stays bounded whatever the object's size."""
        for _ in range(self.REWRAP_ATTEMPTS):

            def edit(source: BinaryIO) -> tuple[bytes, int] | None:
                header = read_header(source)
                if not hmac.compare_digest(header.object_id, object_id):
                    raise IntegrityError()
                if needs_rewrap is not None and not needs_rewrap(header):
                    return None
                stanzas = self._materials.rewrap_stanzas(header.key_id, header.stanzas)
                if stanzas == header.stanzas:
                    return None
                return header.fixed + encode_stanzas(stanzas), len(header.encode())

            try:
                changed = self._store.rewrite_head(name, edit)
            except ResultNotFound:
                return "gone"
            except StoreConflict:
                continue  # written or deleted meanwhile: look again
            return "rewrapped" if changed else "current"
        raise StoreConflict("the object kept changing during its rewrap; run it again")

    def check_object(self, name: str) -> ObjectCheck:
        """Authenticate every byte of object ``name`` in one streaming pass (bounded memory:
        one segment at a time) and describe it: its header, serializer, stored and payload
        sizes. IntegrityError for any tampering or truncation, KeyProviderError when no
        provider opens its data key, ResultNotFound when it is gone. Plaintext is discarded."""
        counter = _CountingSource(self._store.open(name))
        try:
            header = read_header(counter)
            if not hmac.compare_digest(header.object_id, object_id_of(name)):
                raise IntegrityError()
            data_key = self._materials.open_data_key(header.key_id, header.stanzas)
            cipher = header.cipher(header.payload_key(data_key))
            serializer = open_descriptor(cipher, read_exact(counter, DESCRIPTOR_SIZE))
            reader = BlobReader(counter, cipher)
            buffer = bytearray(header.segment_size)
            payload = 0
            while n := reader.readinto(buffer):
                payload += n
        finally:
            counter.close()
        return ObjectCheck(header, serializer, counter.count, payload)


@dataclass(frozen=True)
class ObjectCheck:
    """What ``check_object`` found: the header (key stanzas), the serializer's name, and the
    stored and payload sizes in bytes. Holds no key and no plaintext."""

    header: BlobHeader = field(repr=False)
    serializer: str
    stored_size: int
    payload_size: int


class _CountingSource:
    """A store stream that counts the bytes read through it (for ``check_object``)."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.count = 0
        if hasattr(source, "readinto"):
            self.readinto = self._readinto

    def read(self, n: int = -1, /) -> bytes:
        data = self._source.read(n)
        self.count += len(data)
        return data

    def _readinto(self, buffer: Any) -> int:
        n = int(self._source.readinto(buffer) or 0)  # type: ignore[attr-defined]
        self.count += n
        return n

    def close(self) -> None:
        self._source.close()
