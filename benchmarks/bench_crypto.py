"""Envelope throughput: the blob format vs raw AES-256-GCM, aws-encryption-sdk and Tink.

Every implementation gets the same plaintext bytes in memory and writes ciphertext to memory
(or a sink that discards it), so nothing here touches a disk: this is the cost of the format.

- raw AES-256-GCM, the practical limit: ``AESGCM.encrypt_into`` / ``decrypt_into`` over 1 MiB
  chunks (memoryview slices of the input, no copies) into one reused 1 MiB output buffer, one
  fresh ``AESGCM`` per payload; decryption runs over the blob's own segments, i.e. the very
  same ciphertext bytes. Every "% of raw" is against this row. A second raw row uses
  ``encrypt``/``decrypt``, which return a new ``bytes`` per chunk: on machines where fresh
  pages are expensive (VMs) that costs more than the AES itself.
- raw AES-256-GCM, one shot (up to 64 MiB): one ``AESGCM(key).encrypt`` of the whole payload,
  and one ``decrypt`` of a one-shot ciphertext made beforehand: a new ``bytes`` as large as the
  payload, the same output shape as ``seal_blob``/``open_blob``, hence their fair baseline
  (``ratio_to_raw_one_shot``). Fresh output pages can cost more than the AES on a VM (see the
  ``reference: bytearray(size)`` row), which the ``*_into`` limit never pays.
- blob, streaming: the header and sealed descriptor, then ``BlobWriter`` into a sink that
  discards (what ``write_stream`` writes), and ``read_header`` + ``open_descriptor`` +
  ``BlobReader`` over a source that hands out views of the blob, read with ``readinto`` into
  one reused 1 MiB buffer.
  Segments are 1 MiB (the default), the same chunking as the limit. The data key is generated
  and wrapped once and the reader is handed it too (a cached data key, as with
  ``CachingKeyProvider``): the key provider is not part of the format's cost (the small-results
  section counts its calls); per-blob header parsing, HKDF and the key commitment check are.
- blob, whole payload: ``seal_blob`` (bytes out) and ``open_blob`` (bytearray out, which
  includes parsing the header and unwrapping with the local keyring).
- aws-encryption-sdk: a raw AES wrapping key (``RawMasterKeyProvider``, the pre-MPL form of the
  raw AES keyring; the MPL keyrings need aws-cryptographic-material-providers), the unsigned
  committing suite AES_256_GCM_HKDF_SHA512_COMMIT_KEY, 1 MiB frames; ``encrypt``/``decrypt``
  one shot, ``stream()`` for payloads above 64 MiB.
- Tink: streaming AEAD AES256_GCM_HKDF_1MB, writes and reads of 1 MiB.

Above 64 MiB only the streaming forms run (a one-shot API would hold several copies), and the
plaintext is one 64 MiB random block fed repeatedly (AES-GCM's cost does not depend on it).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchmarks._common import Case, MiB, measure
from sealed_results.format import (
    DESCRIPTOR_SIZE,
    STREAM_SERIALIZER,
    BlobReader,
    BlobWriter,
    open_blob,
    open_descriptor,
    read_exact,
    read_header,
    seal_blob,
    seal_descriptor,
)
from sealed_results.format import BlobHeader as _BlobHeader
from sealed_results.keyproviders import LocalKeyring, as_materials

CHUNK = MiB  # the segment size of the blob and the chunk of every other implementation
RAW = "raw AES-256-GCM, *_into a reused buffer (limit)"
RAW_NEW = "raw AES-256-GCM, new bytes per chunk"
RAW_ONE_SHOT = "raw AES-256-GCM, one shot (new bytes of the payload's size)"
FRESH = "reference: bytearray(size), no crypto"
ONE_SHOT_MAX = 64 * MiB
_BLOCK = 64 * MiB


class NullSink(io.RawIOBase):
    """A writable stream that keeps nothing (its close is a no-op, so any wrapper may close)."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)

    def close(self) -> None:
        pass


