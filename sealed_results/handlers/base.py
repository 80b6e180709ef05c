"""ResultHandler: the public write/read API, built once over a few storage primitives.

Everything about formats and keys happens here, so a store (fsspec or not) only has to move
bytes: create an object exclusively, read it, test, delete, replace and list. Object names are
the hex of a random 128-bit object id and say nothing of the task, value or time; the token
keyset lives beside them under the fixed name ``keyset``.
"""

from __future__ import annotations

import abc
import contextlib
import hmac
import io
import os
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO, ClassVar

from sealed_results import keyset as keyset_mod
from sealed_results.envelope import (
    DEFAULT_SEGMENT_LOG2,
    MAX_SEGMENT_LOG2,
    MIN_SEGMENT_LOG2,
    BlobHeader,
    BlobReader,
    BlobWriter,
    decrypt_split,
    encrypt_segments,
    read_header,
)
from sealed_results.errors import (
    ConfigError,
    IntegrityError,
    SerializationError,
    StorageError,
)
from sealed_results.keyproviders.base import KeyProvider
from sealed_results.payload import (
    STREAM_SERIALIZER,
    dump_parts,
    frame,
    load_parts,
    split_point,
    unframe,
)
from sealed_results.serializers import BUILTIN_SERIALIZERS, Serializer
from sealed_results.token import TokenCodec

__all__ = ["ResultHandler"]

KEYSET_NAME = keyset_mod.KEYSET_NAME
# Payloads below this size are sealed in memory and stored in one call (one AES-GCM call, no
# stream): most results are small. Larger ones stream, so they are never held twice. It is the
# smallest segment size, so a small payload is always one (final) segment.
_SMALL_PAYLOAD = 1 << MIN_SEGMENT_LOG2


def object_name(object_id: bytes) -> str:
    return object_id.hex()


def is_object_name(name: str) -> bool:
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)


