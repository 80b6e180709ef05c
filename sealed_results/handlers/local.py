"""LocalHandler: results on a local (or mounted) filesystem."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import BinaryIO

from sealed_results.handlers.fsspec_core import FsspecHandler

__all__ = ["LocalHandler"]


class LocalHandler(FsspecHandler):
    """Results under a local directory (created with mode 0700 on first write).

    Writes go to a temporary file in the target directory, then a hard link gives it its name:
    unlike rename, a link never replaces an existing file, so the write is both atomic and
    exclusive. (fsspec's own transactions stage files in /tmp, which is not atomic across
    filesystems.)
    """

    name = "local"
    protocols = ("file", "local")

    def _tmp_path(self, name: str) -> str:
        return self._path(f".tmp-{name}-{os.urandom(6).hex()}")

    def _ensure_root(self) -> None:
        self._fs  # noqa: B018 - resolves the base path
        os.makedirs(self._base, mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def _create(self, name: str) -> Iterator[BinaryIO]:
        with self._errors():
            self._ensure_root()
            tmp = self._tmp_path(name)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as sink:
                yield sink
            with self._errors():
                os.link(tmp, self._path(name))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _replace(self, name: str, data: bytes) -> None:
        with self._errors():
            self._ensure_root()
            tmp = self._tmp_path(name)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as sink:
                    sink.write(data)
                os.replace(tmp, self._path(name))
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _list_names(self) -> Iterator[str]:
        for name in super()._list_names():
            if not name.startswith(".tmp-"):
                yield name
