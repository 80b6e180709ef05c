"""The one exception hierarchy of sealed-results.

Every message here is fixed text chosen by us. Messages, reprs and log lines travel to the
orchestrator's cloud, so they never carry plaintext, roots, bucket or object names, key names,
key ids, key material or provider addresses. An SDK's own exception is raised ``from None`` and so
stays reachable as ``__context__`` for local debugging (``err.__context__``), while neither its
message nor its traceback appears in ``traceback.format_exception(err)``: orchestrators log and
ship formatted tracebacks.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "IntegrityError",
    "KeyProviderError",
    "KeysetMissing",
    "PluginNotFound",
    "ResultNotFound",
    "SealedResultsError",
    "SerializationError",
    "StorageError",
    "StoreConflict",
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


class StoreConflict(StorageError):
    """A compare-and-swap found the object changed since it was read (another process wrote
    it first): read it again and retry."""

    def __init__(self, message: str = "the object changed since it was read") -> None:
        super().__init__(message)


class KeysetMissing(SealedResultsError):
    """The root holds results but no token keyset. A new keyset would make every existing
    token unreadable, so none is made: restore the ``keyset`` object (docs/stores.md)."""

    def __init__(
        self,
        message: str = (
            "this root holds results but no token keyset; restore the 'keyset' object from a "
            "backup or an earlier version (docs/stores.md) instead of starting a new one, "
            "which would leave every token already issued unreadable"
        ),
    ) -> None:
        super().__init__(message)


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
