"""``example-dir``: results in a local directory named by an ``exdir://PATH`` root.

A real plugin would talk to its own store; subclassing LocalHandler keeps the example short
while showing the two things a handler plugin usually adds: its root scheme, and the settings
that rebuild it in another process (``_settings``).
"""

from __future__ import annotations

from typing import Any

from sealed_results.errors import ConfigError
from sealed_results.handlers.local import LocalHandler
from sealed_results.keyproviders.base import KeyProvider

__all__ = ["ExampleDirHandler"]

SCHEME = "exdir://"


class ExampleDirHandler(LocalHandler):
    """A LocalHandler rooted at ``exdir://PATH``."""

    name = "example-dir"

    def __init__(self, root: str, keyprovider: KeyProvider, **options: Any) -> None:
        if not isinstance(root, str) or not root.startswith(SCHEME) or root == SCHEME:
            # Our message names the expected form, never the root that was given.
            raise ConfigError("ExampleDirHandler needs a root of the form exdir://PATH")
        self._example_root = root
        super().__init__(root[len(SCHEME) :], keyprovider, **options)

    def _settings(self) -> dict[str, Any]:
        # Pickled handlers are rebuilt from the exdir:// root, not the local path behind it.
        return {**super()._settings(), "root": self._example_root}
