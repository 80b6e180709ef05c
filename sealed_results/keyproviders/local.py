"""LocalKeyring: key-encryption keys in a JSON file, for development and single machines.

The file (format in docs/format.md) holds numbered 256-bit KEK versions; the newest active one
wraps new data keys and every non-retired one still unwraps. It is created with mode 0600 and a
keyring readable by group or others is refused: the file is as secret as every result it opens.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import struct
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealed_results.errors import ConfigError, IntegrityError, KeyProviderError
from sealed_results.keyproviders.base import KeyProvider

__all__ = ["LocalKeyring", "create_keyring"]

KEYRING_FORMAT = "sealed-results-keyring"
KEYRING_VERSION = 1
# Stanza bytes: format byte, KEK version (u32 BE), 12-byte nonce, AES-256-GCM(data key) + tag.
_STANZA_V1 = 1
_STANZA_HEAD = struct.Struct(">BI12s")
_WRAP_AAD = b"sealed-results/local-keyring/v1"


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii"))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_private(path: Path, document: dict[str, Any], *, exclusive: bool) -> None:
    """Write with mode 0600 from the first byte: a temporary file beside it, then a rename
    (or a hard link when the target must not exist yet, which fails instead of overwriting)."""
    data = (json.dumps(document, indent=2) + "\n").encode()
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ConfigError(
                    "a keyring file already exists there; refusing to overwrite it"
                ) from None
        else:
            os.replace(tmp, path)
            tmp = None  # type: ignore[assignment]
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


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


class LocalKeyring(KeyProvider):
    """Key-encryption keys in a local JSON keyring file (``sealed-results keys init PATH``).

    Picklable: only the path travels; keys are read again in the receiving process.
    """

    kind = "local"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._primary = 0
        self._keys: dict[int, tuple[AESGCM, str]] = {}
        self._loaded = False

    def settings(self) -> dict[str, Any]:
        return {"path": self._path}

    # -- file ----------------------------------------------------------------------------------
    def _read_document(self) -> dict[str, Any]:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            raise ConfigError(
                "keyring file not found; create one with `sealed-results keys init PATH`"
            ) from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                "keyring file is accessible by group or others; restrict it with chmod 600"
            )
        try:
            document = json.loads(self._path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError("keyring file is not a readable JSON keyring") from exc
        if not isinstance(document, dict) or document.get("format") != KEYRING_FORMAT:
            raise ConfigError("keyring file is not a sealed-results keyring")
        if document.get("version") != KEYRING_VERSION:
            raise ConfigError("keyring file has a format version this release does not know")
        return document

    def _load(self) -> None:
        document = self._read_document()
        keys: dict[int, tuple[AESGCM, str]] = {}
        try:
            for version, entry in document["keys"].items():
                raw = _b64d(entry["key"])
                if len(raw) != 32 or entry["state"] not in ("active", "retired"):
                    raise ValueError
                keys[int(version)] = (AESGCM(raw), entry["state"])
            primary = int(document["primary"])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError("keyring file has a malformed key entry") from exc
        if keys.get(primary, (None, ""))[1] != "active":
            raise ConfigError("keyring file's primary key is missing or retired")
        self._keys, self._primary, self._loaded = keys, primary, True

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._load()

    # -- primitives ----------------------------------------------------------------------------
    def _wrap(self, data_key: bytes, context: bytes, *, nonce: bytes | None = None) -> bytes:
        self._ensure_loaded()
        nonce = os.urandom(12) if nonce is None else nonce
        aead, _ = self._keys[self._primary]
        head = _STANZA_HEAD.pack(_STANZA_V1, self._primary, nonce)
        return head + aead.encrypt(nonce, data_key, _WRAP_AAD + head[:5] + context)

    def _unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        self._ensure_loaded()
        if len(wrapped) != _STANZA_HEAD.size + 48:
            raise IntegrityError()
        fmt, version, nonce = _STANZA_HEAD.unpack_from(wrapped)
        entry = self._keys.get(version)
        if fmt != _STANZA_V1 or entry is None:
            raise IntegrityError()  # a version this keyring never had looks like tampering
        aead, state = entry
        if state != "active":
            raise KeyProviderError("the data key is wrapped by a retired keyring key version")
        try:
            return aead.decrypt(
                nonce, wrapped[_STANZA_HEAD.size :], _WRAP_AAD + wrapped[:5] + context
            )
        except InvalidTag:
            raise IntegrityError() from None

    def _rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        self._ensure_loaded()
        if len(wrapped) >= 5 and struct.unpack_from(">I", wrapped, 1)[0] == self._primary:
            self._unwrap(wrapped, context)  # still verify: rewrap must never bless bad bytes
            return wrapped
        return self._wrap(self._unwrap(wrapped, context), context)

    def _rotate(self) -> None:
        with self._lock:
            document = self._read_document()
            new_version = max(int(v) for v in document["keys"]) + 1
            document["keys"][str(new_version)] = {
                "key": _b64e(AESGCM.generate_key(256)),
                "created": _now(),
                "state": "active",
            }
            document["primary"] = new_version
            _write_private(self._path, document, exclusive=False)
            self._load()

    def retire(self, version: int) -> None:
        """Refuse unwrapping with an old KEK version (after every blob was rewrapped)."""
        with self._lock:
            document = self._read_document()
            if int(document["primary"]) == version:
                raise ConfigError("the primary keyring key cannot be retired; rotate first")
            if str(version) not in document["keys"]:
                raise ConfigError("no keyring key of that version")
            document["keys"][str(version)]["state"] = "retired"
            _write_private(self._path, document, exclusive=False)
            self._load()

    def _describe(self) -> dict[str, Any]:
        self._ensure_loaded()
        return {
            "primary_version": self._primary,
            "versions": sorted(self._keys),
            "retired": sorted(v for v, (_, s) in self._keys.items() if s != "active"),
        }
