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
import io
import os
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO, TypeVar, cast

from sealed_results.errors import ConfigError, IntegrityError, StorageError, StoreConflict
from sealed_results.stores._localfs import (
    HIDDEN,
    LOCK_PREFIX,
    NO_TMPFILE,
    O_TMPFILE,
    READ_FLAGS,
    create_named,
    link_unnamed,
    lock_directory,
    lock_file,
    object_version,
    read_all,
    sweep_litter,
    sync_dir,
    tmp_name,
    write_all,
    write_synced,
)
from sealed_results.stores.base import HeadEdit, ObjectInfo, Store
from sealed_results.stores.failures import MESSAGES, Failure, as_ours
from sealed_results.stores.streams import GuardedStream

__all__ = ["LocalStore"]

T = TypeVar("T")

# Objects up to this size are read whole (one read call) by fetch() rather than streamed: a
# small result is then parsed and decrypted from memory, with no buffered file object between.
_READ_WHOLE = 1 << 16


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
    _unnamed_files = bool(O_TMPFILE) and os.path.isdir("/proc/self/fd")
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
                return os.open(self._root, os.O_WRONLY | O_TMPFILE, 0o600)
            except OSError as exc:
                if exc.errno not in NO_TMPFILE:
                    raise  # e.g. ENOENT: the root is missing, which _in_root handles
                self._unnamed_files = False  # this filesystem refuses: stop asking
        return None

    def _tmp_path(self, name: str) -> str:
        return self._path(tmp_name(name))

    @contextlib.contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:
        path = self._path(name)
        tmp = None
        try:
            fd = self._in_root(self._open_unnamed)
            if fd is None:
                tmp = self._tmp_path(name)
                fd = self._in_root(lambda: create_named(tmp))
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
                    link_unnamed(fd, path)
                else:
                    os.link(tmp, path)
                if self._durable:
                    sync_dir(self._root)
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
                write_all(fd, data)
                if self._durable:
                    os.fsync(fd)
                link_unnamed(fd, self._path(name))
            finally:
                os.close(fd)
            if self._durable:
                sync_dir(self._root)
        except Exception as exc:
            raise _ours(exc) from None

    def _write_new(self, name: str, data: bytes, *, exclusive: bool) -> None:
        """Write ``data`` to a temporary file, fsync it, stamp it with a fresh mtime (a new
        version even if the inode number is reused) and name it ``name``: over the old object
        atomically, or (``exclusive``) only where there is none. Then fsync the directory."""
        tmp = self._tmp_path(name)
        try:
            stamp = time.time_ns()
            self._in_root(lambda: write_synced(tmp, data, stamp))
            if exclusive:
                os.link(tmp, self._path(name))  # never replaces
                os.unlink(tmp)
            else:
                os.replace(tmp, self._path(name))  # atomic: readers see the old or the new
            sync_dir(self._root)
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
            fd = self._in_root(lambda: lock_directory(self._root))
            if fd is not None:
                return fd
            self._lock_files = True  # e.g. NFS: lock files from now on
        return self._in_root(lambda: lock_file(self._path(f"{LOCK_PREFIX}{name}")))

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
                    current = object_version(status)
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
        fd = os.open(self._path(name), READ_FLAGS)
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
                return read_all(fd, size)
            finally:
                os.close(fd)
        except Exception as exc:
            raise _ours(exc) from None

    def get_versioned(self, name: str, *, max_size: int | None = None) -> tuple[bytes, str]:
        try:
            fd = os.open(self._path(name), READ_FLAGS)
            try:
                status = os.fstat(fd)
                if not stat.S_ISREG(status.st_mode):
                    raise StorageError(MESSAGES[Failure.NOT_A_FILE])
                if max_size is not None and status.st_size > max_size:
                    raise IntegrityError()
                return read_all(fd, status.st_size), object_version(status)
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
                data = read_all(fd, size)
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
                    if not entry.name.startswith(HIDDEN) and entry.is_file(follow_symlinks=False)
                ]
        except FileNotFoundError:
            return iter(())  # not yet created: nothing stored
        except Exception as exc:
            raise _ours(exc) from None
        return iter(names)

    # -- metadata and upkeep -------------------------------------------------------------------
    def info(self, name: str) -> ObjectInfo:
        """Size and mtime from one ``lstat``; only a regular file is an object (as for reads)."""
        try:
            status = os.lstat(self._path(name))
        except Exception as exc:
            raise _ours(exc) from None
        if not stat.S_ISREG(status.st_mode):
            raise StorageError(MESSAGES[Failure.NOT_A_FILE])
        return ObjectInfo(status.st_size, datetime.fromtimestamp(status.st_mtime, UTC))

    def sweep(self, older_than: float) -> int:
        """Remove temporary files (``.tmp-*``: a process killed inside ``replace``, ``swap``,
        ``rewrite_head``, or a ``create`` without O_TMPFILE, leaves its file) and lock files
        (``.lock-*``, not held) unchanged for more than ``older_than`` seconds. Never an
        object: their names never start with those prefixes. A write stalled for longer than
        ``older_than`` fails (its file is gone), so keep the bound above any write's pauses."""
        if older_than < 0:
            raise ValueError("older_than must not be negative")
        try:
            return sweep_litter(self._root, older_than)
        except Exception as exc:
            raise _ours(exc) from None

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
                version = object_version(status)
                result = edit(cast(BinaryIO, io.BufferedReader(io.FileIO(fd, "rb", closefd=False))))
                if result is None:
                    return False
                head, consumed = result
                if not 0 <= consumed <= status.st_size:
                    raise ValueError("edit consumed more than the object holds")
                path = tmp = self._tmp_path(name)
                # The object's time, one nanosecond later: age-based cleanup (gc) still counts
                # from the write, and the version (inode, mtime, size) still changes with every
                # rewrite, so it never repeats.
                rest = (fd, consumed, status.st_size - consumed)
                self._in_root(lambda: write_synced(path, head, status.st_mtime_ns + 1, rest=rest))
            finally:
                os.close(fd)
            lock = self._lock(name)
            try:
                try:
                    current: str | None = object_version(os.lstat(self._path(name)))
                except FileNotFoundError:
                    current = None
                if current != version:
                    raise StoreConflict()
                os.replace(path, self._path(name))
                tmp = None
            finally:
                os.close(lock)
            sync_dir(self._root)
            return True
        except (StoreConflict, ValueError):
            raise
        except Exception as exc:
            raise _ours(exc) from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def _reader(fd: int) -> BinaryIO:
    """A buffered, guarded stream that owns ``fd``; it has ``readinto``, which lets a large
    object stream through one reused buffer (segments._read_segment)."""
    try:
        raw = io.FileIO(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return cast(BinaryIO, GuardedStream(io.BufferedReader(raw), _ours))
