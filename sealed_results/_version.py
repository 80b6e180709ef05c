"""The one ``__version__``: the installed distribution's version, so it never disagrees with
pyproject.toml. A source tree run without installed metadata reports a local version."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("sealed-results")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
