"""GCSStore: objects in Google Cloud Storage through gcsfs.

Exclusive writes. GCS makes a write exclusive with the precondition ``ifGenerationMatch=0``.
gcsfs's ``open(path, "xb")`` always starts a resumable upload with it, and fake-gcs-server (the
emulator we test on) ignores preconditions on resumable uploads (and on compose and rewrite),
honouring them on single-request multipart uploads only. So this store does not rely on
that path at all:

* a result that fits in one block (8 MiB by default) is stored with one multipart upload with
  ``ifGenerationMatch=0``: exclusive and atomic everywhere;
* a larger one first claims its name with an empty placeholder object, created the same way
  (so the claim itself is exclusive), then streams through a resumable upload whose
  precondition is the placeholder's generation: only the claimant can replace the placeholder,
  on real GCS by the precondition and on emulators because nobody else holds the claim. A
  failed upload cancels the resumable session and deletes the placeholder (again only that
  generation). Until the upload completes, the name holds an empty object, which no token
  names and which fails authentication if read.

The placeholder costs one small extra request per large write.

Compare-and-swap: the version is the object's generation, from the ``X-Goog-Generation`` header
of the download that carried the bytes; ``swap`` is one multipart upload with
``ifGenerationMatch=<generation>`` (``0`` to create), the one upload path on which
fake-gcs-server honours preconditions too. A bounded read asks for the range
``0..max_size``; GCS refuses any range of an empty object (416), which one metadata request
then tells apart.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, ClassVar
from urllib.parse import quote

from sealed_results.errors import IntegrityError, StorageError
from sealed_results.retry import RetryPolicy
from sealed_results.stores.failures import MESSAGES, Failure, failure_for_status
from sealed_results.stores.fsspec import FsspecStore

# gcsfs reads this on first import; left unset, bucket operations against anything but real
# GCS can hang ~60 s each while gcsfs probes for gRPC/HNS support. Set before gcsfs is imported
# (an explicit setting wins); this store speaks the JSON API, so zonal buckets are not for it.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

__all__ = ["GCSStore"]

MiB = 1 << 20


@functools.cache  # one class per process, made on first use (gcsfs is imported lazily)
def _exclusive_file_class() -> type:
    from fsspec.asyn import sync
    from gcsfs import core

    class ExclusiveGCSFile(core.GCSFile):  # type: ignore[misc]
        """A GCSFile ("wb") whose every path is exclusive; see the module docstring."""

        def __init__(self, fs: Any, path: str, block_size: int) -> None:
            super().__init__(fs, path, mode="wb", block_size=block_size)
            self.claim: str | None = None  # generation of our placeholder, once claimed

        def _initiate_upload(self) -> None:
            if self.forced:
                # Closed before the first block filled: the whole object is in the buffer and
                # goes in one exclusive multipart upload (see _upload_chunk).
                self.location = None
                return
            self.claim = str(self._simple(b"")["generation"])
            self.location = sync(self.gcsfs.loop, self._start_resumable)

        async def _start_resumable(self) -> str:
            fs = self.gcsfs
            headers, _ = await fs._call(
                "POST",
                f"{fs._location}/upload/storage/v1/b/{quote(self.bucket)}/o?name={quote(self.key)}",
                uploadType="resumable",
                json={"name": self.key},
                headers={"X-Upload-Content-Type": self.content_type},
                ifGenerationMatch=self.claim,  # replace our placeholder and nothing else
            )
            location = headers["Location"]
            return str(location[0] if isinstance(location, list) else location)

        def _simple(self, data: bytes) -> dict[str, Any]:
            return dict(
                sync(
                    self.gcsfs.loop,
                    core.simple_upload,
                    self.gcsfs,
                    self.bucket,
                    self.key,
                    data,
                    None,
                    self.consistency,
                    self.content_type,
                    mode="create",  # ifGenerationMatch=0
                )
            )

        def _upload_chunk(self, final: bool = False) -> bool:
            if self.location is None:
                self._simple(bytes(self.buffer.getbuffer()))
                return True
            return bool(super()._upload_chunk(final=final))

        def discard(self) -> None:
            fs = self.gcsfs
            if self.location is not None:
                # Cancel the resumable session (the service answers 499, which gcsfs accepts).
                fs.call("DELETE", self.location)
                self.location = None
            if self.claim is not None:
                fs.call("DELETE", "b/{}/o/{}", self.bucket, self.key, ifGenerationMatch=self.claim)
                self.claim = None
            self.closed = True

    return ExclusiveGCSFile


class GCSStore(FsspecStore):
    """Objects under ``gs://bucket/prefix`` (``gcs://`` too).

    ``storage_options`` go to ``gcsfs.GCSFileSystem``: ``project``, ``token`` (a method name
    such as ``"google_default"`` or ``"anon"`` travels when pickled; a credentials dict or
    file does not), ``endpoint_url`` for an emulator, ``block_size`` for upload chunks.
    """

    name = "gcs"
    extra = "gcs"
    atomic_swap = True
    protocols = ("gs", "gcs")
    time_keys = ("updated", "mtime")
    default_storage_options: ClassVar[dict[str, Any]] = {
        # Resumable-upload chunk (a multiple of 256 KiB); a streamed write holds about one.
        "block_size": 8 * MiB,
        "use_listings_cache": False,
    }
    # gcsfs retries each request up to 6 times with backoff up to 32 s already.
    default_retry = RetryPolicy(attempts=2, base_delay=1.0, max_delay=10.0)

    def _open_exclusive(self, path: str) -> Any:
        fs = self._fs
        return _exclusive_file_class()(fs, path, block_size=fs.default_block_size)

    def _read_versioned(self, path: str, max_size: int | None) -> tuple[bytes, str]:
        from gcsfs.retry import HttpError

        fs = self._fs
        bucket, key, _ = fs.split_path(path)
        headers = {} if max_size is None else {"Range": f"bytes=0-{max_size}"}
        for _ in range(3):
            try:
                answer, data = fs.call("GET", fs.url(path), headers=headers)
            except HttpError as exc:
                if max_size is None or exc.code != 416:
                    raise
                # No range of an empty object exists: is it (still) empty?
                metadata = fs.call("GET", "b/{}/o/{}", bucket, key, json_out=True)
                if int(metadata["size"]) == 0:
                    return b"", str(metadata["generation"])
                continue  # replaced meanwhile: read again
            if max_size is not None and len(data) > max_size:
                raise IntegrityError()  # more than max_size bytes follow: not read
            return bytes(data), str(_header(answer, "x-goog-generation"))
        raise StorageError(MESSAGES[Failure.TRANSIENT])

    def _write_conditional(self, path: str, data: bytes, version: str | None) -> None:
        fs = self._fs
        bucket, key, _ = fs.split_path(path)
        metadata = json.dumps({"name": key})
        body = (
            b"--==0==\nContent-Type: application/json; charset=UTF-8\n\n"
            + metadata.encode()
            + b"\n--==0==\nContent-Type: application/octet-stream\n\n"
            + data
            + b"\n--==0==--"
        )
        fs.call(
            "POST",
            f"{fs._location}/upload/storage/v1/b/{quote(bucket)}/o",
            uploadType="multipart",
            headers={"Content-Type": 'multipart/related; boundary="==0=="'},
            data=body,
            json_out=True,
            ifGenerationMatch=version or "0",
        )

    def _sdk_failure(self, exc: BaseException) -> Failure | None:
        from gcsfs.retry import HttpError

        if isinstance(exc, HttpError):
            try:
                return failure_for_status(int(exc.code)) or Failure.PERMANENT
            except (TypeError, ValueError):
                return None
        # gcsfs raises its 403 as a bare OSError whose message starts "Forbidden".
        if type(exc) is OSError and str(exc).startswith("Forbidden"):
            return Failure.DENIED
        module = type(exc).__module__
        if module.startswith("requests"):
            return Failure.TRANSIENT  # gcsfs raises a 502 as requests' ProxyError
        if module.startswith("google.auth"):
            name = type(exc).__name__
            return Failure.TRANSIENT if name == "TransportError" else Failure.DENIED
        return None

    def _container_missing(self) -> bool:
        bucket = self._base.split("/", 1)[0]
        try:
            self._fs.call("GET", "b/{}", bucket)
        except Exception as exc:
            return self._classify(exc) is Failure.MISSING
        return False


def _header(headers: Any, name: str) -> str:
    """A response header by case-insensitive name."""
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    raise KeyError(name)  # pragma: no cover - GCS always sends it with object media
