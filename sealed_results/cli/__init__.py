"""The ``sealed-results`` command (``main``); each verb is a module of this package."""

from __future__ import annotations

from sealed_results.cli.main import main

__all__ = ["main"]
