"""FsspecHandler: the one storage core every built-in handler shares.

fsspec already speaks local disk, memory, S3, GCS and Azure with the credential and endpoint
forms users know, so ``storage_options`` pass straight through. A backend subclass adds only what
is truly its own: its protocol, default options, and how that store makes a write exclusive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, BinaryIO, ClassVar

import fsspec
from fsspec.core import url_to_fs

from sealed_results.errors import ConfigError, ResultNotFound, StorageError
from sealed_results.handlers.base import ResultHandler
from sealed_results.keyproviders.base import KeyProvider

__all__ = ["FsspecHandler"]


class FsspecHandler(ResultHandler):
    """A ResultHandler over any fsspec filesystem, rooted at ``root`` (a URL or path)."""

    name = "fsspec"
    protocols: ClassVar[tuple[str, ...]] = ()  # accepted root protocols; empty accepts any

    def __init__(
        self,
        root: str,
        keyprovider: KeyProvider,
        *,
        storage_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(root, keyprovider, **options)
        self._storage_options = dict(storage_options or {})
        protocol = fsspec.core.split_protocol(self._root)[0] or "file"
        if self.protocols and protocol not in self.protocols:
            raise ConfigError(f"{type(self).__name__} needs a root of the form {self.protocols[0]}://...")
        self._fs_cache: fsspec.AbstractFileSystem | None = None
        self._base = ""

    @property
    def _fs(self) -> fsspec.AbstractFileSystem:
        if self._fs_cache is None:
            fs, base = url_to_fs(self._root, **self._storage_options)
            self._base = base.rstrip("/")
            self._fs_cache = fs
        return self._fs_cache

    def _path(self, name: str) -> str:
        fs = self._fs
        del fs  # resolving the filesystem sets the base path
        return f"{self._base}/{name}"

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "storage_options": self._storage_options}

    # Errors: a missing object is ResultNotFound; anything else the store raises is a
    # StorageError whose message names no bucket or path (the SDK error stays as __cause__).
    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError:
            raise ResultNotFound() from None
        except (ResultNotFound, FileExistsError):
            raise
        except (OSError, ValueError, RuntimeError) as exc:
            raise StorageError("the store failed") from exc

    @contextlib.contextmanager
    def _create(self, name: str) -> Iterator[BinaryIO]:
        path = self._path(name)
        with self._errors():
            self._fs.makedirs(self._base, exist_ok=True)
            sink = self._fs.open(path, "xb")
        try:
            yield sink
        except BaseException:
            self._abandon(sink, path)
            raise
        with self._errors():
            sink.close()

    def _abandon(self, sink: Any, path: str) -> None:
        """Drop an unfinished write. Stores with multipart uploads abort them (``discard``);
        others may have made the object visible on close, so it is removed again."""
        with contextlib.suppress(Exception):
            discard = getattr(sink, "discard", None)
            if discard is not None:
                discard()
            else:
                sink.close()
                self._fs.rm_file(path)

    def _read_bytes(self, name: str) -> bytes:
        with self._errors():
            return bytes(self._fs.cat_file(self._path(name)))

    def _open_read(self, name: str) -> BinaryIO:
        with self._errors():
            return self._fs.open(self._path(name), "rb")  # type: ignore[no-any-return]

    def _exists(self, name: str) -> bool:
        with self._errors():
            return bool(self._fs.exists(self._path(name)))

    def _delete(self, name: str) -> None:
        with self._errors():
            if not self._fs.exists(self._path(name)):
                raise FileNotFoundError
            self._fs.rm_file(self._path(name))

    def _replace(self, name: str, data: bytes) -> None:
        with self._errors():
            self._fs.pipe_file(self._path(name), data)

    def _list_names(self) -> Iterator[str]:
        with self._errors():
            try:
                entries = self._fs.ls(self._base, detail=False)
            except FileNotFoundError:
                return
        for entry in entries:
            yield entry.rstrip("/").rsplit("/", 1)[-1]
