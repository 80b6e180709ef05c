"""The local-file primitives under ``LocalStore`` (see stores/local.py for how it uses them):
unnamed (O_TMPFILE) files named by ``linkat``, named temporary files, whole reads and writes of
a descriptor, the kernel copy of a byte range, fsync of a directory, swap locks (on the root
directory, or on lock files beside the objects), object versions, and the sweep of litter.

Plain ``os`` calls and no error mapping: the store turns what these raise into its errors.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time

from sealed_results.errors import StorageError
from sealed_results.stores.failures import MESSAGES, Failure

__all__ = [
    "DIR_FLAGS",
    "HIDDEN",
    "LOCK_PREFIX",
    "NO_TMPFILE",
    "O_TMPFILE",
    "READ_FLAGS",
    "TMP_PREFIX",
    "copy_range",
    "create_named",
    "link_unnamed",
    "lock_directory",
    "lock_file",
    "object_version",
    "read_all",
    "sweep_litter",
    "sync_dir",
    "tmp_name",
    "write_all",
    "write_synced",
]

# Linux can create a file with no name (O_TMPFILE) and name it later through /proc; other
# systems, and filesystems that refuse it, get a named temporary file instead.
O_TMPFILE = getattr(os, "O_TMPFILE", 0)
NO_TMPFILE = {errno.EISDIR, errno.EOPNOTSUPP, errno.EINVAL}  # "not here", not "failed"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
# flock on a directory refused: "not here" (fall back to lock files), not "failed".
_NO_DIRECTORY_LOCK = {errno.EBADF, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOLCK}

#: Names in the root that are never objects: temporary files of writes, and lock files.
TMP_PREFIX = ".tmp-"
LOCK_PREFIX = ".lock-"
HIDDEN = (TMP_PREFIX, LOCK_PREFIX)


def tmp_name(name: str) -> str:
    """A fresh temporary file name for a write of object ``name`` (hidden from ``list``)."""
    return f"{TMP_PREFIX}{name}-{os.urandom(6).hex()}"


# -- writes -----------------------------------------------------------------------------------
def create_named(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def link_unnamed(fd: int, path: str) -> None:
    # linkat(AT_SYMLINK_FOLLOW) through /proc names the unnamed file. os.link uses linkat only
    # when given a dir fd; the source path is absolute, so the kernel ignores which fd that is.
    os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_synced(
    path: str, data: bytes, stamp_ns: int, *, rest: tuple[int, int, int] | None = None
) -> None:
    """Create the file ``path`` (exclusively) holding ``data``, then ``rest`` = (fd, offset,
    count): that range of another file, copied after it by the kernel; set its mtime to
    ``stamp_ns`` and fsync it. The caller names it and removes it after a failure."""
    fd = create_named(path)
    try:
        write_all(fd, data)
        if rest is not None:
            copy_range(rest[0], rest[1], rest[2], fd)
        os.utime(fd, ns=(stamp_ns, stamp_ns))
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path: str) -> None:
    """fsync a directory: makes a new name in it (link, rename) survive a crash."""
    fd = os.open(path, DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_range(source: int, offset: int, count: int, sink: int) -> None:
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
        write_all(sink, chunk)
        offset += len(chunk)
        count -= len(chunk)


# -- reads ------------------------------------------------------------------------------------
def read_all(fd: int, size: int) -> bytes:
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


def object_version(status: os.stat_result) -> str:
    """An object's version for compare-and-swap: inode, mtime (ns) and size."""
    return f"{status.st_ino}-{status.st_mtime_ns}-{status.st_size}"


# -- swap locks -------------------------------------------------------------------------------
def lock_directory(root: str) -> int | None:
    """An fd holding an exclusive flock on the directory ``root``, or None where the
    filesystem refuses to lock a directory (NFS)."""
    fd = os.open(root, DIR_FLAGS)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in _NO_DIRECTORY_LOCK:
            raise
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_file(path: str) -> int:
    """An fd holding an exclusive flock on the lock file ``path``, created if missing.

    ``sweep_litter`` may remove a lock file (under its lock): a locker that then wins the lock
    on the removed inode sees that ``path`` no longer names it, and locks the new file."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _still_named(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _still_named(fd: int, path: str) -> bool:
    held = os.fstat(fd)
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


# -- litter -----------------------------------------------------------------------------------
def sweep_litter(root: str, older_than: float) -> int:
    """Remove the temporary files (``.tmp-*``) and lock files (``.lock-*``) in ``root`` that
    are regular files unchanged for more than ``older_than`` seconds; nothing else. The age
    counts from the later of mtime and ctime: a rewrite stamps its temporary file with the old
    object's mtime, but the stamp itself sets the ctime. A lock file goes only while nobody
    holds it (see ``lock_file``). Returns how many files were removed."""
    cutoff = time.time() - older_than
    try:
        with os.scandir(root) as entries:
            litter = [e for e in entries if e.name.startswith(HIDDEN)]
    except FileNotFoundError:
        return 0  # no root yet: nothing written, nothing left
    removed = 0
    for entry in litter:
        try:
            status = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # finished or removed meanwhile
        if not stat.S_ISREG(status.st_mode) or max(status.st_mtime, status.st_ctime) >= cutoff:
            continue
        if entry.name.startswith(TMP_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
        elif _remove_lock_file(entry.path):
            removed += 1
    return removed


def _remove_lock_file(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDWR | _NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a swap holds it now
        if not _still_named(fd, path):
            return False
        os.unlink(path)  # under the lock: a waiting locker will see the name gone
        return True
    finally:
        os.close(fd)
