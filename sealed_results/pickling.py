"""One pickling idiom: an object pickles as the settings that rebuild it, never as live state.

Handlers, stores and key providers travel to other processes (process pools, Dask, Ray). What
travels is ``settings()``, the constructor arguments minus anything secret or live (credentials,
connections, cached keys); the copy reconnects on first use and takes its secrets from the
environment there.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Rebuildable"]


class Rebuildable:
    """Mixin: ``pickle`` stores ``(type(self), self.settings())`` and calls ``cls(**settings)``."""

    def settings(self) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild this object in another process; they must
        hold no secret (see ``sealed_results.options``) and no live object."""
        raise NotImplementedError

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.settings()))


def _rebuild(cls: type[Any], settings: dict[str, Any]) -> Any:
    return cls(**settings)