class ResultHandler(abc.ABC):
    """Encrypts results into a store and hands out opaque tokens.

    ``write(value) -> token`` and ``read(token) -> value``; ``write_stream``/``open`` for large
    results in bounded memory. Thread-safe. Picklable without key material or credentials:
    subclasses list what to pickle in ``_settings()`` and rebuild connections lazily.
    """

    name: ClassVar[str]

    def __init__(
        self,
        root: str,
        keyprovider: KeyProvider | list[KeyProvider] | tuple[KeyProvider, ...],
        *,
        serializer: str | Serializer = "msgpack",
        allow_pickle: bool = False,
        segment_size: int = 1 << DEFAULT_SEGMENT_LOG2,
    ) -> None:
        if isinstance(keyprovider, list | tuple):
            # Several providers wrap each data key; any one of them opens it (break-glass copy).
            from sealed_results.keyproviders.multi import MultiKeyProvider

            keyprovider = MultiKeyProvider(*keyprovider)
        if not isinstance(keyprovider, KeyProvider):
            raise ConfigError("keyprovider must be a KeyProvider instance or a list of them")
        log2 = segment_size.bit_length() - 1
        if segment_size != 1 << log2 or not MIN_SEGMENT_LOG2 <= log2 <= MAX_SEGMENT_LOG2:
            raise ConfigError("segment_size must be a power of two from 64 KiB to 1 MiB")
        self._root = str(root)
        self._keyprovider = keyprovider
        self._serializer = _serializer(serializer)
        if self._serializer.requires_opt_in:
            allow_pickle = True  # choosing pickle by name is the explicit opt-in
        self._allow_pickle = allow_pickle
        self._segment_log2 = log2
        self._lock = threading.Lock()
        self._codec: TokenCodec | None = None

    # -- storage primitives (names are relative to the root) ----------------------------------
    @abc.abstractmethod
    def _create(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A writable file that becomes the object on clean exit, atomically and never over an
        existing object (FileExistsError then); on error nothing readable is left."""

    def _create_object(self, name: str, data: bytes) -> None:
        """``_create`` for a whole object in memory (a small result); a store overrides it
        where one call is cheaper than a file object."""
        with self._create(name) as sink:
            sink.write(data)

    @abc.abstractmethod
    def _read_bytes(self, name: str) -> bytes:
        """The whole object; ResultNotFound if missing."""

    def _read_body(self, name: str) -> tuple[BinaryIO, int]:
        """The whole object as a stream, and its length, for ``read``. By default the object
        is read into memory first (one request to a remote store); a store that can stream it
        with a known length (local files) saves holding it twice."""
        blob = self._read_bytes(name)
        return io.BytesIO(blob), len(blob)

    @abc.abstractmethod
    def _open_read(self, name: str) -> BinaryIO:
        """A readable stream of the object; ResultNotFound if missing."""

    @abc.abstractmethod
    def _exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def _delete(self, name: str) -> None:
        """Remove the object; ResultNotFound if missing."""

    @abc.abstractmethod
    def _replace(self, name: str, data: bytes) -> None:
        """Atomically replace (or create) an object: readers see the old or the new bytes."""

    @abc.abstractmethod
    def _list_names(self) -> Iterator[str]:
        """Names of every object under the root (results and the keyset)."""

    @property
    def keyprovider(self) -> KeyProvider:
        """The key provider that wraps this handler's data keys (for checks like ``doctor``)."""
        return self._keyprovider

    # -- inventory (public: doctor and maintenance use these) --------------------------------
    def list_objects(self) -> Iterator[str]:
        """Names of the stored results under the root (the keyset and temporary files are not
        listed). A name is an opaque reference: it says nothing of the value or the task."""
        return (name for name in self._list_names() if is_object_name(name))

    def keyset_exists(self) -> bool:
        """Whether the root holds a token keyset yet (one is made on first write)."""
        return self._exists(KEYSET_NAME)

    def open_keyset(self) -> int:
        """Load (or, in an empty root, create) the token keyset; the number of token keys."""
        return self._tokens().key_count

    # -- tokens ------------------------------------------------------------------------------
    def _tokens(self) -> TokenCodec:
        codec = self._codec
        if codec is None:
            with self._lock:
                if self._codec is None:
                    self._codec = TokenCodec(keyset_mod.load_or_create(self))
                codec = self._codec
        return codec

    def rotate_token_keys(self) -> None:
        """Seal new tokens with a fresh token key; every earlier token stays readable."""
        with self._lock:
            self._codec = TokenCodec(keyset_mod.add_key(self))

    # -- writing -----------------------------------------------------------------------------
    def _new_header(self, object_id: bytes, size_hint: int | None) -> tuple[BlobHeader, bytes]:
        data_key = self._keyprovider.new_data_key(size_hint)
        return BlobHeader.new(
            data_key.plaintext,
            object_id,
            data_key.key_id,
            data_key.stanzas,
            segment_log2=self._segment_log2,
        )

    def _seal_into(self, name: str, object_id: bytes, chunks: Any, size_hint: int | None) -> bytes:
        header, payload_key = self._new_header(object_id, size_hint)
        try:
            with self._create(name) as sink:
                writer = BlobWriter(sink, header, payload_key)
                for chunk in chunks:
                    writer.write(chunk)
                writer.close()
        except FileExistsError:
            raise _overwrite() from None
        return header.commitment

    def _seal_small(self, name: str, object_id: bytes, payload: bytes) -> bytes:
        """A payload shorter than one segment: the blob is built in memory (one AES-GCM call)
        and stored in one call; the same bytes ``_seal_into`` would write."""
        header, payload_key = self._new_header(object_id, len(payload))
        blob = encrypt_segments(payload, header, payload_key, header.encode())
        try:
            self._create_object(name, blob)
        except FileExistsError:
            raise _overwrite() from None
        return header.commitment

    def write(self, value: Any) -> str:
        """Serialize, encrypt and store ``value``; return its opaque token."""
        # A large bytes value is not copied: its own buffer is one of the parts.
        parts = (frame(self._serializer.name), *dump_parts(self._serializer, value))
        codec = self._tokens()
        object_id = os.urandom(16)
        name = object_name(object_id)
        size = sum(len(part) for part in parts)
        if size < _SMALL_PAYLOAD:
            commitment = self._seal_small(name, object_id, b"".join(parts))
        else:
            commitment = self._seal_into(name, object_id, parts, size)
        return codec.seal(object_id, commitment)

    def write_stream(self, fileobj: BinaryIO) -> str:
        """Store the bytes of a readable binary file object in bounded memory; ``read`` of the
        token returns them as ``bytes`` and ``open`` streams them back."""
        codec = self._tokens()
        object_id = os.urandom(16)
        step = 1 << self._segment_log2

        def chunks() -> Iterator[bytes]:
            prefix = frame(STREAM_SERIALIZER)
            yield prefix
            # Reads that end on segment boundaries (the first one is short by the framing)
            # are encrypted where they lie, never copied into the writer's segment buffer.
            done = len(prefix)
            while chunk := fileobj.read(step - done % step):
                done += len(chunk)
                yield chunk

        commitment = self._seal_into(object_name(object_id), object_id, chunks(), None)
        return codec.seal(object_id, commitment)

    # -- reading -----------------------------------------------------------------------------
    def _locate(self, token: str) -> tuple[bytes, bytes]:
        return self._tokens().open(token)

    def _check_header(self, header: BlobHeader, object_id: bytes, commitment: bytes) -> bytes:
        """The payload key, once the blob is shown to be the one the token names."""
        if not (
            hmac.compare_digest(header.object_id, object_id)
            and hmac.compare_digest(header.commitment, commitment)
        ):
            raise IntegrityError()
        data_key = self._keyprovider.open_data_key(header.key_id, header.stanzas)
        return header.payload_key(data_key)

    def read(self, token: str) -> Any:
        """The value behind ``token``; verified in full before anything is deserialized."""
        object_id, commitment = self._locate(token)
        source, length = self._read_body(object_name(object_id))
        with source:
            header = read_header(source)
            payload_key = self._check_header(header, object_id, commitment)
            # Cut after the framing (and a msgpack bin header): a large bytes value is then
            # the very bytes object the decryption wrote, with no copy (payload.split_point).
            head, data = decrypt_split(
                source, length - source.tell(), header, payload_key, split_point
            )
        serializer_name, rest = unframe(head)
        return load_parts(self._serializer_for(serializer_name), rest, data)

    def open(self, token: str) -> BinaryIO:
        """A readable binary file object of the stored payload bytes (the bytes given to
        ``write_stream``, or the serialized form of a ``write`` value). It yields only
        authenticated bytes and raises IntegrityError on truncation or tampering."""
        object_id, commitment = self._locate(token)
        source = self._open_read(object_name(object_id))
        try:
            header = read_header(source)
            payload_key = self._check_header(header, object_id, commitment)
            stream = io.BufferedReader(BlobReader(source, header, payload_key), 1 << 16)
            # The payload's own framing (serializer name) is not part of the caller's bytes.
            (length,) = stream.read(1) or b"\x00"
            if not 1 <= length <= 64 or len(stream.read(length)) != length:
                raise IntegrityError()
        except BaseException:
            source.close()
            raise
        return stream

    def _serializer_for(self, name: str) -> Serializer:
        if name == self._serializer.name:
            return self._serializer
        serializer = _serializer(name)
        if serializer.requires_opt_in and not self._allow_pickle:
            raise SerializationError(
                "this result was written with the pickle serializer; reading it needs an "
                "explicit opt-in (allow_pickle=True or serializer='pickle')"
            )
        return serializer

    def exists(self, token: str) -> bool:
        object_id, _ = self._locate(token)
        return self._exists(object_name(object_id))

    def delete(self, token: str) -> None:
        object_id, _ = self._locate(token)
        self._delete(object_name(object_id))

    # -- pickling and repr -------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this handler in another process."""
        return {
            "root": self._root,
            "keyprovider": self._keyprovider,
            "serializer": self._serializer,
            "allow_pickle": self._allow_pickle,
            "segment_size": 1 << self._segment_log2,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._settings()))

    def __repr__(self) -> str:
        # The root names a bucket or a path: it must not reach the orchestrator through a log.
        return f"<{type(self).__name__}>"


def _overwrite() -> StorageError:
    # 128 random bits do not collide; an existing object means a broken random source.
    return StorageError("refusing to overwrite an existing object")


def _serializer(name_or_instance: str | Serializer) -> Serializer:
    if isinstance(name_or_instance, Serializer):
        return name_or_instance
    if name_or_instance in BUILTIN_SERIALIZERS:
        return BUILTIN_SERIALIZERS[name_or_instance]()
    # A plugin's serializer: the registry imports this module, so it is imported here.
    from sealed_results.plugins import get_serializer

    return get_serializer(name_or_instance)


def _rebuild(cls: type[ResultHandler], settings: dict[str, Any]) -> ResultHandler:
    return cls(**settings)
