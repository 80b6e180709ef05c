"""Sizes and times of stored objects, where the store can tell them without reading payloads.

The Store API has no metadata call yet, so this asks, in order: a store's own ``info(name)``
method if it has one (returning an object with ``size`` and ``modified``, or a mapping with
those keys: the hook a future Store API or a plugin store fills); for ``LocalStore``, ``lstat``
of the object's file under the root from its public ``settings()`` (objects are plain files
named as the object in that one directory, docs/stores.md); for the fsspec stores (S3, GCS,
Azure), ``info`` of a filesystem built from the store's public ``settings()`` plus the
environment (the SDK's default credential chain: secret storage options never appear in
``settings()``). Anything else: unknown (None).

A time is the store's last-modified time. ``LocalStore.rewrite_head`` keeps it through a
rotation (plus 1 ns); on S3, GCS and Azure a rotation rewrites each object, which makes it the
rotation's time. See docs/maintenance.md ("gc and rotation").
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fsspec.core import url_to_fs

from sealed_results.errors import ResultNotFound
from sealed_results.stores import FsspecStore, LocalStore, Store

__all__ = ["ObjectInfo", "object_info", "supports_times"]

ObjectInfo = tuple[int | None, datetime | None]

_FS_LOCK = threading.Lock()
_FS: dict[int, tuple[Any, str]] = {}
_TIME_KEYS = ("LastModified", "last_modified", "updated", "mtime", "timeCreated", "created")


def supports_times(store: Store) -> bool:
    return callable(getattr(store, "info", None)) or isinstance(store, LocalStore | FsspecStore)


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _fsspec(store: FsspecStore) -> tuple[Any, str]:
    with _FS_LOCK:
        cached = _FS.get(id(store))
        if cached is None:
            settings = store.settings()
            options = {**type(store).default_storage_options, **settings["storage_options"]}
            for option, variable in settings.get("credentials_from_env", {}).items():
                if variable in os.environ:
                    options[option] = os.environ[variable]
            options["skip_instance_cache"] = True
            fs, base = url_to_fs(settings["root"], **options)
            cached = (fs, str(base).rstrip("/"))
            _FS[id(store)] = cached
        return cached


def object_info(store: Store, name: str) -> ObjectInfo:
    """(size in bytes, last-modified time) of object ``name``; each None when unknown.
    ResultNotFound when the object is gone."""
    info = getattr(store, "info", None)
    if callable(info):
        answer = info(name)
        if isinstance(answer, Mapping):
            return answer.get("size"), _as_datetime(answer.get("modified"))
        return getattr(answer, "size", None), _as_datetime(getattr(answer, "modified", None))
    if isinstance(store, LocalStore):
        root = os.fspath(store.settings()["root"])
        try:
            status = os.lstat(os.path.join(root, name))
        except FileNotFoundError:
            raise ResultNotFound() from None
        except OSError:
            return None, None
        if not stat.S_ISREG(status.st_mode):
            return None, None
        return status.st_size, datetime.fromtimestamp(status.st_mtime, UTC)
    if isinstance(store, FsspecStore):
        try:
            fs, base = _fsspec(store)
            details = fs.info(f"{base}/{name}")
        except FileNotFoundError:
            raise ResultNotFound() from None
        except Exception:
            return None, None
        when = next(
            (_as_datetime(details[k]) for k in _TIME_KEYS if details.get(k) is not None), None
        )
        size = details.get("size")
        return (int(size) if size is not None else None), when
    return None, None
