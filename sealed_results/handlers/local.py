"""LocalHandler: results on a local (or mounted) filesystem."""

from __future__ import annotations

import contextlib
import errno
import io
import os
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, NoReturn, TypeVar

from sealed_results.handlers.fsspec_core import FsspecHandler

__all__ = ["LocalHandler"]

T = TypeVar("T")

# Linux can create a file with no name (O_TMPFILE) and name it later through /proc; other
# systems, and filesystems that refuse it, get a named temporary file instead.
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_NO_TMPFILE = {errno.EISDIR, errno.EOPNOTSUPP, errno.EINVAL}  # "not here", not "failed"
# Blobs up to this size are read whole (one read call) rather than streamed: a small result
# is then parsed and decrypted from memory, with no buffered file object in between.
_READ_WHOLE = 1 << 16


class LocalHandler(FsspecHandler):
    """Results under a local directory (created with mode 0700 on first write).

    A write goes to a file with no name in the target directory (Linux O_TMPFILE), which a hard
    link then names; elsewhere to a named temporary file there, linked the same way and then
    unlinked. Unlike rename, a link never replaces an existing file, so the write is both
    atomic and exclusive, and an interrupted O_TMPFILE write leaves nothing at all behind.
    (fsspec's own transactions stage files in /tmp, which is not atomic across filesystems.)
    """

    name = "local"
    protocols = ("file", "local")
    _unnamed_files = bool(_O_TMPFILE) and os.path.isdir("/proc/self/fd")

    def _tmp_path(self, name: str) -> str:
        return self._path(f".tmp-{name}-{os.urandom(6).hex()}")

    def _in_root(self, make: Callable[[], T]) -> T:
        """``make()``, creating the root first if it is missing. Checking for the root only
        when a create fails keeps two syscalls (stat, mkdir) off every write."""
        try:
            return make()
        except FileNotFoundError:
            os.makedirs(self._base, mode=0o700, exist_ok=True)
            return make()

    def _open_unnamed(self) -> int | None:
        """A writable fd of a file with no name in the root, or None where that is refused."""
        if self._unnamed_files:
            try:
                return os.open(self._base, os.O_WRONLY | _O_TMPFILE, 0o600)
            except OSError as exc:
                if exc.errno not in _NO_TMPFILE:
                    raise  # e.g. ENOENT: the root is missing, which _in_root handles
                self._unnamed_files = False  # this filesystem refuses: stop asking
        return None

    @contextlib.contextmanager
    def _create(self, name: str) -> Iterator[BinaryIO]:
        path = self._path(name)
        with self._errors():
            fd = self._in_root(self._open_unnamed)
            tmp = None
            if fd is None:
                tmp = self._tmp_path(name)
                fd = self._in_root(lambda: _create_named(tmp))
        try:
            with os.fdopen(fd, "wb") as sink:
                yield sink
                sink.flush()
                with self._errors():
                    if tmp is None:
                        # linkat(AT_SYMLINK_FOLLOW) through /proc names the unnamed file.
                        # os.link uses linkat only when given a dir fd; the source path is
                        # absolute, so the kernel ignores which fd that is.
                        os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd)
                    else:
                        os.link(tmp, path)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _create_object(self, name: str, data: bytes) -> None:
        # The path of every small result: the steps of _create as bare syscalls, with no file
        # object or context manager, which cost more than the write itself for a small blob.
        path = self._path(name)
        try:
            fd = self._in_root(self._open_unnamed)
            if fd is None:
                super()._create_object(name, data)
                return
            try:
                _write_all(fd, data)
                os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd)
            finally:
                os.close(fd)
        except Exception as exc:
            self._raise_ours(exc)

    def _replace(self, name: str, data: bytes) -> None:
        with self._errors():
            tmp = self._tmp_path(name)
            try:
                fd = self._in_root(lambda: _create_named(tmp))
                with os.fdopen(fd, "wb") as sink:
                    sink.write(data)
                os.replace(tmp, self._path(name))
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    # Reads use plain files: fsspec's file object adds syscalls and layers of Python to every
    # read, which is most of the cost of reading a small result, and it has no readinto, which
    # lets a large one stream through one reused buffer (segments._read_segment).
    def _read_bytes(self, name: str) -> bytes:
        path = self._path(name)
        return self._run(lambda: _read_file(path), what="read")

    def _open_file(self, name: str) -> _LocalFile:
        path = self._path(name)

        def opened() -> tuple[BinaryIO, int]:
            file = open(path, "rb")  # noqa: SIM115 - handed to _LocalFile, which closes it
            try:
                return file, os.fstat(file.fileno()).st_size
            except BaseException:
                file.close()
                raise

        file, size = self._run(opened, what="open")
        return _LocalFile(file, size, self._raise_ours)

    def _open_read(self, name: str) -> BinaryIO:
        return self._open_file(name)  # type: ignore[return-value]

    def _read_body(self, name: str) -> tuple[BinaryIO, int]:
        path = self._path(name)

        def opened() -> tuple[BinaryIO, int]:
            file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed here or by _LocalFile
            try:
                size = os.fstat(file.fileno()).st_size
                if size <= _READ_WHOLE:  # a small result: one read, then memory only
                    with file:
                        data = file.readall()
                    return io.BytesIO(data), len(data)
                reader = io.BufferedReader(file)
                return _LocalFile(reader, size, self._raise_ours), size  # type: ignore[return-value]
            except BaseException:
                file.close()
                raise

        return self._run(opened, what="open")

    def _list_names(self) -> Iterator[str]:
        for name in super()._list_names():
            if not name.startswith(".tmp-"):
                yield name


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _create_named(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def _read_file(path: str) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.readall()


class _LocalFile:
    """A local file open for reading whose OS errors leave as ours (StorageError, with no
    path in the message), like the guarded streams of the fsspec core."""

    def __init__(
        self, file: BinaryIO, size: int, raise_ours: Callable[[Exception], NoReturn]
    ) -> None:
        self._file = file
        self.size = size
        self._raise_ours = raise_ours

    def read(self, n: int = -1, /) -> bytes:
        try:
            return self._file.read(n)
        except Exception as exc:
            self._raise_ours(exc)

    def readinto(self, buffer: Any) -> int:
        try:
            return self._file.readinto(buffer)  # type: ignore[attr-defined,no-any-return]
        except Exception as exc:
            self._raise_ours(exc)

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._file.tell()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> _LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
