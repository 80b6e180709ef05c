"""LocalHandler end to end: round trips, tampering through the store, swaps, foreign keys."""

from __future__ import annotations

import datetime as dt
import io
import os
import pickle
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealed_results.errors import (
    IntegrityError,
    ResultNotFound,
    SerializationError,
)
from sealed_results.format import read_header
from sealed_results.handlers import LocalHandler
from sealed_results.keyproviders.local import LocalKeyring, create_keyring
from tests.conftest import PLAINTEXT_MARKER

SEG = 1 << 16

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.decimals(allow_nan=False)
    | st.uuids()
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.complex_numbers(allow_nan=False)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
        | st.frozensets(st.integers() | st.text(max_size=4), max_size=4)
    ),
    max_leaves=12,
)


def same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)  # type: ignore[attr-defined,index]
    return a == b


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=values)
def test_property_round_trip(local_handler: LocalHandler, value: object) -> None:
    assert same(local_handler.read(local_handler.write(value)), value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        "",
        [],
        {},
        (),
        set(),
        # framing "msgpack" (8 bytes) + bin16 header (3): the payload is exactly one segment,
        # one byte short of it, and one byte over
        b"\x00" * (SEG - 11),
        b"\x00" * (SEG - 12),
        b"\x00" * (SEG - 10),
        os.urandom(SEG * 3 + 11),  # several segments
        {
            "when": dt.datetime(2026, 11, 27, 5, tzinfo=dt.UTC),
            "amount": Decimal("12.50"),
            "id": UUID(int=7),
            "tags": ("a", "b"),
            PLAINTEXT_MARKER: [1, 2.5, None],
        },
    ],
)
def test_round_trip_of_edge_values(local_handler: LocalHandler, value: object) -> None:
    assert same(local_handler.read(local_handler.write(value)), value)


# write_stream frames its payload with "bytes" (6 bytes): SEG - 6 fills exactly one segment.
@pytest.mark.parametrize("size", [0, 1, SEG - 7, SEG - 6, SEG - 5, 2 * SEG - 6, 3 * SEG])
def test_streams_at_segment_edges(local_handler: LocalHandler, size: int) -> None:
    payload = os.urandom(size)
    token = local_handler.write_stream(io.BytesIO(payload))
    with local_handler.open(token) as stream:
        assert stream.read() == payload
    assert local_handler.read(token) == payload


def stored(root: Path, handler: LocalHandler, token: str) -> Path:
    return root / handler._locate(token)[0].hex()


def test_every_byte_of_a_stored_blob_flipped_fails(
    local_handler: LocalHandler, local_root: Path
) -> None:
    token = local_handler.write(f"{PLAINTEXT_MARKER} short")
    path = stored(local_root, local_handler, token)
    original = path.read_bytes()
    for i in range(len(original)):
        tampered = bytearray(original)
        tampered[i] ^= 0x04
        path.write_bytes(bytes(tampered))
        with pytest.raises(IntegrityError):
            local_handler.read(token)
        with pytest.raises(IntegrityError), local_handler.open(token) as stream:
            stream.read()
    path.write_bytes(original)
    assert local_handler.read(token) == f"{PLAINTEXT_MARKER} short"


def test_truncation_at_each_segment_boundary(local_handler: LocalHandler, local_root: Path) -> None:
    token = local_handler.write(os.urandom(3 * SEG))
    path = stored(local_root, local_handler, token)
    original = path.read_bytes()
    step = SEG + 16
    source = io.BytesIO(original)
    read_header(source)
    body_start = source.tell()
    cuts = [body_start + k * step for k in range(4)] + [len(original) - 1, 50]
    for cut in cuts:
        path.write_bytes(original[:cut])
        with pytest.raises(IntegrityError):
            local_handler.read(token)
        with pytest.raises(IntegrityError), local_handler.open(token) as stream:
            stream.read()


def test_swapped_blobs_fail(local_handler: LocalHandler, local_root: Path) -> None:
    a, b = local_handler.write("alpha"), local_handler.write("beta")
    pa, pb = stored(local_root, local_handler, a), stored(local_root, local_handler, b)
    da, db = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(db)
    pb.write_bytes(da)
    for token in (a, b):
        with pytest.raises(IntegrityError):
            local_handler.read(token)


def test_blob_from_another_keyring_fails(
    local_handler: LocalHandler, local_root: Path, tmp_path: Path
) -> None:
    other = LocalHandler(
        str(tmp_path / "other"), LocalKeyring(create_keyring(tmp_path / "k2.json"))
    )
    mine, theirs = local_handler.write("mine"), other.write("theirs")
    # Their blob placed under my token's name: the object id and commitment do not match.
    stored(local_root, local_handler, mine).write_bytes(
        stored(tmp_path / "other", other, theirs).read_bytes()
    )
    with pytest.raises(IntegrityError):
        local_handler.read(mine)
    # Their token in my handler.
    with pytest.raises(IntegrityError):
        local_handler.read(theirs)


def test_same_root_with_a_wrong_keyring_fails(
    local_handler: LocalHandler, local_root: Path, tmp_path: Path
) -> None:
    token = local_handler.write("x")
    intruder = LocalHandler(str(local_root), LocalKeyring(create_keyring(tmp_path / "k3.json")))
    with pytest.raises(IntegrityError):
        intruder.read(token)


def test_token_from_another_root_with_the_same_keyring_fails(
    local_handler: LocalHandler, keyring: LocalKeyring, tmp_path: Path
) -> None:
    other = LocalHandler(str(tmp_path / "elsewhere"), keyring)
    with pytest.raises(IntegrityError):
        local_handler.read(other.write("x"))


