"""LocalKeyring: key-encryption keys in a JSON file, for development and single machines.

The file (format in docs/format.md) holds numbered 256-bit KEK versions; the newest active one
wraps new data keys and every non-retired one still unwraps. The file is as secret as every
result it opens, so:

- it is opened once, without following a symbolic link, and the descriptor actually opened is
  checked with ``fstat`` (a regular file, owned by this process's user, no access for group or
  others) before a byte is read: nothing can be swapped in between a check and the read;
- every change (``rotate``/``keys add``, ``retire``) is a compare-and-swap: an exclusive
  ``flock`` on ``.<name>.lock`` beside the file is held across read -> modify -> write a
  temporary file (0600 from its first byte) -> fsync -> ``os.replace`` -> fsync of the
  directory, so processes changing the keyring at once lose no version and a crash leaves
  either the old or the new file, never a torn one;
- running processes follow changes made elsewhere: a stanza naming a version this process has
  not loaded re-reads the file when it changed (at most once per ``reload_interval``), and the
  cached keys are trusted for at most ``max_age`` seconds before a ``stat`` of the path tells
  whether to load again, so a version retired elsewhere stops unwrapping within ``max_age``.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import math
import os
import stat
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealed_results.errors import ConfigError, IntegrityError, KeyProviderError
from sealed_results.keyproviders.base import KeyProvider

__all__ = ["DEFAULT_MAX_AGE", "DEFAULT_RELOAD_INTERVAL", "LocalKeyring", "create_keyring"]

KEYRING_FORMAT = "sealed-results-keyring"
KEYRING_VERSION = 1
# Stanza bytes: format byte, KEK version (u32 BE), 12-byte nonce, AES-256-GCM(data key) + tag.
_STANZA_V1 = 1
_STANZA_HEAD = struct.Struct(">BI12s")
_WRAP_AAD = b"sealed-results/local-keyring/v1"
# A keyring entry is about 130 bytes: this is tens of thousands of versions, and bounds what a
# reader allocates for a file it has not parsed yet.
MAX_KEYRING_BYTES = 4 << 20

DEFAULT_RELOAD_INTERVAL = 1.0  # seconds between re-reads triggered by an unknown version
DEFAULT_MAX_AGE = 30.0  # seconds the loaded keys are trusted before the file is looked at again

_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_OPEN_LOCK = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_SYMLINK_ERRNOS = {errno.ELOOP, errno.EMLINK}  # what O_NOFOLLOW gives on a link (Linux, BSD)


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii"))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """What tells one keyring file from the next: every change is a new file (os.replace), and
    size and times change with it even if an inode number is reused."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# -- the file ---------------------------------------------------------------------------------
def _read_keyring(path: Path) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Open once (never through a symlink), check what was opened, then read it: the document
    and the identity of the file it came from. Every failure is a ConfigError naming no path
    and carrying no cause (an OSError's message names the path)."""
    try:
        fd = os.open(path, _OPEN_READ)
    except FileNotFoundError:
        raise ConfigError(
            "keyring file not found; create one with `sealed-results keys init PATH`"
        ) from None
    except OSError as exc:
        if exc.errno in _SYMLINK_ERRNOS:
            raise ConfigError(
                "keyring path is a symbolic link; give the path of the keyring file itself"
            ) from None
        raise ConfigError("keyring file is not readable by this user") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError("keyring path is not a regular file")
        if st.st_uid != os.geteuid():
            raise ConfigError("keyring file is not owned by the user running this process")
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                "keyring file is accessible by group or others; restrict it with chmod 600"
            )
        if st.st_size > MAX_KEYRING_BYTES:
            raise ConfigError("keyring file is too large to be a keyring")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_KEYRING_BYTES:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_KEYRING_BYTES:
            raise ConfigError("keyring file is too large to be a keyring")
    except OSError:
        raise ConfigError("keyring file is not readable by this user") from None
    finally:
        os.close(fd)
    try:
        document = json.loads(b"".join(chunks))
    except ValueError:
        raise ConfigError("keyring file is not a readable JSON keyring") from None
    if not isinstance(document, dict) or document.get("format") != KEYRING_FORMAT:
        raise ConfigError("keyring file is not a sealed-results keyring")
    if document.get("version") != KEYRING_VERSION:
        raise ConfigError("keyring file has a format version this release does not know")
    return document, _identity(st)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a file system that cannot sync a directory
            raise
    finally:
        os.close(fd)


