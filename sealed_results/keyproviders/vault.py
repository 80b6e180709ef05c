"""VaultTransit: data keys wrapped by the Transit engine of HashiCorp Vault or OpenBao.

Identity binding: Transit encrypts ``context || data_key`` (the blob's 16-byte key id, then the
key) and unwrap checks the prefix. Transit's ``rewrap`` takes no ``associated_data`` and
``context`` binds only on derived keys, so a binding inside the plaintext is the one that
survives server-side rewrap with every encrypting key type and any derived/convergent setting.
``context`` is sent too: ordinary keys ignore it, derived ones bind it a second time.

Data keys come from ``os.urandom`` and go to ``encrypt``: Transit's ``datakey`` returns a bare
key under no associated data, so it could not carry the key id inside; the cost is the same one
round trip. Rotation uses Transit ``rotate`` and ``rewrap``, so plaintext data keys never leave
Vault for it. Only symmetric Transit key types are used (``SYMMETRIC_KEY_TYPES``): the key's
type is read on first use and a public-key type is refused, since anyone with the public key
could forge wrapped data keys. Messages never name the address, key, namespace or token, and
errors are raised ``from None``: the hvac or requests exception stays reachable as
``__context__`` but is not part of a formatted traceback. docs/keyproviders.md has the whole
story.
"""

from __future__ import annotations

import base64
import functools
import hmac
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import hvac
import hvac.exceptions as hvac_errors
import requests

from sealed_results.errors import ConfigError, IntegrityError, KeyProviderError
from sealed_results.keyproviders.base import DATA_KEY_SIZE, KeyProvider
from sealed_results.keyproviders.vault_auth import (
    DEFAULT_K8S_JWT_PATH,
    AppRoleAuth,
    KubernetesAuth,
    TokenAuth,
    VaultAuth,
    build_auth,
)
from sealed_results.retry import retry

__all__ = [
    "KEY_TYPE_UNCHECKED",
    "SYMMETRIC_KEY_TYPES",
    "AppRoleAuth",
    "KubernetesAuth",
    "TokenAuth",
    "VaultAuth",
    "VaultTransit",
]

T = TypeVar("T")

_STANZA_V1 = b"\x01"  # stanza bytes: format byte, then Transit's ASCII ciphertext
_CIPHERTEXT = re.compile(rb"vault:v[0-9]{1,10}:[A-Za-z0-9+/]+={0,2}")
_NAME = re.compile(r"[A-Za-z0-9_.@-]+")
_MOUNT = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
# A login is refreshed when this share of its lifetime has passed, before Vault refuses it.
_REFRESH_AT = 0.8

