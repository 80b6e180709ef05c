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

import inspect
from typing import Any, ClassVar

from fsspec.asyn import sync

from sealed_results.errors import IntegrityError
from sealed_results.retry import RetryPolicy
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