class ViewReader:
    """In-memory blob bytes as a stream whose reads are views (no copies, like reading a file
    costs nothing), so the reader row measures the reader, not the source. Like a file it has
    ``close``; it says it has no ``readinto`` (which would copy) rather than lacking one, since
    a missing attribute costs a caught AttributeError that no real source costs."""

    readinto = None

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes | memoryview:
        end = len(self._view) if n < 0 else min(len(self._view), self._pos + n)
        out, self._pos = self._view[self._pos : end], end
        return out if len(out) > 4096 else bytes(out)  # header fields are parsed as bytes

    def close(self) -> None:
        pass


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


class Payload:
    """``size`` bytes of plaintext, as 1 MiB memoryviews; one real buffer up to 64 MiB."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.block = os.urandom(min(size, _BLOCK))
        self.data = self.block if size <= _BLOCK else None

    def chunks(self, step: int = CHUNK) -> Iterator[memoryview]:
        view = memoryview(self.block)
        done = 0
        while done < self.size:
            start = done % len(self.block)
            n = min(step, self.size - done, len(self.block) - start)
            yield view[start : start + n]
            done += n


def _aws() -> tuple[Any, Any, Any] | None:
    try:
        import aws_encryption_sdk
        from aws_encryption_sdk.identifiers import (
            Algorithm,
            CommitmentPolicy,
            EncryptionKeyType,
            WrappingAlgorithm,
        )
        from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
        from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider
    except ImportError:
        return None

    class RawAesProvider(RawMasterKeyProvider):  # type: ignore[misc]
        provider_id = "sealed-results-bench"

        def __init__(self, **kwargs: Any) -> None:
            self._key = os.urandom(32)

        def _get_raw_key(self, key_id: bytes) -> Any:
            return WrappingKey(
                wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
                wrapping_key=self._key,
                wrapping_key_type=EncryptionKeyType.SYMMETRIC,
            )

    provider = RawAesProvider()
    provider.add_master_key(b"bench")
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    return client, provider, Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY


def _tink() -> Any | None:
    try:
        import tink
        from tink import streaming_aead
    except ImportError:
        return None
    streaming_aead.register()
    template = streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB
    return tink.new_keyset_handle(template).primitive(streaming_aead.StreamingAead)


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("aws-encryption-sdk", "tink", "msgpack", "fsspec"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def cases_for(size: int, keyring: LocalKeyring) -> tuple[list[Case], list[Case], list[str]]:
    """(encryption cases, decryption cases, skipped implementations) for one payload size."""
    payload = Payload(size)
    one_shot = size <= ONE_SHOT_MAX
    materials = as_materials(keyring)  # what a handler makes of its keyprovider
    data_key = materials.new_data_key(size)
    object_id = os.urandom(16)
    aad = os.urandom(104)  # the blob authenticates its 104-byte fixed header the same way
    skipped: list[str] = []

    def new_header() -> tuple[_BlobHeader, bytes]:
        return _BlobHeader.new(data_key.plaintext, object_id, data_key.key_id, data_key.stanzas)

    out = bytearray(CHUNK + 16)

    def raw_encrypt(into: bool = True) -> None:
        aead = AESGCM(data_key.plaintext)
        count = size // CHUNK + 1  # like the blob: a final, possibly empty, chunk
        for index, chunk in enumerate(payload.chunks()):
            nonce = _nonce(index, index == count - 1)
            if into:
                aead.encrypt_into(nonce, chunk, aad, memoryview(out)[: len(chunk) + 16])
            else:
                aead.encrypt(nonce, chunk, aad)
        if size % CHUNK == 0:
            aead.encrypt(_nonce(count - 1, True), b"", aad)

    def write_blob(sink: Any) -> tuple[_BlobHeader, bytes]:
        """A whole blob into ``sink``: header, sealed descriptor, segments (what a handler's
        ``write_stream`` writes)."""
        header, key = new_header()
        cipher = header.cipher(key)
        sink.write(header.encode() + seal_descriptor(cipher, STREAM_SERIALIZER))
        writer = BlobWriter(sink, cipher)
        for chunk in payload.chunks():
            writer.write(chunk)
        writer.close()
        return header, key

    def blob_writer() -> None:
        write_blob(NullSink())

    # One real blob of this payload, for the decryption cases (raw decrypts its segments).
    sink = io.BytesIO()
    header, payload_key = write_blob(sink)
    blob = sink.getvalue()
    del sink
    body_start = len(header.encode()) + DESCRIPTOR_SIZE

    def raw_decrypt(into: bool = True) -> None:
        aead = AESGCM(payload_key)
        view = memoryview(blob)[body_start:]
        step = CHUNK + 16
        count = len(view) // step + 1
        for index in range(count):
            nonce = _nonce(index, index == count - 1)
            chunk = view[index * step : (index + 1) * step]
            if into:
                aead.decrypt_into(nonce, chunk, header.fixed, memoryview(out)[: len(chunk) - 16])
            else:
                aead.decrypt(nonce, chunk, header.fixed)

    buffer = bytearray(CHUNK)

    def blob_reader() -> None:
        source = ViewReader(blob)
        head = read_header(source)
        # A cached data key, as for the writer.
        cipher = head.cipher(head.payload_key(data_key.plaintext))
        open_descriptor(cipher, read_exact(source, DESCRIPTOR_SIZE))
        with BlobReader(source, cipher) as reader:
            while reader.readinto(buffer):
                pass

    encrypt = [
        Case(RAW, raw_encrypt, size),
        Case(RAW_NEW, lambda: raw_encrypt(into=False), size),
        Case("blob BlobWriter (stream)", blob_writer, size),
    ]
    decrypt = [
        Case(RAW, raw_decrypt, size),
        Case(RAW_NEW, lambda: raw_decrypt(into=False), size),
        Case("blob BlobReader (stream)", blob_reader, size),
    ]
    if one_shot:
        assert payload.data is not None
        data = payload.data
        # One AESGCM call over the whole payload, a fresh object per call like the rows above.
        one_nonce = _nonce(0, True)
        one_shot_ct = AESGCM(payload_key).encrypt(one_nonce, data, header.fixed)
        encrypt.insert(
            2,
            Case(
                RAW_ONE_SHOT,
                lambda: AESGCM(data_key.plaintext).encrypt(one_nonce, data, aad),
                size,
            ),
        )
        decrypt.insert(
            2,
            Case(
                RAW_ONE_SHOT,
                lambda: AESGCM(payload_key).decrypt(one_nonce, one_shot_ct, header.fixed),
                size,
            ),
        )
        encrypt.append(
            Case(
                "blob seal_blob (bytes out)",
                lambda: seal_blob(
                    data,
                    data_key.plaintext,
                    data_key.stanzas,
                    object_id=object_id,
                    key_id=data_key.key_id,
                ),
                size,
            )
        )
        decrypt.append(
            Case(
                "blob open_blob (bytes out)",
                lambda: open_blob(blob, materials.open_data_key, object_id=object_id),
                size,
            )
        )
        # Not an implementation: what any bytes-out API pays for first touching its output.
        decrypt.append(Case(FRESH, lambda: bytearray(size), size))

    aws = _aws()
    if aws is None:
        skipped.append("aws-encryption-sdk (not installed)")
    else:
        client, provider, suite = aws
        if one_shot:
            aws_ct, _ = client.encrypt(
                source=payload.data, key_provider=provider, algorithm=suite, frame_length=CHUNK
            )

            def aws_encrypt() -> None:
                client.encrypt(
                    source=payload.data,
                    key_provider=provider,
                    algorithm=suite,
                    frame_length=CHUNK,
                )

            def aws_decrypt() -> None:
                client.decrypt(source=aws_ct, key_provider=provider)
        else:
            aws_ct = _aws_stream(client, provider, suite, payload)

            def aws_encrypt() -> None:
                _aws_stream(client, provider, suite, payload, keep=False)

            def aws_decrypt() -> None:
                with client.stream(
                    mode="d", source=io.BytesIO(aws_ct), key_provider=provider
                ) as decryptor:
                    for _ in decryptor:
                        pass

        encrypt.append(Case("aws-encryption-sdk", aws_encrypt, size))
        decrypt.append(Case("aws-encryption-sdk", aws_decrypt, size))

    tink_aead = _tink()
    if tink_aead is None:
        skipped.append("tink (not installed)")
    else:
        tink_sink = io.BytesIO()
        _tink_encrypt(tink_aead, payload, tink_sink)
        tink_ct = tink_sink.getvalue()
        del tink_sink

        def tink_decrypt() -> None:
            stream = tink_aead.new_decrypting_stream(io.BytesIO(tink_ct), b"")
            while stream.read(CHUNK):
                pass
            stream.close()

        encrypt.append(
            Case("tink streaming AEAD", lambda: _tink_encrypt(tink_aead, payload, NullSink()), size)
        )
        decrypt.append(Case("tink streaming AEAD", tink_decrypt, size))
    return encrypt, decrypt, skipped


class _KeepOpen(io.BytesIO):
    def close(self) -> None:  # Tink closes its destination; keep the bytes readable
        pass


def _tink_encrypt(primitive: Any, payload: Payload, sink: io.IOBase) -> None:
    target = _KeepOpen() if isinstance(sink, io.BytesIO) else sink
    with primitive.new_encrypting_stream(target, b"") as stream:
        for chunk in payload.chunks():
            stream.write(chunk)
    if target is not sink:
        sink.write(target.getvalue())  # type: ignore[attr-defined]


def _aws_stream(
    client: Any, provider: Any, suite: Any, payload: Payload, keep: bool = True
) -> bytes:
    source = _ChunkSource(payload)
    out = io.BytesIO() if keep else NullSink()
    with client.stream(
        mode="e", source=source, key_provider=provider, algorithm=suite, frame_length=CHUNK
    ) as encryptor:
        for part in encryptor:
            out.write(part)
    return out.getvalue() if keep else b""  # type: ignore[attr-defined]


class _ChunkSource(io.RawIOBase):
    """The payload as a readable stream (for APIs that pull their input)."""

    def __init__(self, payload: Payload) -> None:
        super().__init__()
        self._chunks = payload.chunks()
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending:
            self._pending = next(self._chunks, memoryview(b""))
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def run(
    sizes: list[int],
    keyring: LocalKeyring,
    *,
    rounds: int,
    min_time: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Throughput per size and direction; ``ratio_to_raw`` = raw (limit) time / case time,
    ``ratio_to_raw_one_shot`` = raw one-shot time / case time (sizes up to 64 MiB)."""
    results: dict[str, Any] = {"chunk": CHUNK, "sizes": {}}
    for size in sizes:
        log(f"crypto: {size} bytes")
        encrypt, decrypt, skipped = cases_for(size, keyring)
        entry: dict[str, Any] = {"skipped": skipped}
        for direction, cases in (("encrypt", encrypt), ("decrypt", decrypt)):
            measure(cases, rounds=rounds, min_time=min_time)
            raw, raw_new = cases[0], cases[1]
            raw_one = next((case for case in cases if case.name == RAW_ONE_SHOT), None)
            rows: dict[str, Any] = {}
            for case in cases:
                rows[case.name] = {
                    **case.summary(),
                    "ratio_to_raw": raw.best / case.best,
                    "ratio_to_raw_new_bytes": raw_new.best / case.best,
                }
                if raw_one is not None:
                    rows[case.name]["ratio_to_raw_one_shot"] = raw_one.best / case.best
            entry[direction] = rows
        results["sizes"][str(size)] = entry
        del encrypt, decrypt
    return results
