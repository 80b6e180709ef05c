"""StoreSuite: the conformance tests every Store must pass.

Subclass it in a test module and define a ``store`` fixture (a fresh, empty store for each
test)::

    class TestMyStore(StoreSuite):
        @pytest.fixture
        def store(self, tmp_path):
            return MyStore(tmp_path / "root")

Optional fixtures: ``store_secrets`` (strings that must never be in a pickle, message, repr or
formatted traceback: credentials) and ``store_private`` (strings that may travel in a pickle to
rebuild the store but must never be in a message, repr or traceback: roots, bucket names; by
default the ``root`` of ``settings()``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
import traceback
import uuid
from collections.abc import Callable

import pytest

from sealed_results.errors import ResultNotFound
from sealed_results.stores.base import Store

__all__ = ["StoreSuite"]

MiB = 1 << 20


def new_name() -> str:
    """A fresh object name, distinctive enough to be searched for in messages."""
    return f"obj-{uuid.uuid4().hex}"


def _error_of(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("expected an error")


def assert_names_nothing(error: BaseException, strings: list[str]) -> None:
    """Neither the message, the repr nor the whole formatted traceback (chained exceptions
    included) of ``error`` contains any of ``strings``."""
    texts = {
        "message": str(error),
        "repr": repr(error),
        "traceback": "".join(traceback.format_exception(error)),
    }
    for where, text in texts.items():
        leaked = [s for s in strings if s and s in text]
        # Count only: the assertion message itself must not carry the leaked string.
        assert not leaked, f"{type(error).__name__}: its {where} names {len(leaked)} string(s)"


class StoreSuite:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("subclasses define the store fixture")

    @pytest.fixture
    def store_secrets(self) -> list[str]:
        return []

    @pytest.fixture
    def store_private(self, store: Store) -> list[str]:
        root = store.settings().get("root")
        return [str(root)] if root is not None else []

    # -- writing and reading ---------------------------------------------------------------------
    def test_put_get_round_trip(self, store: Store) -> None:
        name, data = new_name(), os.urandom(1000)
        store.put(name, data)
        assert store.get(name) == data

    def test_empty_object(self, store: Store) -> None:
        name = new_name()
        store.put(name, b"")
        assert store.get(name) == b""
        stream, length = store.fetch(name)
        assert length == 0 and stream.read() == b""

    def test_create_round_trip(self, store: Store) -> None:
        name = new_name()
        with store.create(name) as sink:
            sink.write(b"first part, ")
            sink.write(memoryview(b"second part"))
        assert store.get(name) == b"first part, second part"

    def test_create_is_exclusive(self, store: Store) -> None:
        name = new_name()
        with store.create(name) as sink:
            sink.write(b"the first object")
        with pytest.raises(FileExistsError), store.create(name) as sink:
            sink.write(b"the second object, which must not land")
        assert store.get(name) == b"the first object"
        assert list(store.list()) == [name]

    def test_put_is_exclusive(self, store: Store) -> None:
        name = new_name()
        store.put(name, b"the first object")
        with pytest.raises(FileExistsError):
            store.put(name, b"the second object")
        assert store.get(name) == b"the first object"

    def test_concurrent_puts_of_one_name_one_wins(self, store: Store) -> None:
        name, results = new_name(), []
        barrier = threading.Barrier(4)

        def put(index: int) -> None:
            barrier.wait()
            try:
                store.put(name, b"writer %d" % index)
                results.append(index)
            except FileExistsError:
                pass

        threads = [threading.Thread(target=put, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 1
        assert store.get(name) == b"writer %d" % results[0]

    def test_failed_create_leaves_nothing(self, store: Store) -> None:
        name = new_name()
        with pytest.raises(RuntimeError, match="the source broke"), store.create(name) as sink:
            sink.write(b"partial " * 1000)
            raise RuntimeError("the source broke")
        assert list(store.list()) == []
        assert not store.exists(name)
        with pytest.raises(ResultNotFound):
            store.get(name)
        store.put(name, b"the name is free again")
        assert store.get(name) == b"the name is free again"

    def test_open_streams_the_bytes(self, store: Store) -> None:
        name, data = new_name(), os.urandom(200_000)
        store.put(name, data)
        with store.open(name) as stream:
            assert stream.readable()
            assert stream.read(10) == data[:10]
            assert stream.read() == data[10:]
            assert stream.read(10) == b""

    def test_each_reader_has_its_own_position(self, store: Store) -> None:
        name, data = new_name(), os.urandom(5000)
        store.put(name, data)
        with store.open(name) as first, store.open(name) as second:
            assert first.read(100) == data[:100]
            assert second.read(200) == data[:200]
            assert first.read() == data[100:]

    @pytest.mark.parametrize("size", [100, 70_000, 300_000])
    def test_fetch_gives_the_stream_and_its_length(self, store: Store, size: int) -> None:
        name, data = new_name(), os.urandom(size)
        store.put(name, data)
        stream, length = store.fetch(name)
        try:
            assert length == size
            assert stream.read() == data
        finally:
            stream.close()

    def test_exists(self, store: Store) -> None:
        name = new_name()
        assert store.exists(name) is False
        store.put(name, b"x")
        assert store.exists(name) is True

    def test_delete(self, store: Store) -> None:
        name = new_name()
        store.put(name, b"x")
        store.delete(name)
        assert not store.exists(name)
        for operation in (store.get, store.open, store.delete):
            with pytest.raises(ResultNotFound):
                operation(name)
        with pytest.raises(ResultNotFound):
            store.fetch(name)

    def test_replace_creates_then_overwrites(self, store: Store) -> None:
        name = new_name()
        store.replace(name, b"version one")
        assert store.get(name) == b"version one"
        store.replace(name, b"version two, longer than one")
        assert store.get(name) == b"version two, longer than one"
        store.replace(name, b"3")
        assert store.get(name) == b"3"
        assert list(store.list()) == [name]

    # -- listing and names -----------------------------------------------------------------------
    def test_list_gives_exactly_the_object_names(self, store: Store) -> None:
        names = {new_name() for _ in range(3)}
        for name in names:
            store.put(name, name.encode())
        with pytest.raises(RuntimeError), store.create(new_name()) as sink:
            sink.write(b"unfinished")
            raise RuntimeError
        store.replace("keyset", b"k")
        assert sorted(store.list()) == sorted({*names, "keyset"})

    def test_list_of_an_empty_store(self, store: Store) -> None:
        assert list(store.list()) == []

    def test_names_of_64_characters(self, store: Store) -> None:
        names = [("A-b_c.d" + uuid.uuid4().hex * 2)[:64], "z" * 32 + "0123456789" * 3 + "._"]
        for name in names:
            assert len(name) == 64
            store.put(name, name.encode())
        assert sorted(store.list()) == sorted(names)
        for name in names:
            assert store.get(name) == name.encode()
            store.delete(name)

    # -- a large object, in bounded memory -------------------------------------------------------
    def test_large_object_streams_through(self, store: Store) -> None:
        name, chunk = new_name(), os.urandom(MiB)
        written = hashlib.sha256()
        with store.create(name) as sink:
            for index in range(20):
                piece = index.to_bytes(4, "big") + chunk[4:]
                written.update(piece)
                sink.write(piece)
        read, total = hashlib.sha256(), 0
        with store.open(name) as stream:
            while piece := stream.read(MiB // 2):
                read.update(piece)
                total += len(piece)
        assert total == 20 * MiB
        assert read.digest() == written.digest()

    # -- what travels and what is said -----------------------------------------------------------
    def test_pickled_copy_reads_the_same_objects(
        self, store: Store, store_secrets: list[str]
    ) -> None:
        name = new_name()
        store.put(name, b"written by the original")
        blob = pickle.dumps(store)
        for secret in store_secrets:
            assert secret.encode() not in blob, "a secret option travels in the pickle"
        copy = pickle.loads(blob)
        assert type(copy) is type(store)
        assert copy.get(name) == b"written by the original"
        other = new_name()
        copy.put(other, b"written by the copy")
        assert store.get(other) == b"written by the copy"

    def test_repr_names_nothing(
        self, store: Store, store_secrets: list[str], store_private: list[str]
    ) -> None:
        text = repr(store)
        assert not [s for s in [*store_secrets, *store_private] if s in text]

    def test_errors_name_nothing(
        self, store: Store, store_secrets: list[str], store_private: list[str]
    ) -> None:
        taken, missing = new_name(), new_name()
        store.put(taken, b"x")

        def create_taken() -> None:
            with store.create(taken) as sink:
                sink.write(b"y")

        errors = [
            _error_of(lambda: store.get(missing)),
            _error_of(lambda: store.open(missing)),
            _error_of(lambda: store.fetch(missing)),
            _error_of(lambda: store.delete(missing)),
            _error_of(lambda: store.put(taken, b"y")),
            _error_of(create_taken),
        ]
        assert [type(e) for e in errors] == [ResultNotFound] * 4 + [FileExistsError] * 2
        for error in errors:
            assert_names_nothing(error, [taken, missing, *store_secrets, *store_private])
