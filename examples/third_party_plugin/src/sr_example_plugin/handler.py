"""``example-dir``: results in a local directory named by an ``exdir://PATH`` root.

A handler plugin is a store plus a name. ``ExampleDirStore`` implements the public methods of
``sealed_results.Store`` with plain files (a real plugin would talk to its own service), and
``ExampleDirHandler`` is ``ResultHandler`` over it. ``sealed_results.testing.StoreSuite`` checks
the store against the contract (see this distribution's README).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from sealed_results import ResultHandler, ResultNotFound, StorageError, Store
from sealed_results.errors import ConfigError

__all__ = ["ExampleDirHandler", "ExampleDirStore"]

SCHEME = "exdir://"


class ExampleDirStore(Store):
    """Objects as files in the directory an ``exdir://PATH`` root names."""

    name = "example-dir"

    def __init__(self, root: str) -> None:
        if not isinstance(root, str) or not root.startswith(SCHEME) or root == SCHEME:
            # Our message names the expected form, never the root that was given.
            raise ConfigError("ExampleDirStore needs a root of the form exdir://PATH")
        self._root = root
        self._dir = Path(root[len(SCHEME) :])

    def settings(self) -> dict[str, Any]:
        return {"root": self._root}

    def _path(self, name: str) -> Path:
        return self._dir / name

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        # OS errors name paths: ours say what failed and keep the OS error as __context__.
        try:
            yield
        except FileNotFoundError:
            raise ResultNotFound() from None
        except FileExistsError:
            raise FileExistsError("an object of that name exists") from None
        except OSError:
            raise StorageError("the example store failed") from None

    @contextlib.contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:
        with self._errors():
            self._dir.mkdir(parents=True, exist_ok=True)
        tmp = self._path(f".tmp-{name}-{os.urandom(6).hex()}")
        try:
            with self._errors(), open(tmp, "xb") as sink:
                yield sink
            with self._errors():
                os.link(tmp, self._path(name))  # a link never replaces: exclusive and atomic
        finally:
            tmp.unlink(missing_ok=True)

    def get(self, name: str) -> bytes:
        with self._errors():
            return self._path(name).read_bytes()

    def open(self, name: str) -> BinaryIO:
        return io.BytesIO(self.get(name))

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def delete(self, name: str) -> None:
        with self._errors():
            self._path(name).unlink()

    def replace(self, name: str, data: bytes) -> None:
        tmp = self._path(f".tmp-{name}-{os.urandom(6).hex()}")
        try:
            with self._errors():
                self._dir.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(data)
                os.replace(tmp, self._path(name))
        finally:
            tmp.unlink(missing_ok=True)

    def list(self) -> Iterator[str]:
        if not self._dir.is_dir():
            return iter(())
        return (p.name for p in self._dir.iterdir() if not p.name.startswith(".tmp-"))


class ExampleDirHandler(ResultHandler):
    """``ExampleDirHandler("exdir:///tmp/results", keyprovider)``."""

    name = "example-dir"
    store_class = ExampleDirStore
