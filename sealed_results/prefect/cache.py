"""A keyed cache policy: Prefect's cache keys replaced by an HMAC under the profile's key.

A Prefect cache key becomes the result's storage key, and Prefect's API stores it. The built-in
policies hash inputs without a key (md5 of the inputs, the task's source, the run id), so a
low-entropy input can be confirmed offline from the key alone, and ``SecretStr`` inputs hash as
``**********``, so two different secrets share one cache entry. ``SealedCachePolicy`` wraps any
policy: secret inputs are first replaced by a keyed hash of their real value, the inner policy
computes its key, and the key returned is ``derive_name("prefect-cache-key", inner key)``: the
same on every machine with the profile, meaningless without the profile's token key. Lock names
are the same keyed hash. Rotating the token keys changes every key, so earlier cache entries are
simply not found again (a miss, never a wrong hit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect.cache_policies import DEFAULT, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects
from pydantic import Secret, SecretBytes, SecretStr

from sealed_results.errors import SealedResultsError
from sealed_results.prefect.storage import handler_for

__all__ = ["SealedCachePolicy", "seal_secret_inputs"]

CACHE_KEY_PURPOSE = "prefect-cache-key"
SECRET_PURPOSE = "prefect-cache-secret"
_SECRET_TYPES = (SecretStr, SecretBytes, Secret)


class CacheKeyError(SealedResultsError):
    """The inner cache policy failed; its own message may quote inputs, so it is not kept."""

    def __init__(self) -> None:
        super().__init__(
            "the cache key could not be computed from the task's inputs (exclude inputs that "
            "cannot be hashed, or use cache_policy=NO_CACHE)"
        )


def _secret_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return b"s" + value.encode("utf-8")
    if isinstance(value, bytes | bytearray):
        return b"b" + bytes(value)
    digest = hash_objects(value, raise_on_failure=True)
    return b"o" + str(digest).encode("ascii")


def seal_secret_inputs(value: Any, profile: str | None) -> Any:
    """``value`` with every pydantic secret (``SecretStr``, ``SecretBytes``, ``Secret[...]``),
    at any depth of dicts, lists, tuples and sets, replaced by a keyed hash of its real value,
    so different secrets give different cache keys and none can be guessed from a key."""
    if isinstance(value, _SECRET_TYPES):
        secret = value.get_secret_value()
        digest = handler_for(profile).derive_name(SECRET_PURPOSE, _secret_bytes(secret))
        return f"<sealed-secret {digest}>"
    if isinstance(value, Mapping):
        return {k: seal_secret_inputs(v, profile) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(seal_secret_inputs(v, profile) for v in value)
    if isinstance(value, set | frozenset):
        return sorted(repr(seal_secret_inputs(v, profile)) for v in value)
    return value


@dataclass
class SealedCachePolicy(CachePolicy):
    """Wraps ``inner`` (Prefect's DEFAULT unless given) and returns an HMAC of its key under a
    key of the sealed-results profile. Composes: ``policy + other`` and ``policy - "arg"`` act on
    the inner policy and stay keyed."""

    inner: CachePolicy = field(default_factory=lambda: DEFAULT)
    profile: str | None = None

    @classmethod
    def wrap(cls, inner: CachePolicy, profile: str | None) -> SealedCachePolicy:
        if isinstance(inner, SealedCachePolicy):
            inner = inner.inner
        return cls(
            key_storage=inner.key_storage,
            isolation_level=inner.isolation_level,
            lock_manager=inner.lock_manager,
            inner=inner,
            profile=profile,
        )

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        try:
            key = self.inner.compute_key(
                task_ctx=task_ctx,
                inputs=seal_secret_inputs(inputs or {}, self.profile),
                flow_parameters=seal_secret_inputs(flow_parameters or {}, self.profile),
                **kwargs,
            )
        except SealedResultsError:
            raise
        except Exception:
            raise CacheKeyError() from None
        if key is None:
            return None
        return handler_for(self.profile).derive_name(CACHE_KEY_PURPOSE, key.encode("utf-8"))

    def __add__(self, other: CachePolicy) -> CachePolicy:
        inner = other.inner if isinstance(other, SealedCachePolicy) else other
        return SealedCachePolicy.wrap(self.inner + inner, self.profile)

    def __sub__(self, other: str) -> CachePolicy:
        return SealedCachePolicy.wrap(self.inner - other, self.profile)
