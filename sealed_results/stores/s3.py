"""S3Store: objects in Amazon S3 (or an S3-compatible store) through s3fs.

Exclusive writes: s3fs's ``open(path, "xb")`` sends ``If-None-Match: *`` on the PutObject of a
small result and on the CompleteMultipartUpload of a large one, so S3 refuses to overwrite an
existing object in both cases, atomically on the server. A failed write aborts its multipart
upload (the parts never become an object).

Compare-and-swap: the version is the ETag of the GetObject response that carried the bytes, and
``swap`` is a PutObject with ``If-Match: <etag>`` (``If-None-Match: *`` to create), which S3
checks atomically (since 2024). An S3-compatible server that ignores ``If-Match`` makes swaps
silently unconditional; ``atomic_swap`` cannot tell (docs/stores.md). A bounded read checks
the response's Content-Length before reading the body, in the same single request.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, BinaryIO, ClassVar, cast

from fsspec.asyn import sync

from sealed_results.errors import IntegrityError, StoreConflict
from sealed_results.retry import RetryPolicy
from sealed_results.stores.base import HeadEdit
from sealed_results.stores.failures import Failure, failure_for_status
from sealed_results.stores.fsspec import FsspecStore

__all__ = ["S3Store"]

MiB = 1 << 20

_NO_CONTAINER = frozenset({"NoSuchBucket"})
_MISSING = frozenset({"NoSuchKey", "NotFound", "404"})
_EXISTS = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_DENIED = frozenset({
    "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AccountProblem",
})  # fmt: skip
_TRANSIENT = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestTimeout",
    "InternalError", "ServiceUnavailable", "503", "500",
})  # fmt: skip


class S3Store(FsspecStore):
    """Objects under ``s3://bucket/prefix`` (``s3a://`` too).

    ``storage_options`` go to ``s3fs.S3FileSystem``: ``endpoint_url`` for S3-compatible stores,
    ``key``/``secret``/``token`` for explicit credentials (never pickled), ``profile``, and
    ``config_kwargs={"retries": {...}}`` for botocore's per-request retries.
    """

    name = "s3"
    extra = "s3"
    atomic_swap = True
    protocols = ("s3", "s3a")
    time_keys = ("LastModified",)
    default_storage_options: ClassVar[dict[str, Any]] = {
        # Multipart part size. A streamed write holds about two parts in memory; S3 allows
        # 10,000 parts, so 8 MiB parts cap one result at ~78 GiB (raise it for more).
        "default_block_size": 8 * MiB,
        # One GET per read: above 1, s3fs first sends a HEAD to plan parallel range reads.
        "max_concurrency": 1,
        # A listing cache could answer exists() from before another process's write or delete.
        "use_listings_cache": False,
    }
    # botocore and s3fs have already retried each request by the time an error reaches us:
    # one more whole-operation attempt, after a pause, for an outage they did not ride out.
    default_retry = RetryPolicy(attempts=2, base_delay=1.0, max_delay=10.0)

    def _read_versioned(self, path: str, max_size: int | None) -> tuple[bytes, str]:
        fs = self._fs
        bucket, key, _ = fs.split_path(path)

        async def read() -> tuple[bytes, str]:
            response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
            body = response["Body"]
            try:
                if max_size is not None and int(response.get("ContentLength", 0)) > max_size:
                    raise IntegrityError()  # too large to be what was written: not read
                data = await body.read()
            finally:
                closed = body.close()
                if inspect.isawaitable(closed):
                    await closed
            return bytes(data), str(response["ETag"])

        data, version = sync(fs.loop, read)
        return bytes(data), str(version)

    def _write_conditional(self, path: str, data: bytes, version: str | None) -> None:
        fs = self._fs
        bucket, key, _ = fs.split_path(path)
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)

    # -- rewriting an object's head (key rotation) ----------------------------------------------
    #: Objects smaller than this are rewritten with one conditional PutObject (held in memory
    #: once); larger ones keep their bytes on the server: the new head and the next
    #: ``head_part`` bytes are uploaded as part 1 of a multipart upload, the rest is copied with
    #: UploadPartCopy (``CopySourceIfMatch``), and CompleteMultipartUpload carries ``If-Match``.
    copy_threshold: ClassVar[int] = 16 * MiB
    head_part: ClassVar[int] = 8 * MiB  # S3's smallest part (but the last) is 5 MiB
    copy_part: ClassVar[int] = 1 << 30  # UploadPartCopy ranges (S3 allows up to 5 GiB)

    def rewrite_head(self, name: str, edit: HeadEdit) -> bool:
        """``Store.rewrite_head``, in bounded memory and, for large objects, server-side.

        Amazon S3 checks ``If-Match`` on PutObject and CompleteMultipartUpload and
        ``x-amz-copy-source-if-match`` on UploadPartCopy, so the rewrite lands only on the
        object that was read. moto (the test server) enforces it on PutObject only."""
        fs = self._fs
        bucket, key, _ = fs.split_path(self._path(name))

        async def get() -> tuple[Any, str, int]:
            response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
            return response["Body"], str(response["ETag"]), int(response["ContentLength"])

        try:
            body, etag, size = sync(fs.loop, get)
        except Exception as exc:
            raise self._ours(exc) from None
        reader = _BodyReader(body, fs.loop)
        try:
            result = edit(cast(BinaryIO, reader))
            if result is None:
                return False
            head, consumed = result
            if not 0 <= consumed <= size or consumed > len(reader.seen):
                raise ValueError("edit consumed more than it read")
            if len(head) + size - consumed < self.copy_threshold:
                reader.recording = False
                data = bytes(head) + bytes(reader.seen[consumed:]) + reader.read()
                if len(data) != len(head) + size - consumed:
                    raise StoreConflict()  # the object changed under the read
                fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfMatch=etag)
            else:
                reader.close()
                self._copy_rewrite(bucket, key, etag, size, bytes(head), consumed)
        except (StoreConflict, ValueError):
            raise
        except Exception as exc:
            raise self._swap_error(exc) from None
        finally:
            reader.close()
        self._proven = True
        return True

    def _copy_rewrite(
        self, bucket: str, key: str, etag: str, size: int, head: bytes, consumed: int
    ) -> None:
        fs = self._fs
        upload = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]
        try:
            first_end = min(size, consumed + self.head_part)
            if size - first_end < 5 * MiB:
                first_end = size
            first = fs.call_s3(
                "get_object",
                Bucket=bucket,
                Key=key,
                Range=f"bytes={consumed}-{first_end - 1}",
                IfMatch=etag,
            )
            part1 = head + _read_body(first["Body"], fs.loop)
            answer = fs.call_s3(
                "upload_part", Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=part1
            )
            parts = [{"PartNumber": 1, "ETag": answer["ETag"]}]
            del part1
            offset, number = first_end, 2
            while offset < size:
                end = min(offset + self.copy_part, size)
                if size - end < 5 * MiB:
                    end = size  # every part but the last must be at least 5 MiB
                answer = fs.call_s3(
                    "upload_part_copy",
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload,
                    PartNumber=number,
                    CopySource={"Bucket": bucket, "Key": key},
                    CopySourceRange=f"bytes={offset}-{end - 1}",
                    CopySourceIfMatch=etag,
                )
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
                offset, number = end, number + 1
            fs.call_s3(
                "complete_multipart_upload",
                Bucket=bucket,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
                IfMatch=etag,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload)
            raise

    def _sdk_failure(self, exc: BaseException) -> Failure | None:
        try:
            from botocore import exceptions as boto
            from botocore.parsers import ResponseParserError
        except ImportError:  # pragma: no cover - s3fs requires botocore
            return None
        if isinstance(exc, boto.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            for codes, failure in (
                (_NO_CONTAINER, Failure.NO_CONTAINER),
                (_MISSING, Failure.MISSING),
                (_EXISTS, Failure.EXISTS),
                (_DENIED, Failure.DENIED),
                (_TRANSIENT, Failure.TRANSIENT),
            ):
                if code in codes:
                    return failure
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return failure_for_status(status)
        if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
            return Failure.DENIED
        if isinstance(exc, boto.HTTPClientError | boto.ConnectionError | ResponseParserError):
            return Failure.TRANSIENT  # dropped connections, timeouts, a throttled garbled reply
        return None

    def _container_missing(self) -> bool:
        bucket = self._base.split("/", 1)[0]
        try:
            self._fs.call_s3("head_bucket", Bucket=bucket)
        except Exception as exc:
            return self._classify(exc) in (Failure.MISSING, Failure.NO_CONTAINER)
        return False


class _BodyReader:
    """A blocking reader over an aiobotocore body (the store's event loop does the reads).
    It keeps what ``edit`` read (a header: small), so the bytes after ``consumed`` are not
    lost; at most ``_SEEN_LIMIT`` bytes."""

    _SEEN_LIMIT = 16 * MiB

    def __init__(self, body: Any, loop: Any) -> None:
        self._body, self._loop = body, loop
        self.seen = bytearray()
        self.recording = True
        self._closed = False

    def read(self, n: int = -1, /) -> bytes:
        data = bytes(sync(self._loop, self._body.read, n if n >= 0 else None) or b"")
        if self.recording:
            self.seen += data
            if len(self.seen) > self._SEEN_LIMIT:
                raise ValueError("edit read too much of the object")
        return data

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                closed = self._body.close()
                if inspect.isawaitable(closed):
                    sync(self._loop, lambda: closed)


def _read_body(body: Any, loop: Any) -> bytes:
    try:
        return bytes(sync(loop, body.read))
    finally:
        with contextlib.suppress(Exception):
            closed = body.close()
            if inspect.isawaitable(closed):
                sync(loop, lambda: closed)