def _write_private(path: Path, document: dict[str, Any], *, exclusive: bool) -> None:
    """Write with mode 0600 from the first byte: a temporary file beside the target, fsynced,
    then renamed over it (or hard-linked when the target must not exist yet, which fails
    instead of overwriting), then the directory fsynced so the new name survives a crash."""
    data = (json.dumps(document, indent=2) + "\n").encode()
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, _OPEN_NEW, 0o600)
    placed = False
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ConfigError(
                    "a keyring file already exists there; refusing to overwrite it"
                ) from None
        else:
            os.replace(tmp, path)
            placed = True
    finally:
        if not placed:
            tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """The keyring's writer lock: ``flock`` on ``.<name>.lock`` beside it (0600, never through
    a symlink). Closing the descriptor releases it, also when the process dies."""
    try:
        fd = os.open(path.with_name(f".{path.name}.lock"), _OPEN_LOCK, 0o600)
    except OSError:
        raise ConfigError(
            "cannot open the keyring's lock file beside it; its directory must be writable"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def create_keyring(path: str | os.PathLike[str]) -> Path:
    """Create a new keyring file with one fresh key (mode 0600). Never overwrites."""
    target = Path(path)
    document = {
        "format": KEYRING_FORMAT,
        "version": KEYRING_VERSION,
        "primary": 1,
        "keys": {
            "1": {"key": _b64e(AESGCM.generate_key(256)), "created": _now(), "state": "active"}
        },
    }
    _write_private(target, document, exclusive=True)
    return target


@dataclass(frozen=True)
class _Keys:
    """One loaded keyring, replaced whole so that a reader never sees half of a reload."""

    primary: int
    keys: Mapping[int, tuple[AESGCM, str]]
    identity: tuple[int, ...]


def _parse(document: dict[str, Any], identity: tuple[int, ...]) -> _Keys:
    keys: dict[int, tuple[AESGCM, str]] = {}
    try:
        for version, entry in document["keys"].items():
            raw = _b64d(entry["key"])
            number = int(version)
            if len(raw) != 32 or entry["state"] not in ("active", "retired") or number < 1:
                raise ValueError
            keys[number] = (AESGCM(raw), entry["state"])
        primary = int(document["primary"])
    except (KeyError, ValueError, TypeError, AttributeError):
        raise ConfigError("keyring file has a malformed key entry") from None
    if keys.get(primary, (None, ""))[1] != "active":
        raise ConfigError("keyring file's primary key is missing or retired")
    return _Keys(primary, keys, identity)


def _check_seconds(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"{name} must be a number of seconds, 0 or more")
    if math.isinf(value):
        return math.inf
    return float(value)


class LocalKeyring(KeyProvider):
    """Key-encryption keys in a local JSON keyring file (``sealed-results keys init PATH``).

    ``reload_interval``: a stanza naming a key version this process has not loaded makes it
    re-read the file, if the file changed, at most once per this many seconds (so garbage
    stanzas cannot make a reader hammer the file). ``max_age``: loaded keys are trusted this
    many seconds, then a ``stat`` of the path decides whether to load again; a version retired
    by another process stops unwrapping here within ``max_age`` (0: look at every call).

    Picklable: only the path and these two settings travel; keys are read again in the
    receiving process.
    """

    kind = "local"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        reload_interval: float = DEFAULT_RELOAD_INTERVAL,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> None:
        self._path = Path(path)
        self._reload_interval = _check_seconds(reload_interval, "reload_interval")
        self._max_age = _check_seconds(max_age, "max_age")
        self._lock = threading.Lock()
        self._state: _Keys | None = None
        self._checked_at = -math.inf  # monotonic: last load, or last stat that found no change
        self._miss_reload_at = -math.inf  # monotonic: last reload caused by an unknown version

    def settings(self) -> dict[str, Any]:
        return {
            "path": self._path,
            "reload_interval": self._reload_interval,
            "max_age": self._max_age,
        }

    # -- loading and freshness -----------------------------------------------------------------
    def _read_document(self) -> tuple[dict[str, Any], tuple[int, ...]]:
        return _read_keyring(self._path)

    def _load_locked(self) -> _Keys:
        state = _parse(*self._read_document())
        self._state, self._checked_at = state, time.monotonic()
        return state

    def _path_identity(self) -> tuple[int, ...] | None:
        try:
            return _identity(os.stat(self._path, follow_symlinks=False))
        except OSError:
            return None  # gone or unreadable: a load says which, as a ConfigError

    def _current(self) -> _Keys:
        """The loaded keys, looked at again when older than ``max_age``. When the file changed
        and cannot be loaded any more (deleted, loosened mode), this raises: a stale copy is
        never used past ``max_age``, so a retirement or a revocation cannot be outlived."""
        state = self._state
        if state is not None and time.monotonic() - self._checked_at < self._max_age:
            return state
        with self._lock:
            state = self._state
            if state is None:
                return self._load_locked()
            if time.monotonic() - self._checked_at < self._max_age:
                return state  # another thread looked meanwhile
            if self._path_identity() == state.identity:
                self._checked_at = time.monotonic()
                return state
            return self._load_locked()

    def _after_miss(self, seen: _Keys) -> _Keys:
        """A well-formed stanza names a version ``seen`` lacks: another process may have added
        it. Re-read the file if it changed since ``seen`` was loaded, at most once per
        ``reload_interval``; an unchanged file costs one ``stat``."""
        with self._lock:
            state = self._state
            if state is not None and state is not seen:
                return state  # another thread reloaded meanwhile
            if self._path_identity() == seen.identity:
                return seen
            now = time.monotonic()
            if now - self._miss_reload_at < self._reload_interval:
                return seen
            self._miss_reload_at = now
            return self._load_locked()

    # -- primitives ----------------------------------------------------------------------------
    def _wrap(self, data_key: bytes, context: bytes, *, nonce: bytes | None = None) -> bytes:
        state = self._current()
        nonce = os.urandom(12) if nonce is None else nonce
        aead, _ = state.keys[state.primary]
        head = _STANZA_HEAD.pack(_STANZA_V1, state.primary, nonce)
        return head + aead.encrypt(nonce, data_key, _WRAP_AAD + head[:5] + context)

    def _unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        state = self._current()
        if len(wrapped) != _STANZA_HEAD.size + 48:
            raise IntegrityError()
        fmt, version, nonce = _STANZA_HEAD.unpack_from(wrapped)
        if fmt != _STANZA_V1:
            raise IntegrityError()
        entry = state.keys.get(version)
        if entry is None:
            entry = self._after_miss(state).keys.get(version)
        if entry is None:
            raise IntegrityError()  # a version this keyring never had looks like tampering
        aead, key_state = entry
        if key_state != "active":
            raise KeyProviderError("the data key is wrapped by a retired keyring key version")
        try:
            return aead.decrypt(
                nonce, wrapped[_STANZA_HEAD.size :], _WRAP_AAD + wrapped[:5] + context
            )
        except InvalidTag:
            raise IntegrityError() from None

    def _rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        primary = self._current().primary
        if len(wrapped) >= 5 and struct.unpack_from(">I", wrapped, 1)[0] == primary:
            self._unwrap(wrapped, context)  # still verify: rewrap must never bless bad bytes
            return wrapped
        return self._wrap(self._unwrap(wrapped, context), context)

    # -- changes: each one a compare-and-swap under the keyring's lock --------------------------
    def _add_version(self) -> int:
        with self._lock, _exclusive(self._path):
            document, _ = self._read_document()
            _parse(document, ())  # never build on a malformed keyring
            new_version = max(int(v) for v in document["keys"]) + 1
            document["keys"][str(new_version)] = {
                "key": _b64e(AESGCM.generate_key(256)),
                "created": _now(),
                "state": "active",
            }
            document["primary"] = new_version
            _write_private(self._path, document, exclusive=False)
            self._load_locked()
            return new_version

    def _rotate(self) -> None:
        self._add_version()

    def add_version(self) -> int:
        """``rotate()`` that returns the version it added (``sealed-results keys add``)."""
        return self._call(self._add_version)

    def _retire(self, version: int) -> None:
        if isinstance(version, bool) or not isinstance(version, int):
            raise ConfigError("a keyring key version is a whole number")
        with self._lock, _exclusive(self._path):
            document, _ = self._read_document()
            _parse(document, ())
            if int(document["primary"]) == version:
                raise ConfigError("the primary keyring key cannot be retired; rotate first")
            if str(version) not in document["keys"]:
                raise ConfigError("no keyring key of that version")
            document["keys"][str(version)]["state"] = "retired"
            _write_private(self._path, document, exclusive=False)
            self._load_locked()

    def _retire_below(self, version: int) -> str:
        keys = self._current().keys
        done = [v for v in sorted(keys) if v < version and keys[v][1] == "active"]
        for old in done:
            self._retire(old)
        return f"local: retired keyring version(s) {done}" if done else "local: nothing to retire"

    def retire(self, version: int) -> None:
        """Refuse unwrapping with an old KEK version (after every blob was rewrapped). Other
        processes stop unwrapping with it within their ``max_age``."""
        self._call(self._retire, version)

    def _describe(self) -> dict[str, Any]:
        state = self._current()
        return {
            "primary_version": state.primary,
            "versions": sorted(state.keys),
            "retired": sorted(v for v, (_, s) in state.keys.items() if s != "active"),
            "max_age": self._max_age,
            "reload_interval": self._reload_interval,
        }
