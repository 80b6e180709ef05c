"""AwsKms: data keys from AWS KMS (GenerateDataKey), opened with Decrypt, rotated with ReEncrypt.

Identity binding: every call carries the EncryptionContext ``{"sealed-results:key-id": <hex>}``,
the blob's random 16-byte key id in hex. KMS authenticates it with the ciphertext and ReEncrypt
carries it over, so a stanza moved to another blob fails to open there. The value is opaque on
purpose: KMS writes encryption contexts in clear into CloudTrail, so it must never be a path.

Data keys come from GenerateDataKey (KMS's own random source, one round trip, context bound);
a MultiKeyProvider's second provider uses Encrypt for a key made elsewhere. Decrypt and ReEncrypt
name the configured key (``KeyId``/``SourceKeyId``), so a stanza under some other KMS key that
this principal may happen to use is refused instead of accepted as a forgery.

Credentials come from the standard AWS chain (environment, profile, SSO, instance or container
role) and never travel in pickles: only the settings do. Transient failures are retried by
botocore's "standard" retry mode (jittered exponential backoff and a retry quota), bounded by
``max_attempts``: the SDK already knows KMS's throttling and transient error codes.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
import botocore.exceptions as boto_errors
from botocore.config import Config

from sealed_results.errors import ConfigError, IntegrityError, KeyProviderError
from sealed_results.keyproviders.base import KeyProvider

__all__ = ["AwsKms"]

CONTEXT_KEY = "sealed-results:key-id"
_STANZA_V1 = b"\x01"  # stanza bytes: format byte, then the KMS CiphertextBlob

# KMS says "this ciphertext is not valid for this key and context": bytes from storage are bad.
# (ValidationException: only the stored ciphertext can break a length or format constraint.)
_BAD_CIPHERTEXT = {"InvalidCiphertextException", "IncorrectKeyException", "ValidationException"}
# A refusal by key state, which is policy: disabled, pending deletion or import, unavailable.
_KEY_STATE = {"DisabledException", "KMSInvalidStateException", "KeyUnavailableException"}


_DENIED = {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"}


def _context(context: bytes) -> dict[str, str]:
    return {CONTEXT_KEY: context.hex()}


class AwsKms(KeyProvider):
    """Data keys protected by one AWS KMS symmetric key (key id, key ARN, alias name or alias ARN).

    Prefer KMS automatic or on-demand rotation (same key id, new backing material) to switching
    an alias to another key: Decrypt names the configured key, so an alias moved to a new key
    no longer opens stanzas of the old one (rewrap them first, or keep the old key in a
    MultiKeyProvider while they are rewrapped).
    """

    kind = "aws-kms"

    def __init__(
        self,
        key_id: str,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        profile_name: str | None = None,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
    ) -> None:
        if not isinstance(key_id, str) or not key_id.strip():
            raise ConfigError("key_id must name a KMS key (key id, key ARN or alias)")
        if max_attempts < 1 or connect_timeout <= 0 or read_timeout <= 0:
            raise ConfigError("max_attempts and the timeouts must be positive")
        self._key_id = key_id
        self._region_name = region_name
        self._endpoint_url = endpoint_url
        self._profile_name = profile_name
        self._max_attempts = int(max_attempts)
        self._connect_timeout = float(connect_timeout)
        self._read_timeout = float(read_timeout)
        self._lock = threading.Lock()
        self._client_cache: Any = None

    def settings(self) -> dict[str, Any]:
        # Settings only: the client (and any credentials it resolved) is rebuilt on arrival.
        return {
            "key_id": self._key_id,
            "region_name": self._region_name,
            "endpoint_url": self._endpoint_url,
            "profile_name": self._profile_name,
            "max_attempts": self._max_attempts,
            "connect_timeout": self._connect_timeout,
            "read_timeout": self._read_timeout,
        }

    # -- client and errors ---------------------------------------------------------------------
    def _client(self) -> Any:
        # boto3 sessions are not thread-safe, clients are: build one client under a lock.
        with self._lock:
            if self._client_cache is None:
                try:
                    session = boto3.session.Session(
                        profile_name=self._profile_name, region_name=self._region_name
                    )
                except boto_errors.ProfileNotFound:
                    raise ConfigError(
                        "the AWS profile named by profile_name does not exist"
                    ) from None
                config = Config(
                    retries={"mode": "standard", "max_attempts": self._max_attempts},
                    connect_timeout=self._connect_timeout,
                    read_timeout=self._read_timeout,
                )
                try:
                    self._client_cache = session.client(
                        "kms", endpoint_url=self._endpoint_url, config=config
                    )
                except boto_errors.NoRegionError:
                    raise ConfigError(
                        "no AWS region for KMS: set AWS_DEFAULT_REGION or pass region_name="
                    ) from None
                except ValueError:  # botocore's message quotes the endpoint: not ours to show
                    raise ConfigError("endpoint_url is not a usable URL") from None
            return self._client_cache

    def _kms(self, operation: str, *, stored: bool = False, **params: Any) -> dict[str, Any]:
        """One KMS call. ``stored``: the request carries a ciphertext from storage, so a
        verdict on that ciphertext is an IntegrityError rather than the provider's failure."""
        client = self._client()
        try:
            response: dict[str, Any] = getattr(client, operation)(**params)
            return response
        except boto_errors.ClientError as exc:
            raise _translate(exc, stored) from exc
        except boto_errors.NoCredentialsError as exc:
            raise KeyProviderError("no AWS credentials found in the standard chain") from exc
        except (boto_errors.EndpointConnectionError, boto_errors.ConnectionError) as exc:
            raise KeyProviderError("the aws-kms key provider is unreachable") from exc
        except boto_errors.BotoCoreError as exc:
            raise KeyProviderError("the aws-kms key provider failed") from exc

    # -- primitives ----------------------------------------------------------------------------
    def _generate(self, context: bytes) -> tuple[bytes, bytes]:
        response = self._kms(
            "generate_data_key",
            KeyId=self._key_id,
            KeySpec="AES_256",
            EncryptionContext=_context(context),
        )
        return bytes(response["Plaintext"]), _STANZA_V1 + bytes(response["CiphertextBlob"])

    def _wrap(self, data_key: bytes, context: bytes) -> bytes:
        response = self._kms(
            "encrypt", KeyId=self._key_id, Plaintext=data_key, EncryptionContext=_context(context)
        )
        return _STANZA_V1 + bytes(response["CiphertextBlob"])

    def _unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        if wrapped[:1] != _STANZA_V1 or len(wrapped) < 2:
            raise IntegrityError()
        response = self._kms(
            "decrypt",
            stored=True,
            CiphertextBlob=wrapped[1:],
            KeyId=self._key_id,
            EncryptionContext=_context(context),
        )
        plaintext: bytes = response["Plaintext"]
        return plaintext

    def _rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        # ReEncrypt runs inside KMS: the plaintext data key never reaches this process, and the
        # same context is required on the way in and bound on the way out.
        if wrapped[:1] != _STANZA_V1 or len(wrapped) < 2:
            raise IntegrityError()
        response = self._kms(
            "re_encrypt",
            stored=True,
            CiphertextBlob=wrapped[1:],
            SourceKeyId=self._key_id,
            SourceEncryptionContext=_context(context),
            DestinationKeyId=self._key_id,
            DestinationEncryptionContext=_context(context),
        )
        return _STANZA_V1 + bytes(response["CiphertextBlob"])

    def _rotate(self) -> None:
        # RotateKeyOnDemand takes a key id or key ARN, not an alias: resolve it first.
        key = self._kms("describe_key", KeyId=self._key_id)["KeyMetadata"]["KeyId"]
        self._kms("rotate_key_on_demand", KeyId=key)

    def _describe(self) -> dict[str, Any]:
        meta = self._kms("describe_key", KeyId=self._key_id)["KeyMetadata"]
        return {
            field: meta.get(field)
            for field in ("KeyState", "Enabled", "KeySpec", "KeyManager", "MultiRegion")
        }


def _translate(exc: boto_errors.ClientError, stored: bool) -> Exception:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), str(error.get("Message", "")).lower()
    if stored and code in _BAD_CIPHERTEXT:
        return IntegrityError()
    if stored and code == "AccessDeniedException" and "not authorized" not in message:
        # KMS's answer for a ciphertext naming a key that does not exist or is not ours ("The
        # ciphertext refers to a customer master key that does not exist..."; moto sends no
        # message): the stored bytes name no usable key, which a reader cannot tell from
        # tampering. A real permission denial says "... is not authorized to perform ...".
        return IntegrityError()
    if code in _KEY_STATE:
        return KeyProviderError(
            "the aws-kms key provider refused: the KMS key is disabled, pending deletion or "
            "unavailable"
        )
    if code == "NotFoundException":
        return KeyProviderError("the aws-kms key provider's KMS key was not found")
    if code in (
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
    ):
        return KeyProviderError("the aws-kms key provider was denied permission")
    return KeyProviderError("the aws-kms key provider failed")
