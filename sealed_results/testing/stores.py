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

Compare-and-swap: the sequential checks of ``get_versioned``/``swap`` run on every store; the
race (threads doing read-modify-write rounds under CAS-retry, every item must survive) runs
where ``atomic_swap`` is True. A test server known to ignore the condition under a race can be
marked in the subclass by overriding ``test_racing_swaps_lose_nothing`` with
``pytest.mark.xfail(strict=True, reason=...)``.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
import threading
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from sealed_results.errors import IntegrityError, ResultNotFound, StoreConflict
from sealed_results.stores.base import ObjectInfo, Store

__all__ = ["StoreSuite", "append_under_cas", "assert_names_nothing"]

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


def append_under_cas(store: Store, name: str, item: bytes) -> int:
    """Append ``item`` (plus a comma) to object ``name`` by read-modify-write under CAS-retry;
    the number of conflicts met on the way."""
    conflicts = 0
    while True:
        try:
            data, version = store.get_versioned(name)
        except ResultNotFound:
            data, version = b"", None
        try:
            store.swap(name, data + item + b",", version)
            return conflicts
        except StoreConflict:
            conflicts += 1


def items_of(data: bytes) -> list[bytes]:
    return [item for item in data.split(b",") if item]


class StoreSuite:
    #: Threads in the swap race, and read-modify-write rounds each.
    race_threads = 4
    race_rounds = 15

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

    # -- metadata and upkeep ---------------------------------------------------------------------
    @pytest.mark.parametrize("size", [0, 1000, 70_000])
    def test_info_gives_the_size_and_a_recent_time(self, store: Store, size: int) -> None:
        name = new_name()
        store.put(name, os.urandom(size))
        info = store.info(name)
        assert isinstance(info, ObjectInfo)
        assert info.size == size
        if info.modified is not None:
            # An aware time, within a minute of now (clocks of a server and this machine).
            assert info.modified.tzinfo is not None
            assert info.modified.utcoffset() == timedelta(0)
            assert abs(datetime.now(UTC) - info.modified) < timedelta(minutes=1)
        store.replace(name, b"12345")
        assert store.info(name).size == 5

    def test_info_of_a_missing_object_is_not_found(
        self, store: Store, store_secrets: list[str], store_private: list[str]
    ) -> None:
        missing = new_name()
        error = _error_of(lambda: store.info(missing))
        assert isinstance(error, ResultNotFound)
        assert_names_nothing(error, [missing, *store_secrets, *store_private])
        store.put(missing, b"x")
        store.delete(missing)
        with pytest.raises(ResultNotFound):
            store.info(missing)

    def test_sweep_never_removes_an_object(self, store: Store) -> None:
        names = {new_name() for _ in range(3)}
        for name in names:
            store.put(name, b"kept")
        store.replace("keyset", b"k")
        with pytest.raises(RuntimeError), store.create(new_name()) as sink:
            sink.write(b"unfinished")
            raise RuntimeError
        assert store.sweep(0) >= 0
        assert sorted(store.list()) == sorted({*names, "keyset"})
        assert all(store.get(name) == b"kept" for name in names)

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

    # -- compare-and-swap --------------------------------------------------------------------------
    def test_get_versioned_gives_the_bytes_and_a_version(self, store: Store) -> None:
        name = new_name()
        with pytest.raises(ResultNotFound):
            store.get_versioned(name)
        store.put(name, b"first")
        data, version = store.get_versioned(name)
        assert data == b"first" and isinstance(version, str) and version
        assert store.get_versioned(name) == (b"first", version)  # stable while unchanged

    def test_swap_none_creates_only_where_nothing_is(self, store: Store) -> None:
        name = new_name()
        store.swap(name, b"created by swap", None)
        assert store.get(name) == b"created by swap"
        with pytest.raises(StoreConflict):
            store.swap(name, b"a second create", None)
        assert store.get(name) == b"created by swap"
        assert list(store.list()) == [name]  # no lock or temporary file is listed

    def test_swap_with_the_right_version_replaces(self, store: Store) -> None:
        name = new_name()
        store.put(name, b"version one")
        _, version = store.get_versioned(name)
        store.swap(name, b"version two, longer", version)
        data, newer = store.get_versioned(name)
        assert data == b"version two, longer" and newer != version
        store.swap(name, b"3", newer)
        assert store.get(name) == b"3"
        assert list(store.list()) == [name]

    def test_swap_with_a_stale_version_conflicts(self, store: Store) -> None:
        name = new_name()
        store.swap(name, b"version one", None)
        _, stale = store.get_versioned(name)
        store.swap(name, b"version two", stale)
        with pytest.raises(StoreConflict):
            store.swap(name, b"a lost update", stale)
        assert store.get(name) == b"version two"

    def test_replace_makes_a_new_version(self, store: Store) -> None:
        name = new_name()
        store.put(name, b"same size A")
        _, version = store.get_versioned(name)
        store.replace(name, b"same size B")
        with pytest.raises(StoreConflict):
            store.swap(name, b"a lost update", version)
        assert store.get(name) == b"same size B"

    def test_swap_of_a_deleted_object_conflicts(self, store: Store) -> None:
        name = new_name()
        store.put(name, b"x")
        _, version = store.get_versioned(name)
        store.delete(name)
        with pytest.raises(StoreConflict):
            store.swap(name, b"y", version)
        assert not store.exists(name)

    def test_racing_swaps_lose_nothing(self, store: Store) -> None:
        if not store.atomic_swap:
            pytest.skip("this store's swap is not atomic (atomic_swap is False)")
        name, failures = new_name(), []
        barrier = threading.Barrier(self.race_threads)

        def writer(index: int) -> None:
            try:
                barrier.wait()
                for round_ in range(self.race_rounds):
                    append_under_cas(store, name, b"t%d-%d" % (index, round_))
            except BaseException as exc:  # reported below; a thread's error is lost otherwise
                failures.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(self.race_threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures[0]
        expected = {
            b"t%d-%d" % (i, r) for i in range(self.race_threads) for r in range(self.race_rounds)
        }
        got = items_of(store.get(name))
        assert len(got) == len(expected) and set(got) == expected, (
            f"{len(expected) - len(set(got) & expected)} of {len(expected)} items lost"
        )

    # -- bounded reads -----------------------------------------------------------------------
    def test_reads_are_bounded_by_max_size(self, store: Store) -> None:
        big, small, empty = new_name(), new_name(), new_name()
        store.put(big, os.urandom(2 * MiB))
        store.put(small, b"s" * 100)
        store.put(empty, b"")
        for call in (
            lambda: store.get_versioned(big, max_size=MiB),
            lambda: store.fetch(big, max_size=MiB),
        ):
            with pytest.raises(IntegrityError):
                call()
        assert store.get_versioned(small, max_size=100)[0] == b"s" * 100  # exactly the bound
        assert store.get_versioned(empty, max_size=100)[0] == b""
        with pytest.raises(IntegrityError):
            store.get_versioned(small, max_size=99)
        stream, length = store.fetch(small, max_size=100)
        assert length == 100 and stream.read() == b"s" * 100
        stream.close()
        with pytest.raises(ResultNotFound):
            store.get_versioned(new_name(), max_size=100)

    def test_get_is_bounded_by_max_size(self, store: Store) -> None:
        if "max_size" not in inspect.signature(store.get).parameters:
            pytest.skip("this store's get() takes no max_size (get_versioned and fetch still do)")
        big, small, empty = new_name(), new_name(), new_name()
        store.put(big, os.urandom(2 * MiB))
        store.put(small, b"s" * 100)
        store.put(empty, b"")
        with pytest.raises(IntegrityError):
            store.get(big, max_size=MiB)
        assert store.get(big, max_size=2 * MiB) == store.get(big)
        assert store.get(small, max_size=100) == b"s" * 100
        assert store.get(empty, max_size=0) == b""
        with pytest.raises(IntegrityError):
            store.get(small, max_size=99)

    def test_cas_and_bounded_read_errors_name_nothing(
        self, store: Store, store_secrets: list[str], store_private: list[str]
    ) -> None:
        taken, missing, big = new_name(), new_name(), new_name()
        store.put(taken, b"x")
        store.put(big, b"b" * 1000)
        _, stale = store.get_versioned(taken)
        store.swap(taken, b"newer", stale)
        errors = [
            _error_of(lambda: store.get_versioned(missing)),
            _error_of(lambda: store.swap(taken, b"y", stale)),
            _error_of(lambda: store.swap(taken, b"y", None)),
            _error_of(lambda: store.swap(missing, b"y", stale)),
            _error_of(lambda: store.get_versioned(big, max_size=10)),
            _error_of(lambda: store.fetch(big, max_size=10)),
        ]
        assert [type(e) for e in errors] == [ResultNotFound] + [StoreConflict] * 3 + [
            IntegrityError
        ] * 2
        for error in errors:
            assert_names_nothing(error, [taken, missing, big, *store_secrets, *store_private])