def test_missing_exists_delete(local_handler: LocalHandler) -> None:
    token = local_handler.write([1, 2, 3])
    assert local_handler.exists(token)
    local_handler.delete(token)
    assert not local_handler.exists(token)
    with pytest.raises(ResultNotFound):
        local_handler.read(token)
    with pytest.raises(ResultNotFound):
        local_handler.open(token)
    with pytest.raises(ResultNotFound):
        local_handler.delete(token)


def test_writes_are_exclusive_and_leave_no_temporary_files(
    local_handler: LocalHandler, local_root: Path
) -> None:
    token = local_handler.write("first")
    name = local_handler._locate(token)[0].hex()
    with pytest.raises(FileExistsError), local_handler.store.create(name) as sink:
        sink.write(b"second")
    assert local_handler.read(token) == "first"
    assert all(not p.name.startswith(".tmp") for p in local_root.iterdir())


def test_failed_write_leaves_nothing(local_handler: LocalHandler, local_root: Path) -> None:
    local_handler.write("warm up")  # keyset
    before = sorted(p.name for p in local_root.iterdir())

    class Boom(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            raise OSError("disk gone")

    with pytest.raises(OSError):
        local_handler.write_stream(Boom())  # type: ignore[arg-type]
    assert sorted(p.name for p in local_root.iterdir()) == before


def test_refused_value_raises_serialization_error_and_stores_nothing(
    local_handler: LocalHandler, local_root: Path
) -> None:
    class Secretive:
        def __repr__(self) -> str:
            return PLAINTEXT_MARKER

    local_handler.write(0)
    before = sorted(p.name for p in local_root.iterdir())
    with pytest.raises(SerializationError) as caught:
        local_handler.write({"x": Secretive()})
    assert "Secretive" in str(caught.value) and "pickle" in str(caught.value)
    assert sorted(p.name for p in local_root.iterdir()) == before


def test_pickle_needs_an_explicit_opt_in_to_read(local_root: Path, keyring: LocalKeyring) -> None:
    writer = LocalHandler(str(local_root), keyring, serializer="pickle")
    token = writer.write(Path("/x"))
    with pytest.raises(SerializationError):
        LocalHandler(str(local_root), keyring).read(token)
    assert LocalHandler(str(local_root), keyring, allow_pickle=True).read(token) == Path("/x")


def test_json_serializer(local_root: Path, keyring: LocalKeyring) -> None:
    handler = LocalHandler(str(local_root), keyring, serializer="json")
    token = handler.write({"a": [1, "b", None]})
    assert LocalHandler(str(local_root), keyring).read(token) == {"a": [1, "b", None]}


def test_concurrent_first_use_shares_one_keyset(local_root: Path, keyring: LocalKeyring) -> None:
    handlers = [LocalHandler(str(local_root), keyring) for _ in range(6)]
    tokens: list[str] = []
    barrier = threading.Barrier(len(handlers))

    def work(h: LocalHandler) -> None:
        barrier.wait()
        tokens.append(h.write("shared"))

    threads = [threading.Thread(target=work, args=(h,)) for h in handlers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = LocalHandler(str(local_root), keyring)
    assert [reader.read(t) for t in tokens] == ["shared"] * len(handlers)


def test_token_key_rotation_keeps_old_tokens(
    local_handler: LocalHandler, local_root: Path, keyring: LocalKeyring
) -> None:
    old = local_handler.write("old")
    local_handler.rotate_token_keys()
    new = local_handler.write("new")
    fresh = LocalHandler(str(local_root), keyring)
    assert (fresh.read(old), fresh.read(new)) == ("old", "new")


def test_kek_rotation_keeps_everything_readable(
    local_handler: LocalHandler, local_root: Path, keyring: LocalKeyring
) -> None:
    old = local_handler.write("before")
    keyring.rotate()
    new = local_handler.write("after")
    fresh = LocalHandler(str(local_root), LocalKeyring(keyring._path))
    assert (fresh.read(old), fresh.read(new)) == ("before", "after")


def test_pickled_handler_reads_in_another_process(
    local_handler: LocalHandler, tmp_path: Path
) -> None:
    token = local_handler.write({"from": "parent"})
    blob = pickle.dumps(local_handler)
    (tmp_path / "handler.pickle").write_bytes(blob)
    code = (
        "import pickle,sys; h=pickle.load(open(sys.argv[1],'rb')); "
        "assert h.read(sys.argv[2]) == {'from': 'parent'}; print(h.write('child'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "handler.pickle"), token],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert local_handler.read(out.stdout.strip()) == "child"


def test_token_reads_in_another_process_with_the_same_settings(
    local_handler: LocalHandler, local_root: Path, keyring_path: Path
) -> None:
    token = local_handler.write(("from", "parent"))
    code = (
        "import sys; from sealed_results.handlers import LocalHandler; "
        "from sealed_results.keyproviders import LocalKeyring; "
        "h = LocalHandler(sys.argv[1], LocalKeyring(sys.argv[2])); "
        "assert h.read(sys.argv[3]) == ('from', 'parent'); print(h.write('child'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(local_root), str(keyring_path), token],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert local_handler.read(out.stdout.strip()) == "child"


def test_repr_reveals_nothing(local_handler: LocalHandler, local_root: Path) -> None:
    assert repr(local_handler) == "<LocalHandler>"
    assert str(local_root) not in repr(local_handler)


def test_object_names_are_random_hex(local_handler: LocalHandler, local_root: Path) -> None:
    for i in range(5):
        local_handler.write({"task": f"{PLAINTEXT_MARKER}-{i}"})
    names = sorted(p.name for p in local_root.iterdir())
    assert "keyset" in names
    assert all(n == "keyset" or (len(n) == 32 and int(n, 16) >= 0) for n in names)
    for p in local_root.iterdir():
        assert PLAINTEXT_MARKER.encode() not in p.read_bytes()
