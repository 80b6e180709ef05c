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

Compare-and-swap (``get_versioned``/``swap``). The version of an object is
``"<inode>-<mtime ns>-<size>"`` from the ``fstat`` of the descriptor its bytes were read from: an
object is never written in place (every write names a new file), so the bytes of that inode
never change. ``swap`` holds an exclusive ``flock`` on the root directory itself while it
compares the current version and renames a new file in (swaps are rare: key material), so no
lock file is left among the objects; where the filesystem refuses to lock a directory (NFS maps
``flock`` to POSIX locks, which need a file open for writing) it locks ``.lock-<name>`` beside
the object instead (never listed, never removed). ``replace`` and ``swap`` stamp the new file's
mtime with the fine-grained clock, so an inode number reused by the filesystem still gives a new
version. ``flock`` excludes threads and processes on one machine; on a network filesystem it is
only as good as the filesystem's locking.

Durability. ``durable=True`` fsyncs every new object before it is named, and the directory
after. ``replace`` and ``swap`` always do (they carry key material: the keyset): a crash leaves
the old object or the new one, whole.

Plain ``os`` rather than fsspec: fsspec's file objects add syscalls and layers of Python to
every call, which are most of the cost of storing and reading a small result.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import stat
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar, cast

from sealed_results.errors import ConfigError, IntegrityError, StorageError, StoreConflict
from sealed_results.stores.base import HeadEdit, Store
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
_LOCK_PREFIX = ".lock-"
_HIDDEN = (_TMP_PREFIX, _LOCK_PREFIX)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
# flock on a directory refused: "not here" (fall back to lock files), not "failed".
_NO_DIRECTORY_LOCK = {errno.EBADF, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOLCK}


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
    with mode 0700 on the first write.

    ``durable=True`` makes every write survive a crash of the machine once it has returned
    (fsync of the file and of the directory), at a cost per write (docs/stores.md); ``replace``
    and ``swap`` are durable whatever it says.
    """

    name = "local"
    atomic_swap = True
    _unnamed_files = bool(_O_TMPFILE) and os.path.isdir("/proc/self/fd")
    _lock_files = False  # set where the root directory cannot be flocked

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = False) -> None:
        self._root = _local_path(root)
        self._durable = bool(durable)

    def settings(self) -> dict[str, Any]:
        # The absolute path: a copy in a process with another working directory finds the
        # same objects.
        return {"root": self._root, "durable": self._durable}

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
                if self._durable:
                    os.fsync(fd)
                if tmp is None:
                    _link_unnamed(fd, path)
                else:
                    os.link(tmp, path)
                if self._durable:
                    self._sync_root()
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
                if self._durable:
                    os.fsync(fd)
                _link_unnamed(fd, self._path(name))
            finally:
                os.close(fd)
            if self._durable:
                self._sync_root()
        except Exception as exc:
            raise _ours(exc) from None

    def _sync_root(self) -> None:
        """fsync the root directory: makes a new name (link, rename) survive a crash."""
        fd = os.open(self._root, _DIR_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_new(self, name: str, data: bytes, *, exclusive: bool) -> None:
        """Write ``data`` to a temporary file, fsync it, stamp it with a fresh mtime (a new
        version even if the inode number is reused) and name it ``name``: over the old object
        atomically, or (``exclusive``) only where there is none. Then fsync the directory."""
        tmp = self._tmp_path(name)
        try:
            fd = self._in_root(lambda: _create_named(tmp))
            try:
                _write_all(fd, data)
                now = time.time_ns()
                os.utime(fd, ns=(now, now))
                os.fsync(fd)
            finally:
                os.close(fd)
            if exclusive:
                os.link(tmp, self._path(name))  # never replaces
                os.unlink(tmp)
            else:
                os.replace(tmp, self._path(name))  # atomic: readers see the old or the new
            self._sync_root()
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def replace(self, name: str, data: bytes) -> None:
        try:
            self._write_new(name, data, exclusive=False)
        except Exception as exc:
            raise _ours(exc) from None

    def _lock(self, name: str) -> int:
        """An fd holding an exclusive flock for swaps of ``name``: on the root directory, or
        where directories cannot be locked, on a lock file beside the object."""
        if not self._lock_files:
            fd = self._in_root(lambda: os.open(self._root, _DIR_FLAGS))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                return fd
            except OSError as exc:
                os.close(fd)
                if exc.errno not in _NO_DIRECTORY_LOCK:
                    raise
                self._lock_files = True  # e.g. NFS: lock files from now on
        fd = self._in_root(lambda: _open_lock(self._path(f"{_LOCK_PREFIX}{name}")))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def swap(self, name: str, data: bytes, version: str | None) -> None:
        try:
            lock = self._lock(name)
            try:
                try:
                    status = os.lstat(self._path(name))
                except FileNotFoundError:
                    current = None
                else:
                    if not stat.S_ISREG(status.st_mode):
                        raise StorageError(MESSAGES[Failure.NOT_A_FILE])
                    current = _version(status)
                if current != version:
                    raise StoreConflict()
                # Exclusive for a create: a put() of the same name takes no lock.
                self._write_new(name, data, exclusive=version is None)
            finally:
                os.close(lock)  # releases the lock
        except FileExistsError:
            raise StoreConflict() from None
        except Exception as exc:
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

    def get(self, name: str, *, max_size: int | None = None) -> bytes:
        try:
            fd, size = self._open_object(name)
            try:
                if max_size is not None and size > max_size:
                    raise IntegrityError()  # too large to be what was written: not read
                return _read_all(fd, size)
            finally:
                os.close(fd)
        except Exception as exc:
            raise _ours(exc) from None

    def get_versioned(self, name: str, *, max_size: int | None = None) -> tuple[bytes, str]:
        try:
            fd = os.open(self._path(name), _READ_FLAGS)
            try:
                status = os.fstat(fd)
                if not stat.S_ISREG(status.st_mode):
                    raise StorageError(MESSAGES[Failure.NOT_A_FILE])
                if max_size is not None and status.st_size > max_size:
                    raise IntegrityError()
                return _read_all(fd, status.st_size), _version(status)
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

    def fetch(self, name: str, *, max_size: int | None = None) -> tuple[BinaryIO, int]:
        try:
            fd, size = self._open_object(name)
            if max_size is not None and size > max_size:
                os.close(fd)
                raise IntegrityError()
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
                    # Temporary files of unfinished writes, lock files, and anything that is
                    # not a plain file (directories, links), are not objects.
                    if not entry.name.startswith(_HIDDEN) and entry.is_file(follow_symlinks=False)
                ]
        except FileNotFoundError:
            return iter(())  # not yet created: nothing stored
        except Exception as exc:
            raise _ours(exc) from None
        return iter(names)

    # -- rewriting an object's head (key rotation) ----------------------------------------------
    def rewrite_head(self, name: str, edit: HeadEdit) -> bool:
        """``Store.rewrite_head`` in bounded memory: the new head is written to a temporary
        file, the rest of the object is copied after it by the kernel (``copy_file_range``,
        a reflink where the filesystem shares blocks), the file is fsynced, and it replaces
        the object under the swap lock only if the object is still the one that was read. The
        new file keeps the object's modification time (plus 1 ns)."""
        tmp: str | None = None
        try:
            fd, _size = self._open_object(name)
            try:
                status = os.fstat(fd)
                version = _version(status)
                result = edit(cast(BinaryIO, io.BufferedReader(io.FileIO(fd, "rb", closefd=False))))
                if result is None:
                    return False
                head, consumed = result
                if not 0 <= consumed <= status.st_size:
                    raise ValueError("edit consumed more than the object holds")
                path = tmp = self._tmp_path(name)
                out = self._in_root(lambda: _create_named(path))
                try:
                    _write_all(out, head)
                    _copy_range(fd, consumed, status.st_size - consumed, out)
                    # The object's time, one nanosecond later: age-based cleanup (gc) still
                    # counts from the write, and the version (inode, mtime, size) still
                    # changes with every rewrite, so it never repeats.
                    stamp = status.st_mtime_ns + 1
                    os.utime(out, ns=(stamp, stamp))
                    os.fsync(out)
                finally:
                    os.close(out)
            finally:
                os.close(fd)
            lock = self._lock(name)
            try:
                try:
                    current: str | None = _version(os.lstat(self._path(name)))
                except FileNotFoundError:
                    current = None
                if current != version:
                    raise StoreConflict()
                os.replace(path, self._path(name))
                tmp = None
            finally:
                os.close(lock)
            self._sync_root()
            return True
        except (StoreConflict, ValueError):
            raise
        except Exception as exc:
            raise _ours(exc) from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def _copy_range(source: int, offset: int, count: int, sink: int) -> None:
    """Append ``count`` bytes of ``source`` from ``offset`` to ``sink``: in the kernel where it
    can (``copy_file_range``), else through one 1 MiB buffer."""
    copy = getattr(os, "copy_file_range", None)
    while count > 0 and copy is not None:
        try:
            done = copy(source, sink, min(count, 1 << 30), offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            break
        if done == 0:
            raise StorageError(MESSAGES[Failure.TRANSIENT])  # the file shrank under us
        offset += done
        count -= done
    while count > 0:
        chunk = os.pread(source, min(count, 1 << 20), offset)
        if not chunk:
            raise StorageError(MESSAGES[Failure.TRANSIENT])
        _write_all(sink, chunk)
        offset += len(chunk)
        count -= len(chunk)


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


def _open_lock(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)


def _version(status: os.stat_result) -> str:
    return f"{status.st_ino}-{status.st_mtime_ns}-{status.st_size}"
