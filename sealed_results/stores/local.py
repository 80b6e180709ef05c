"""LocalStore: objects as files in one local (or mounted) directory, through plain ``os`` calls.

Writes. A write goes to a file with no name in the root (Linux O_TMPFILE), which a hard link
then names; elsewhere to a named temporary file there, linked the same way and then unlinked.
Unlike rename, a link never replaces an existing file, so the write is both atomic and
exclusive, and an interrupted O_TMPFILE write leaves nothing at all behind. (fsspec's own
transactions stage files in /tmp, which is not atomic across filesystems.)

Reads open the name with O_NOFOLLOW and O_NONBLOCK and check, with the fstat that also gives
the size, that it is a regular file: a symlink planted under the root (to /dev/zero, to a file
elsewhere) or a FIFO fails at once with ``StorageError``, instead of reading what the link
points at, eating memory or hanging. O_NONBLOCK changes nothing for a regular file.

Plain ``os`` rather than fsspec: fsspec's file objects add syscalls and layers of Python to
every call, which are most of the cost of storing and reading a small result.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar, cast

from sealed_results.errors import ConfigError, StorageError
from sealed_results.stores.base import Store
from sealed_results.stores.failures import MESSAGES, Failure, as_ours
from sealed_results.stores.streams import GuardedStream

__all__ = ["LocalStore"]

T = TypeVar("T")

# Linux can create a file with no name (O_TMPFILE) and name it later through /proc; other
# systems, and filesystems that refuse it, get a named temporary file instead.
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_NO_TMPFILE = {errno.EISDIR, errno.EOPNOTSUPP, errno.EINVAL}  # "not here", not "failed"
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
# Objects up to this size are read whole (one read call) by fetch() rather than streamed: a
# small result is then parsed and decrypted from memory, with no buffered file object between.
_READ_WHOLE = 1 << 16
_TMP_PREFIX = ".tmp-"


def _local_failure(exc: BaseException) -> Failure | None:
    # O_NOFOLLOW on a symlink fails with ELOOP: the name is a link, not an object of ours.
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return Failure.NOT_A_FILE
    return None


def _ours(exc: Exception) -> Exception:
    return as_ours(exc, _local_failure)


def _local_path(root: str | os.PathLike[str]) -> str:
    path = os.fspath(root)
    for prefix in ("file://", "local://"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
            break
    else:
        if "://" in path:
            raise ConfigError("LocalStore needs a local path or a file:// URL as its root")
    return os.path.abspath(os.path.expanduser(path))


class LocalStore(Store):
    """Objects under the directory ``root`` (a path or a ``file://`` URL), which is created
    with mode 0700 on the first write."""

    name = "local"
    _unnamed_files = bool(_O_TMPFILE) and os.path.isdir("/proc/self/fd")

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = _local_path(root)

    def settings(self) -> dict[str, Any]:
        # The absolute path: a copy in a process with another working directory finds the
        # same objects.
        return {"root": self._root}

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}"

    # -- writes ----------------------------------------------------------------------------------
    def _in_root(self, make: Callable[[], T]) -> T:
        """``make()``, creating the root first if it is missing. Checking for the root only
        when a create fails keeps two syscalls (stat, mkdir) off every write."""
        try:
            return make()
        except FileNotFoundError:
            os.makedirs(self._root, mode=0o700, exist_ok=True)
            return make()

    def _open_unnamed(self) -> int | None:
        """A writable fd of a file with no name in the root, or None where that is refused."""
        if self._unnamed_files:
            try:
                return os.open(self._root, os.O_WRONLY | _O_TMPFILE, 0o600)
            except OSError as exc:
                if exc.errno not in _NO_TMPFILE:
                    raise  # e.g. ENOENT: the root is missing, which _in_root handles
                self._unnamed_files = False  # this filesystem refuses: stop asking
        return None

    def _tmp_path(self, name: str) -> str:
        return self._path(f"{_TMP_PREFIX}{name}-{os.urandom(6).hex()}")

    @contextlib.contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:
        path = self._path(name)
        tmp = None
        try:
            fd = self._in_root(self._open_unnamed)
            if fd is None:
                tmp = self._tmp_path(name)
                fd = self._in_root(lambda: _create_named(tmp))
        except Exception as exc:
            raise _ours(exc) from None
        sink = io.BufferedWriter(io.FileIO(fd, "wb"))
        try:
            yield cast(BinaryIO, GuardedStream(sink, _ours, writer=True))
            try:
                sink.flush()
                if tmp is None:
                    _link_unnamed(fd, path)
                else:
                    os.link(tmp, path)
            except Exception as exc:
                raise _ours(exc) from None
        finally:
            # After a failure, flushing what is left of an abandoned write may fail too; that
            # must not replace the error that stopped the write.
            with contextlib.suppress(OSError):
                sink.close()
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def put(self, name: str, data: bytes) -> None:
        # The path of every small result: the steps of create() as bare syscalls, with no file
        # object or context manager, which cost more than the write itself for a small blob.
        try:
            fd = self._in_root(self._open_unnamed)
            if fd is None:
                super().put(name, data)
                return
            try:
                _write_all(fd, data)
                _link_unnamed(fd, self._path(name))
            finally:
                os.close(fd)
        except Exception as exc:
            raise _ours(exc) from None

    def replace(self, name: str, data: bytes) -> None:
        tmp = self._tmp_path(name)
        try:
            fd = self._in_root(lambda: _create_named(tmp))
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, self._path(name))  # atomic: readers see the old file or the new
        except Exception as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _ours(exc) from None

    def delete(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except Exception as exc:
            raise _ours(exc) from None

    # -- reads -----------------------------------------------------------------------------------
    def _open_object(self, name: str) -> tuple[int, int]:
        """A read-only fd of the object and its size; only a regular file counts."""
        fd = os.open(self._path(name), _READ_FLAGS)
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise StorageError(MESSAGES[Failure.NOT_A_FILE])
        except BaseException:
            os.close(fd)
            raise
        return fd, status.st_size

    def get(self, name: str) -> bytes:
        try:
            fd, size = self._open_object(name)
            try:
                return _read_all(fd, size)
            finally:
                os.close(fd)
        except Exception as exc:
            raise _ours(exc) from None

    def open(self, name: str) -> BinaryIO:
        try:
            fd, _size = self._open_object(name)
            return _reader(fd)
        except Exception as exc:
            raise _ours(exc) from None

    def fetch(self, name: str) -> tuple[BinaryIO, int]:
        try:
            fd, size = self._open_object(name)
            if size > _READ_WHOLE:
                return _reader(fd), size
            try:  # a small result: one read, then memory only
                data = _read_all(fd, size)
            finally:
                os.close(fd)
        except Exception as exc:
            raise _ours(exc) from None
        return io.BytesIO(data), len(data)

    def exists(self, name: str) -> bool:
        try:
            status = os.lstat(self._path(name))
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise _ours(exc) from None
        if not stat.S_ISREG(status.st_mode):
            raise StorageError(MESSAGES[Failure.NOT_A_FILE])
        return True

    def list(self) -> Iterator[str]:
        try:
            with os.scandir(self._root) as entries:
                names = [
                    entry.name
                    for entry in entries
                    # Temporary files of unfinished writes, and anything that is not a plain
                    # file (directories, links), are not objects.
                    if not entry.name.startswith(_TMP_PREFIX)
                    and entry.is_file(follow_symlinks=False)
                ]
        except FileNotFoundError:
            return iter(())  # not yet created: nothing stored
        except Exception as exc:
            raise _ours(exc) from None
        return iter(names)


def _reader(fd: int) -> BinaryIO:
    """A buffered, guarded stream that owns ``fd``; it has ``readinto``, which lets a large
    object stream through one reused buffer (segments._read_segment)."""
    try:
        raw = io.FileIO(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return cast(BinaryIO, GuardedStream(io.BufferedReader(raw), _ours))


def _read_all(fd: int, size: int) -> bytes:
    # One read for the whole object (the size is known): a regular file gives it all at once
    # up to ~2 GiB per call; a file that shrank meanwhile ends early at end of file.
    data = os.read(fd, size) if size else b""
    if len(data) == size:
        return data
    parts = [data]
    got = len(data)
    while got < size and (chunk := os.read(fd, size - got)):
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _create_named(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def _link_unnamed(fd: int, path: str) -> None:
    # linkat(AT_SYMLINK_FOLLOW) through /proc names the unnamed file. os.link uses linkat only
    # when given a dir fd; the source path is absolute, so the kernel ignores which fd that is.
    os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd)
