"""The one exception hierarchy of sealed-results.

Every message here is fixed text chosen by us. Messages, reprs and log lines travel to the
orchestrator's cloud, so they never carry plaintext, roots, bucket or object names, key names,
key ids, key material or provider addresses. An SDK's own exception is kept as ``__cause__``
(it stays on the machine that raised it) while the message shown is ours.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "IntegrityError",
    "KeyProviderError",
    "PluginNotFound",
    "ResultNotFound",
    "SealedResultsError",
    "SerializationError",
    "StorageError",
    "UnsupportedVersion",
]


class SealedResultsError(Exception):
    """Root of every error this library raises on purpose."""


class IntegrityError(SealedResultsError):
    """A blob or token failed to decode or verify.

    Tampered, truncated, swapped or foreign bytes, a wrong key, and a key id or version that names
    no key all look the same to a reader, so they share one opaque message (like Fernet's
    ``InvalidToken``): telling them apart would help an attacker and nobody else.
    """

    def __init__(self, message: str = "the result or token failed authentication") -> None:
        super().__init__(message)


class ResultNotFound(SealedResultsError):
    """The token is authentic but the object it names is not in the store."""

    def __init__(self, message: str = "no stored result for this token") -> None:
        super().__init__(message)


class KeyProviderError(SealedResultsError):
    """The key provider itself failed or refused: unreachable, sealed, forbidden, key missing,
    or a key version retired by policy. Not for bad stored bytes (that is IntegrityError)."""


class StorageError(SealedResultsError):
    """The store failed permanently (no such bucket, access denied) or kept failing after
    retries."""


class SerializationError(SealedResultsError):
    """The chosen serializer refuses a value, or a payload's serializer is not allowed here."""


class ConfigError(SealedResultsError):
    """A setting is missing, malformed or unsafe. Names the setting, never its value."""


class PluginNotFound(ConfigError):
    """No plugin of that name is installed (the message says which extra provides it)."""


class UnsupportedVersion(IntegrityError):
    """A well-formed format version this release does not know: upgrade sealed-results.

    A subclass of IntegrityError because a reader cannot tell a newer format from a flipped
    version byte: code that catches IntegrityError stays safe, and the message says what to try.
    """

    def __init__(
        self, message: str = "written by a format version this release does not know"
    ) -> None:
        super().__init__(message)
