"""MemoryHandler: results in fsspec's in-process memory filesystem (tests, notebooks)."""

from __future__ import annotations

from sealed_results.handlers.fsspec_core import FsspecHandler

__all__ = ["MemoryHandler"]


class MemoryHandler(FsspecHandler):
    """Results in ``memory://`` (gone with the process; shared by handlers in it)."""

    name = "memory"
    protocols = ("memory",)
