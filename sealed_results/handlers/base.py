"""ResultHandler: the sealing pipeline, composed of a store, key materials and a serializer.

Everything about formats and keys happens here, and the store only moves bytes through its
public methods (``stores.base.Store``). Object names are the hex of a random 128-bit object id
and say nothing of the task, value or time; the token keyset lives beside them under the fixed
name ``keyset``. The named handlers (``LocalHandler``, ``S3Handler``...) are this class over one
store class each: a handler plugin is a store plus a name.
"""

from __future__ import annotations

import hmac
import io
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, BinaryIO, ClassVar

from sealed_results.errors import (
    ConfigError,
    IntegrityError,
    KeysetMissing,
    ResultNotFound,
    SerializationError,
    StorageError,
    UnsupportedVersion,
)
from sealed_results.format import (
    DEFAULT_SEGMENT_LOG2,
    DESCRIPTOR_SIZE,
    MAX_SEGMENT_LOG2,
    MIN_SEGMENT_LOG2,
    STREAM_SERIALIZER,
    BlobHeader,
    BlobReader,
    BlobWriter,
    SegmentCipher,
    TokenCodec,
    open_descriptor,
    open_segments,
    read_exact,
    read_header,
    seal_descriptor,
    seal_segments,
)
from sealed_results.handlers.keyset import KEYSET_NAME, Keyset
from sealed_results.handlers.objects import (
    ObjectCheck,
    StoredObjects,
    is_object_name,
    object_id_of,
    object_name,
)
from sealed_results.keyproviders.base import KeyProvider
from sealed_results.keyproviders.materials import KeyMaterials, as_materials
from sealed_results.pickling import Rebuildable
from sealed_results.serializers import Serializer, resolve
from sealed_results.stores.base import Store

__all__ = ["KEYSET_NAME", "ObjectCheck", "ResultHandler", "is_object_name", "object_name"]

Buffer = bytes | bytearray | memoryview
KeyProviderArg = KeyProvider | KeyMaterials | Sequence[KeyProvider | KeyMaterials]
# Payloads below this size are sealed in memory and stored in one call (one AES-GCM call, no
# stream): most results are small. Larger ones stream, so they are never held twice. It is the
# smallest segment size, so a small payload is always one (final) segment.
_SMALL_PAYLOAD = 1 << MIN_SEGMENT_LOG2
# ``read`` holds a whole result in memory: a stored object larger than this is refused before it
# is read (IntegrityError), so a planted huge or sparse object cannot exhaust memory. ``open``
# streams and needs no bound. Raise it per handler for larger in-memory results.
DEFAULT_MAX_RESULT_SIZE = 1 << 34