# Worth another try: the network, a sealed or standby node (503), overload (429, 5xx).
_TRANSIENT: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    hvac_errors.VaultDown,
    hvac_errors.InternalServerError,
    hvac_errors.BadGateway,
    hvac_errors.RateLimitExceeded,
    hvac_errors.PreconditionFailed,  # a performance standby not yet caught up
)
_DENIED = (hvac_errors.Forbidden, hvac_errors.Unauthorized)
# Transit key types we wrap with: symmetric AEADs only. With a public-key type (rsa-*, and the
# signing types ecdsa-*, ed25519) anyone holding the public key could encrypt under it and so
# forge wrapped data keys, and the token keyset, which no token pins. An allow-list: a type we
# do not know is refused too. Derived and convergent keys keep their type and are accepted.
SYMMETRIC_KEY_TYPES = frozenset({"aes128-gcm96", "aes256-gcm96", "chacha20-poly1305"})
KEY_TYPE_UNCHECKED = "unknown (grant read on transit/keys/<key> to check)"
_NOT_SYMMETRIC = (
    "the vault key provider's Transit key is not a symmetric encryption key (aes128-gcm96, "
    "aes256-gcm96 or chacha20-poly1305); a public-key type would let anyone holding the "
    "public key forge wrapped data keys"
)
_BAD_URL = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
)
# What a pickle carries: settings as given, so the receiver resolves the environment itself.
_PICKLED: tuple[str, ...] = ("url", "key", "mount", "namespace", "auth", "verify", "timeout")
_PICKLED += ("attempts", "base_delay", "max_delay")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# -- the provider -----------------------------------------------------------------------------
class VaultTransit(KeyProvider):
    """Data keys wrapped by a Transit key of Vault or OpenBao.

    ``url`` defaults to ``VAULT_ADDR`` and ``namespace`` to ``VAULT_NAMESPACE``; TLS settings
    follow ``VAULT_CACERT``/``VAULT_CAPATH``/``VAULT_CLIENT_CERT`` unless ``verify`` is given.
    Explicit arguments win over the environment. Transient failures (network, sealed, 5xx, 429)
    are retried ``attempts`` times in all with jittered exponential backoff.
    """

    kind = "vault"

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        mount: str = "transit",
        namespace: str | None = None,
        auth: str | VaultAuth = "token",
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        role: str | None = None,
        jwt_path: str = DEFAULT_K8S_JWT_PATH,
        auth_mount: str | None = None,
        verify: bool | str | None = None,
        timeout: float = 10.0,
        attempts: int = 4,
        base_delay: float = 0.1,
        max_delay: float = 2.0,
    ) -> None:
        if not isinstance(key, str) or not _NAME.fullmatch(key):
            raise ConfigError("key must name a Transit key (letters, digits, _ . @ -)")
        if not isinstance(mount, str) or not _MOUNT.fullmatch(mount.strip("/")):
            raise ConfigError("mount must be a Vault mount path")
        if auth_mount is not None and not _MOUNT.fullmatch(auth_mount.strip("/")):
            raise ConfigError("auth_mount must be a Vault mount path")
        if timeout <= 0 or attempts < 1 or base_delay < 0 or max_delay < 0:
            raise ConfigError("timeout and attempts must be positive, delays not negative")
        self._auth = build_auth(auth, token, role_id, secret_id, role, jwt_path, auth_mount)
        self._key, self._mount = key, mount.strip("/")
        self._url, self._namespace, self._verify = url, namespace, verify
        self._timeout, self._attempts = float(timeout), int(attempts)
        self._base_delay, self._max_delay = float(base_delay), float(max_delay)
        self._lock = threading.Lock()
        self._client: hvac.Client | None = None
        self._token: str | None = None
        self._refresh_at: float | None = None  # monotonic time to log in again, if known
        # The Transit key's type, read on first use: None until read, KEY_TYPE_UNCHECKED when
        # this login may not read transit/keys/<key> (then describe() says so for doctor).
        self._key_type: str | None = None
        self._check_lock = threading.Lock()

    # Only settings travel: no token, no secret id, no client. The receiving process resolves
    # the address, namespace and credentials from its own environment and logs in again.
    def settings(self) -> dict[str, Any]:
        return {name: getattr(self, f"_{name}") for name in _PICKLED}

    # -- connection and login ------------------------------------------------------------------
    def _is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, _TRANSIENT)

    def _retrying(self, fn: Callable[[], T]) -> T:
        return retry(
            fn,
            is_transient=self._is_transient,
            attempts=self._attempts,
            base_delay=self._base_delay,
            max_delay=self._max_delay,
            what="vault request",
        )

    def _new_client(self) -> hvac.Client:
        url = self._url or os.environ.get("VAULT_ADDR")
        if not url:
            raise ConfigError("no Vault address: set VAULT_ADDR or pass url=")
        namespace = self._namespace or os.environ.get("VAULT_NAMESPACE") or None
        # token="" keeps hvac from reading VAULT_TOKEN itself: the auth object decides.
        return hvac.Client(
            url=url, token="", namespace=namespace, verify=self._verify, timeout=self._timeout
        )

    def _login_locked(self, client: hvac.Client) -> str:
        try:
            token, ttl = self._retrying(lambda: self._auth.login(client))
        except (ConfigError, KeyProviderError):
            raise
        except _TRANSIENT:
            raise KeyProviderError("the vault key provider is unreachable or sealed") from None
        except _BAD_URL:
            raise ConfigError("the Vault address is not a usable http(s) URL") from None
        except Exception:
            raise KeyProviderError("the vault key provider could not log in") from None
        client.token = token
        self._token = token
        self._refresh_at = None if ttl is None else time.monotonic() + ttl * _REFRESH_AT
        return token

    def _session(self) -> tuple[hvac.Client, str]:
        """The client and its current token, logging in first when there is none yet or the
        login is near its end (re-login rather than renewal: one round trip either way, and
        a new login also works past the token's max TTL)."""
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            client = self._client
            token = self._token
            expired = self._refresh_at is not None and time.monotonic() >= self._refresh_at
            if token is None or expired:
                token = self._login_locked(client)
            return client, token

    def _relogin(self, stale: str) -> bool:
        """After a 403: log in again once. False when that cannot help (same token again)."""
        with self._lock:
            if self._client is None or self._token != stale:
                return True  # another thread has already logged in again
            return self._login_locked(self._client) != stale

    def _transit(self, method: str, **params: Any) -> dict[str, Any]:
        """One Transit call on our key, once the key is known not to be a public-key type."""
        self._check_key_type()
        return self._request(method, params)

    def _request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> dict[str, Any]:
        """One Transit call: logged in, retried, re-logged in once after a 403. Errors of the
        ``passthrough`` types reach the caller as they are (no re-login for those)."""
        relogged = False
        while True:
            client, token = self._session()
            call = getattr(client.secrets.transit, method)
            try:
                response: dict[str, Any] = self._retrying(
                    functools.partial(call, name=self._key, mount_point=self._mount, **params)
                )
                return response
            except passthrough:
                raise
            except _DENIED:
                # An expired or revoked login token answers 403: log in again, once.
                if relogged or not self._relogin(token):
                    raise KeyProviderError("the vault key provider was denied permission") from None
                relogged = True
            except _TRANSIENT:
                raise KeyProviderError(
                    "the vault key provider is unreachable, sealed or overloaded"
                ) from None
            except hvac_errors.InvalidPath:
                raise KeyProviderError("the vault key provider's mount was not found") from None
            except _BAD_URL:  # a ValueError naming the address: never let it through
                raise ConfigError("the Vault address is not a usable http(s) URL") from None
            except requests.exceptions.RequestException:
                raise KeyProviderError("the vault key provider's request failed") from None

    # -- the key's type ------------------------------------------------------------------------
    def _read_key(self) -> dict[str, Any] | None:
        """``transit/keys/<key>``: None when the key (or the mount) does not exist yet; a
        denial is the caller's (the policy may lack ``read`` there)."""
        try:
            response = self._request(
                "read_key", {}, passthrough=(*_DENIED, hvac_errors.InvalidPath)
            )
        except hvac_errors.InvalidPath:
            return None
        data: dict[str, Any] = response["data"]
        return data

    def _note_key_type(self, data: dict[str, Any]) -> str:
        key_type = str(data.get("type"))
        self._key_type = key_type
        if key_type not in SYMMETRIC_KEY_TYPES:
            raise KeyProviderError(_NOT_SYMMETRIC)
        return key_type

    def _check_key_type(self) -> None:
        """Refuse a Transit key that is not symmetric, read once per process on first use. A
        login that may not read the key is not refused: that is remembered and shown by
        describe(). A key that does not exist yet is checked again at the next call (the call
        itself fails, or Transit's encrypt creates a symmetric key)."""
        key_type = self._key_type
        if key_type is None:
            with self._check_lock:
                if self._key_type is None:
                    try:
                        data = self._read_key()
                    except _DENIED:
                        self._key_type = KEY_TYPE_UNCHECKED
                    else:
                        if data is not None:
                            self._note_key_type(data)
                key_type = self._key_type
        if key_type not in (None, KEY_TYPE_UNCHECKED) and key_type not in SYMMETRIC_KEY_TYPES:
            raise KeyProviderError(_NOT_SYMMETRIC)

    # -- primitives ----------------------------------------------------------------------------
    def _wrap(self, data_key: bytes, context: bytes) -> bytes:
        try:
            response = self._transit(
                "encrypt_data", plaintext=_b64(context + data_key), context=_b64(context)
            )
        except hvac_errors.InvalidRequest:
            raise KeyProviderError(
                "the vault key provider refused to encrypt (is the Transit key an encryption key?)"
            ) from None
        return _STANZA_V1 + str(response["data"]["ciphertext"]).encode("ascii")

    def _unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            response = self._transit(
                "decrypt_data", ciphertext=_parse_stanza(wrapped), context=_b64(context)
            )
        except hvac_errors.InvalidRequest as exc:
            raise _refusal(exc) from None
        try:
            plaintext = base64.b64decode(response["data"]["plaintext"], validate=True)
        except (ValueError, TypeError):
            raise IntegrityError() from None
        n = len(context)
        # The key id inside the plaintext is what binds this stanza to its blob.
        if len(plaintext) != n + DATA_KEY_SIZE or not hmac.compare_digest(plaintext[:n], context):
            raise IntegrityError()
        return plaintext[n:]

    def _rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        # Server-side: the plaintext (key id and data key) stays inside Vault, so the binding
        # survives unchanged and a stanza moved to another blob still fails to unwrap there.
        try:
            response = self._transit(
                "rewrap_data", ciphertext=_parse_stanza(wrapped), context=_b64(context)
            )
        except hvac_errors.InvalidRequest as exc:
            raise _refusal(exc) from None
        return _STANZA_V1 + str(response["data"]["ciphertext"]).encode("ascii")

    def _rotate(self) -> None:
        try:
            self._transit("rotate_key")
        except hvac_errors.InvalidRequest:
            raise KeyProviderError("the vault key provider could not rotate its key") from None

    def _retire_below(self, version: int) -> str:
        try:
            self._transit("update_key_configuration", min_decryption_version=version)
        except hvac_errors.InvalidRequest:
            raise KeyProviderError(
                "the vault key provider refused to raise min_decryption_version (the policy "
                "needs update on transit/keys/<key>/config)"
            ) from None
        return f"vault: min_decryption_version set to {version}"

    def _describe(self) -> dict[str, Any]:
        """For doctor: the key's type (a public-key type raises, as every call would), or that
        it could not be checked, or that the key does not exist yet; its version settings."""
        info: dict[str, Any] = {"auth": self._auth.name}
        try:
            data = self._read_key()
        except _DENIED:
            self._key_type = self._key_type or KEY_TYPE_UNCHECKED
            info["key_type"] = KEY_TYPE_UNCHECKED
            return info
        if data is None:
            info["key_type"] = "missing (no such Transit key or mount yet)"
            return info
        info["key_type"] = self._note_key_type(data)
        for field in ("latest_version", "min_decryption_version", "derived"):
            info[field] = data.get(field)
        info["convergent"] = data.get("convergent_encryption")
        return info


def _parse_stanza(wrapped: bytes) -> str:
    """Transit ciphertext from stanza bytes; anything else is IntegrityError without a call."""
    if wrapped[:1] != _STANZA_V1 or not _CIPHERTEXT.fullmatch(wrapped, 1):
        raise IntegrityError()
    return wrapped[1:].decode("ascii")


def _refusal(exc: hvac_errors.InvalidRequest) -> Exception:
    """A 400 from decrypt or rewrap. Our request is well formed except for the ciphertext from
    storage, so a 400 means bad bytes (IntegrityError) unless Vault names a policy refusal or
    a key problem, which are the provider's (KeyProviderError)."""
    text = " ".join(str(e) for e in (exc.errors or [exc])).lower()
    if "disallowed by policy" in text or "too old" in text:
        return KeyProviderError(
            "the vault key provider refused by policy: the data key was wrapped by a Transit "
            "key version below min_decryption_version"
        )
    if "key not found" in text or "not supported" in text or "missing 'context'" in text:
        return KeyProviderError("the vault key provider's Transit key is missing or cannot decrypt")
    return IntegrityError()