class ResultHandler(StoredObjects, Rebuildable):
    """Encrypts results into a store and hands out opaque tokens.

    ``write(value) -> token`` and ``read(token) -> value``; ``write_stream``/``open`` for large
    results in bounded memory. Thread-safe. Picklable without key material or credentials.

    ``root`` is where results live: a path or URL for the class's ``store_class`` (other
    keyword arguments go to that store's constructor, e.g. ``storage_options``), or a ready
    ``Store``. ``keyprovider`` is a key provider, key materials, or a list of providers that
    all wrap every data key (any one opens it).
    """

    #: The plugin name (entry point ``sealed_results.handlers``) of a named handler.
    name: ClassVar[str] = "store"
    #: The store a named handler builds from ``root`` and the store's keyword arguments.
    store_class: ClassVar[type[Store] | None] = None

    def __init__(
        self,
        root: str | Store,
        keyprovider: KeyProviderArg,
        *,
        serializer: str | Serializer = "msgpack",
        allow_pickle: bool = False,
        segment_size: int = 1 << DEFAULT_SEGMENT_LOG2,
        max_result_size: int = DEFAULT_MAX_RESULT_SIZE,
        **store_options: Any,
    ) -> None:
        log2 = segment_size.bit_length() - 1
        if segment_size != 1 << log2 or not MIN_SEGMENT_LOG2 <= log2 <= MAX_SEGMENT_LOG2:
            raise ConfigError("segment_size must be a power of two from 64 KiB to 1 MiB")
        self._store = self._build_store(root, store_options)
        # Several providers in a list all wrap each data key; any one opens it (break-glass).
        self._materials = as_materials(keyprovider)
        self._serializer = resolve(serializer)
        if self._serializer.requires_opt_in:
            allow_pickle = True  # choosing pickle by name is the explicit opt-in
        self._allow_pickle = allow_pickle
        self._segment_log2 = log2
        if not isinstance(max_result_size, int) or max_result_size < 1:
            raise ConfigError("max_result_size must be a positive number of bytes")
        self._max_result_size = max_result_size
        self._keyset = Keyset(self._store, self._materials)
        self._lock = threading.Lock()
        self._codec: TokenCodec | None = None
        self._loaded_at = 0.0

    @classmethod
    def _build_store(cls, root: str | Store, options: dict[str, Any]) -> Store:
        if isinstance(root, Store):
            if options:
                raise ConfigError(f"unexpected argument {sorted(options)[0]!r} with a Store")
            return root
        if cls.store_class is None:
            raise ConfigError(f"{cls.__name__} needs a Store instance as its root")
        if not isinstance(root, str | os.PathLike):
            raise ConfigError("root must be a path, a URL or a Store")
        build: Callable[..., Store] = cls.store_class  # each store has its own constructor
        return build(str(root), **options)

    @property
    def store(self) -> Store:
        """Where the blobs live."""
        return self._store

    @property
    def materials(self) -> KeyMaterials:
        """The key materials that wrap this handler's data keys."""
        return self._materials

    @property
    def keyprovider(self) -> KeyMaterials:
        """The same as ``materials`` (``.providers()`` lists the concrete key providers)."""
        return self._materials

    # -- tokens ------------------------------------------------------------------------------
    def keyset_exists(self) -> bool:
        """Whether the root holds a token keyset yet (one is made on first write)."""
        return self._keyset.exists()

    def open_keyset(self) -> int:
        """Load (or, in an empty root, create) the token keyset; the number of token keys."""
        return self._tokens().key_count

    # Token keys are cached per process. A token that no cached key opens makes the process
    # reload the keyset once (another process may have rotated), at most once per
    # RELOAD_INTERVAL so garbage tokens cannot make a reader hammer the store; and keys older
    # than TOKEN_KEYS_MAX_AGE are reloaded on next use, so derived names (derive_name) follow
    # a rotation elsewhere within that bound.
    RELOAD_INTERVAL: ClassVar[float] = 1.0
    TOKEN_KEYS_MAX_AGE: ClassVar[float] = 300.0

    def _tokens(self) -> TokenCodec:
        codec = self._codec
        if codec is None or time.monotonic() - self._loaded_at > self.TOKEN_KEYS_MAX_AGE:
            with self._lock:
                if self._codec is codec:
                    keys = self._keyset.load_or_create() if codec is None else self._keyset_now()
                    self._set_keys(keys)
                codec = self._codec
        assert codec is not None
        return codec

    def _keyset_now(self) -> list[bytes]:
        try:
            return self._keyset.load()
        except ResultNotFound:
            raise KeysetMissing() from None

    def _set_keys(self, keys: list[bytes]) -> None:
        self._codec = TokenCodec(keys)
        self._loaded_at = time.monotonic()

    def _reload_tokens(self) -> TokenCodec | None:
        """A fresh codec from the stored keyset, unless one was loaded very recently."""
        with self._lock:
            if time.monotonic() - self._loaded_at < self.RELOAD_INTERVAL:
                return None
            self._set_keys(self._keyset_now())
            return self._codec

    def rotate_token_keys(self) -> None:
        """Seal new tokens with a fresh token key; every earlier token stays readable. Safe to
        run in several processes at once: each key is added by compare-and-swap."""
        with self._lock:
            self._set_keys(self._keyset.add_key())

    def _locate(self, token: str) -> tuple[bytes, bytes]:
        try:
            return self._tokens().open(token)
        except UnsupportedVersion:
            raise
        except IntegrityError:
            codec = self._reload_tokens()  # perhaps sealed under a key added elsewhere
            if codec is None:
                raise
            return codec.open(token)

    # -- writing -----------------------------------------------------------------------------
    def _new_blob(
        self, object_id: bytes, size_hint: int | None, serializer: str
    ) -> tuple[BlobHeader, SegmentCipher, bytes]:
        """A new blob's header, its cipher, and the bytes before its segments."""
        data_key = self._materials.new_data_key(size_hint)
        header, payload_key = BlobHeader.new(
            data_key.plaintext,
            object_id,
            data_key.key_id,
            data_key.stanzas,
            segment_log2=self._segment_log2,
        )
        cipher = header.cipher(payload_key)
        return header, cipher, header.encode() + seal_descriptor(cipher, serializer)

    def _seal_into(
        self, object_id: bytes, chunks: Iterable[Buffer], size_hint: int | None, serializer: str
    ) -> bytes:
        header, cipher, prefix = self._new_blob(object_id, size_hint, serializer)
        try:
            with self._store.create(object_name(object_id)) as sink:
                sink.write(prefix)
                writer = BlobWriter(sink, cipher)
                for chunk in chunks:
                    writer.write(chunk)
                writer.close()
        except FileExistsError:
            raise _overwrite() from None
        return header.commitment

    def _seal_whole(
        self, object_id: bytes, payload: Buffer, serializer: str, *, overwrite: bool = False
    ) -> bytes:
        """The blob built in memory (one AES-GCM call for a payload under one segment) and
        stored in one call; the same bytes ``_seal_into`` would write. ``overwrite`` replaces
        an existing object atomically instead of refusing."""
        header, cipher, prefix = self._new_blob(object_id, len(payload), serializer)
        blob = seal_segments(payload, cipher, prefix)
        if overwrite:
            self._store.replace(object_name(object_id), blob)
            return header.commitment
        try:
            self._store.put(object_name(object_id), blob)
        except FileExistsError:
            raise _overwrite() from None
        return header.commitment

    def _seal_value(self, object_id: bytes, value: Any, *, overwrite: bool = False) -> bytes:
        # A large bytes value is not copied: its own buffer is one of the parts.
        parts = self._serializer.dump_parts(value)
        size = sum(len(part) for part in parts)
        name = self._serializer.name
        if size < _SMALL_PAYLOAD or overwrite:
            payload = parts[0] if len(parts) == 1 else b"".join(parts)
            return self._seal_whole(object_id, payload, name, overwrite=overwrite)
        return self._seal_into(object_id, parts, size, name)

    def write(self, value: Any) -> str:
        """Serialize, encrypt and store ``value``; return its opaque token."""
        codec = self._tokens()
        object_id = os.urandom(16)
        return codec.seal(object_id, self._seal_value(object_id, value))

    # -- results at names the caller derives (orchestrator adapters) ---------------------------
    def derive_name(self, purpose: str, data: bytes) -> str:
        """A storage name for ``data``: a keyed hash (HMAC-SHA256 under a key derived from the
        primary token key for ``purpose``), so the name reveals nothing of ``data``, yet every
        process with the profile derives the same one. ``rotate_token_keys()`` changes every
        derived name (what was stored under the old ones is then not found)."""
        return object_name(self._tokens().keyed_hash(purpose, data)[:16])

    def write_at(self, name: str, value: Any, *, overwrite: bool = False) -> None:
        """Store ``value`` under ``name`` (from ``derive_name``). The blob is bound to that
        name: copied or moved to another name it does not open. Without ``overwrite`` an
        existing object is refused (StorageError); with it, replaced atomically (whole in
        memory)."""
        self._seal_value(object_id_of(name), value, overwrite=overwrite)

    def read_at(self, name: str) -> Any:
        """The value stored under ``name`` by ``write_at``; verified in full before anything
        is deserialized. ResultNotFound when there is none."""
        object_id = object_id_of(name)
        return self._read_object(object_id, None)

    def write_stream(self, fileobj: BinaryIO) -> str:
        """Store the bytes of a readable binary file object in bounded memory; ``read`` of the
        token returns them as ``bytes`` and ``open`` streams them back."""
        codec = self._tokens()
        object_id = os.urandom(16)
        step = 1 << self._segment_log2

        def chunks() -> Iterator[bytes]:
            # Segment-sized reads are encrypted where they lie, never copied into the
            # writer's segment buffer.
            while chunk := fileobj.read(step):
                yield chunk

        commitment = self._seal_into(object_id, chunks(), None, STREAM_SERIALIZER)
        return codec.seal(object_id, commitment)

    # -- reading -----------------------------------------------------------------------------
    def _open_header(
        self, source: BinaryIO, object_id: bytes, commitment: bytes | None
    ) -> tuple[SegmentCipher, str]:
        """The blob's cipher and serializer name, once the blob is shown to be the one the
        token names (its object id, and its commitment when a token gave one) and its key
        commitment holds."""
        header = read_header(source)
        if not hmac.compare_digest(header.object_id, object_id) or (
            commitment is not None and not hmac.compare_digest(header.commitment, commitment)
        ):
            raise IntegrityError()
        data_key = self._materials.open_data_key(header.key_id, header.stanzas)
        cipher = header.cipher(header.payload_key(data_key))
        return cipher, open_descriptor(cipher, read_exact(source, DESCRIPTOR_SIZE))

    def read(self, token: str) -> Any:
        """The value behind ``token``; verified in full before anything is deserialized."""
        return self._read_object(*self._locate(token))

    def _read_object(self, object_id: bytes, commitment: bytes | None) -> Any:
        source, length = self._store.fetch(object_name(object_id), max_size=self._max_result_size)
        with source:
            cipher, serializer_name = self._open_header(source, object_id, commitment)
            serializer = self._serializer_for(serializer_name)
            # The serializer may cut the payload where a large value's own bytes begin (a
            # msgpack bytes value): that tail is then the very object decryption wrote.
            head, data = open_segments(
                source, length - source.tell(), cipher, serializer.split_point
            )
        return serializer.load_parts(head, data)

    def open(self, token: str) -> BinaryIO:
        """A readable binary file object of the stored payload bytes (the bytes given to
        ``write_stream``, or the serialized form of a ``write`` value). It yields only
        authenticated bytes and raises IntegrityError on truncation or tampering."""
        object_id, commitment = self._locate(token)
        source = self._store.open(object_name(object_id))
        try:
            cipher, _ = self._open_header(source, object_id, commitment)
        except BaseException:
            source.close()
            raise
        return io.BufferedReader(BlobReader(source, cipher), 1 << 16)

    def _serializer_for(self, name: str) -> Serializer:
        if name == self._serializer.name:
            return self._serializer
        serializer = resolve(name)
        if serializer.requires_opt_in and not self._allow_pickle:
            raise SerializationError(
                "this result was written with the pickle serializer; reading it needs an "
                "explicit opt-in (allow_pickle=True or serializer='pickle')"
            )
        return serializer

    def exists(self, token: str) -> bool:
        object_id, _ = self._locate(token)
        return self._store.exists(object_name(object_id))

    def delete(self, token: str) -> None:
        object_id, _ = self._locate(token)
        self._store.delete(object_name(object_id))

    # -- pickling and repr -------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this handler in another process (the store and
        the materials pickle through their own settings, without secrets)."""
        return {
            "root": self._store,
            "keyprovider": self._materials,
            "serializer": self._serializer,
            "allow_pickle": self._allow_pickle,
            "segment_size": 1 << self._segment_log2,
            "max_result_size": self._max_result_size,
        }

    def __repr__(self) -> str:
        # The root names a bucket or a path: it must not reach the orchestrator through a log.
        return f"<{type(self).__name__}>"


def _overwrite() -> StorageError:
    # 128 random bits do not collide; an existing object means a broken random source.
    return StorageError("refusing to overwrite an existing object")
