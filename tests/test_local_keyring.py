"""LocalKeyring: file creation, permissions, rotation, retirement, and its error kinds; changes
by processes really racing (lost versions, swapped files), readers following changes made by
another process, and formatted tracebacks that name no path."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from sealed_results.errors import ConfigError, IntegrityError, KeyProviderError
from sealed_results.keyproviders.local import LocalKeyring, create_keyring


def test_created_with_mode_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = create_keyring(tmp_path / "keys.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    with pytest.raises(ConfigError):
        create_keyring(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temporary files left


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o700 | 0o070])
def test_group_or_world_access_is_refused(keyring_path: Path, mode: int) -> None:
    os.chmod(keyring_path, mode)
    with pytest.raises(ConfigError) as caught:
        LocalKeyring(keyring_path).generate_data_key(b"c" * 16)
    assert "chmod 600" in str(caught.value)
    assert str(keyring_path) not in str(caught.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keys init"):
        LocalKeyring(tmp_path / "nope.json").generate_data_key(b"c" * 16)
    bad = tmp_path / "bad.json"
    for content in (
        "{",
        "[]",
        '{"format": "other"}',
        '{"format": "sealed-results-keyring", "version": 9}',
        '{"format": "sealed-results-keyring", "version": 1, "primary": 1, "keys": {"1": {}}}',
    ):
        bad.write_text(content)
        os.chmod(bad, 0o600)
        with pytest.raises(ConfigError):
            LocalKeyring(bad).generate_data_key(b"c" * 16)


def test_wrap_round_trip_binds_the_context(keyring: LocalKeyring) -> None:
    data_key, wrapped = keyring.generate_data_key(b"k" * 16)
    assert keyring.unwrap_data_key(wrapped, b"k" * 16) == data_key
    with pytest.raises(IntegrityError):
        keyring.unwrap_data_key(wrapped, b"j" * 16)
    for i in range(len(wrapped)):
        tampered = bytearray(wrapped)
        tampered[i] ^= 0x80
        with pytest.raises(IntegrityError):
            keyring.unwrap_data_key(bytes(tampered), b"k" * 16)


def test_rotation_keeps_old_versions_readable(keyring: LocalKeyring, keyring_path: Path) -> None:
    old_key, old_wrapped = keyring.generate_data_key(b"k" * 16)
    keyring.rotate()
    assert keyring.describe()["primary_version"] == 2
    assert stat.S_IMODE(keyring_path.stat().st_mode) == 0o600
    assert keyring.unwrap_data_key(old_wrapped, b"k" * 16) == old_key
    rewrapped = keyring.rewrap_data_key(old_wrapped, b"k" * 16)
    assert rewrapped != old_wrapped and rewrapped[1:5] == (2).to_bytes(4, "big")
    assert keyring.rewrap_data_key(rewrapped, b"k" * 16) == rewrapped  # already newest
    # Another process reading the file sees both versions.
    assert LocalKeyring(keyring_path).unwrap_data_key(old_wrapped, b"k" * 16) == old_key


def test_retired_version_is_a_provider_refusal(keyring: LocalKeyring) -> None:
    _, old_wrapped = keyring.generate_data_key(b"k" * 16)
    keyring.rotate()
    with pytest.raises(ConfigError):
        keyring.retire(2)
    keyring.retire(1)
    with pytest.raises(KeyProviderError):
        keyring.unwrap_data_key(old_wrapped, b"k" * 16)


def test_unknown_version_looks_like_tampering(keyring: LocalKeyring) -> None:
    _, wrapped = keyring.generate_data_key(b"k" * 16)
    foreign = wrapped[:1] + (77).to_bytes(4, "big") + wrapped[5:]
    with pytest.raises(IntegrityError):
        keyring.unwrap_data_key(foreign, b"k" * 16)


def test_another_keyring_cannot_unwrap(keyring: LocalKeyring, tmp_path: Path) -> None:
    other = LocalKeyring(create_keyring(tmp_path / "other.json"))
    _, wrapped = other.generate_data_key(b"k" * 16)
    with pytest.raises(IntegrityError):
        keyring.unwrap_data_key(wrapped, b"k" * 16)


def test_pickles_without_key_material(keyring: LocalKeyring, keyring_path: Path) -> None:
    keyring.generate_data_key(b"k" * 16)  # loaded
    blob = pickle.dumps(keyring)
    for entry in json.loads(keyring_path.read_text())["keys"].values():
        assert entry["key"].encode() not in blob
    clone = pickle.loads(blob)
    data_key, wrapped = keyring.generate_data_key(b"k" * 16)
    assert clone.unwrap_data_key(wrapped, b"k" * 16) == data_key
    assert repr(clone) == "<LocalKeyring>"


def test_concurrent_creation_has_one_winner(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def attempt(_: int) -> bool:
        try:
            create_keyring(tmp_path / "keys.json")
            return True
        except ConfigError:
            return False

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(attempt, range(16))) == 1


# -- other processes ----------------------------------------------------------------------------
REPO = Path(__file__).resolve().parent.parent
CONTEXT = b"k" * 16


def python(code: str, *args: object, timeout: float = 120) -> subprocess.Popen[str]:
    """A real second process running ``code`` against this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-2000:]
    return out


ROTATOR = """
import json, sys, time
from pathlib import Path
from sealed_results.keyproviders.local import LocalKeyring
path, go, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
keyring = LocalKeyring(path)
keyring.describe()  # loaded before the start, like a running worker
while not go.exists():
    time.sleep(0.001)
made = []
for _ in range(count):
    keyring.rotate()
    data_key, wrapped = keyring.generate_data_key(b"k" * 16)
    made.append([data_key.hex(), wrapped.hex()])
print(json.dumps(made))
"""


def assert_every_version_kept(path: Path, expected: int) -> None:
    document = json.loads(path.read_text())
    assert sorted(map(int, document["keys"])) == list(range(1, expected + 1))
    assert len({entry["key"] for entry in document["keys"].values()}) == expected
    assert document["primary"] == expected
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_rotating_at_once_lose_no_version(
    keyring_path: Path, tmp_path: Path, processes: int
) -> None:
    """The issue's finding: read, add, overwrite with no check lost versions, and every data key
    wrapped under a lost version was unreadable for good."""
    go = tmp_path / "go"
    rotations = 15
    workers = [python(ROTATOR, keyring_path, go, rotations) for _ in range(processes)]
    time.sleep(0.5)  # let them start and load
    go.touch()
    made = [pair for worker in workers for pair in json.loads(finish(worker))]
    assert_every_version_kept(keyring_path, processes * rotations + 1)
    from tests.conftest import register_keyring_secrets

    register_keyring_secrets(keyring_path)
    reader = LocalKeyring(keyring_path)
    for data_key, wrapped in made:  # every key any process wrapped still opens
        assert reader.unwrap_data_key(bytes.fromhex(wrapped), CONTEXT).hex() == data_key
    lock = keyring_path.with_name(f".{keyring_path.name}.lock")
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_keys_add_from_the_command_line_in_parallel_loses_no_version(keyring_path: Path) -> None:
    loop = """
import subprocess, sys
for _ in range(int(sys.argv[2])):
    subprocess.run([sys.executable, "-m", "sealed_results.cli", "keys", "add", sys.argv[1]],
                   check=True, capture_output=True)
"""
    workers = [python(loop, keyring_path, 4) for _ in range(3)]
    for worker in workers:
        finish(worker)
    assert_every_version_kept(keyring_path, 3 * 4 + 1)


def test_retire_and_rotate_at_once_keep_both_changes(keyring_path: Path, tmp_path: Path) -> None:
    keyring = LocalKeyring(keyring_path)
    for _ in range(9):
        keyring.rotate()  # versions 1..10
    go = tmp_path / "go"
    retirer = """
import sys, time
from pathlib import Path
from sealed_results.keyproviders.local import LocalKeyring
keyring = LocalKeyring(sys.argv[1])
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
for version in range(1, 10):
    keyring.retire(version)
"""
    workers = [python(retirer, keyring_path, go), python(ROTATOR, keyring_path, go, 10)]
    time.sleep(0.5)
    go.touch()
    for worker in workers:
        finish(worker)
    document = json.loads(keyring_path.read_text())
    assert len(document["keys"]) == 20 and document["primary"] == 20
    assert [v for v, e in document["keys"].items() if e["state"] == "retired"] == [
        str(v) for v in range(1, 10)
    ]


SWAPPER = """
import os, sys, time
from pathlib import Path
path = Path(sys.argv[1])
good, bad = Path(sys.argv[2]).read_bytes(), Path(sys.argv[3]).read_bytes()
end = time.monotonic() + float(sys.argv[4])
n = 0
while time.monotonic() < end:
    for data, mode in ((bad, 0o644), (good, 0o600)):
        n += 1
        tmp = path.with_name(f".swap-{n}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.close(fd)
        os.replace(tmp, path)
print(n)
"""


def test_a_world_readable_keyring_swapped_in_is_never_accepted(
    keyring_path: Path, tmp_path: Path
) -> None:
    """The issue's finding: the mode was read with stat on the path and the path opened again,
    and a swapped world-readable keyring was accepted 162 times in 3 s."""
    bad = tmp_path / "bad.json"
    document = json.loads(keyring_path.read_text())
    entry = document["keys"]["1"]
    document["keys"] = {str(v): entry for v in range(1, 8)}
    document["primary"] = 7  # tells the world-readable file apart when loaded
    bad.write_text(json.dumps(document))
    good = tmp_path / "good.json"
    good.write_bytes(keyring_path.read_bytes())
    swapper = python(SWAPPER, keyring_path, good, bad, 2.0)
    accepted = refused = bad_accepted = 0
    while swapper.poll() is None:
        try:
            described = LocalKeyring(keyring_path).describe()
        except ConfigError as err:
            assert "chmod 600" in str(err)
            refused += 1
            continue
        accepted += 1
        bad_accepted += described["primary_version"] == 7
    finish(swapper)
    assert bad_accepted == 0
    assert accepted > 0 and refused > 0  # both files were really met


def test_only_a_regular_file_owned_by_this_user_is_read(keyring_path: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(keyring_path)
    with pytest.raises(ConfigError, match="symbolic link"):
        LocalKeyring(link).describe()
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match="regular file"):  # and it does not block
        LocalKeyring(fifo).describe()
    directory = tmp_path / "dir.json"
    directory.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="regular file"):
        LocalKeyring(directory).describe()
    if os.geteuid() == 0:
        os.chown(keyring_path, 65534, 65534)
        with pytest.raises(ConfigError, match="owned"):
            LocalKeyring(keyring_path).describe()


def test_changes_are_fsynced_then_renamed_then_the_directory_fsynced(
    keyring: LocalKeyring, keyring_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        fsync(fd)

    def spy_replace(src: Any, dst: Any) -> None:
        events.append("replace")
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    keyring.rotate()
    keyring.retire(1)
    assert events == ["fsync file", "replace", "fsync dir"] * 2


# -- running readers follow changes made elsewhere ----------------------------------------------
ADD_AND_WRAP = """
import sys
from sealed_results.keyproviders.local import LocalKeyring
keyring = LocalKeyring(sys.argv[1])
keyring.rotate()
data_key, wrapped = keyring.generate_data_key(b"k" * 16)
print(data_key.hex(), wrapped.hex())
"""
RETIRE = """
import sys
from sealed_results.keyproviders.local import LocalKeyring
LocalKeyring(sys.argv[1]).retire(int(sys.argv[2]))
"""


def test_a_running_reader_opens_keys_wrapped_after_a_rotation_elsewhere(
    keyring_path: Path,
) -> None:
    reader = LocalKeyring(keyring_path)  # default settings
    key1, wrapped1 = reader.generate_data_key(CONTEXT)
    assert reader.unwrap_data_key(wrapped1, CONTEXT) == key1
    # Another process adds version 2 and wraps under it; this one has never seen version 2.
    key2_hex, wrapped2_hex = finish(python(ADD_AND_WRAP, keyring_path)).split()
    wrapped2 = bytes.fromhex(wrapped2_hex)
    assert wrapped2[1:5] == (2).to_bytes(4, "big")
    assert reader.unwrap_data_key(wrapped2, CONTEXT).hex() == key2_hex  # one reload, no wait
    assert reader.rewrap_data_key(wrapped1, CONTEXT)[1:5] == (2).to_bytes(4, "big")


def test_a_version_retired_elsewhere_is_refused_here_within_max_age(keyring_path: Path) -> None:
    max_age = 0.5
    reader = LocalKeyring(keyring_path, max_age=max_age)
    key1, wrapped1 = reader.generate_data_key(CONTEXT)
    key2_hex, wrapped2_hex = finish(python(ADD_AND_WRAP, keyring_path)).split()
    wrapped2 = bytes.fromhex(wrapped2_hex)
    assert reader.unwrap_data_key(wrapped1, CONTEXT) == key1
    finish(python(RETIRE, keyring_path, 1))
    time.sleep(max_age + 0.1)
    with pytest.raises(KeyProviderError, match="retired"):
        reader.unwrap_data_key(wrapped1, CONTEXT)
    assert reader.unwrap_data_key(wrapped2, CONTEXT).hex() == key2_hex
    # ...and it now wraps under the newest version too.
    assert reader.generate_data_key(CONTEXT)[1][1:5] == (2).to_bytes(4, "big")


def test_a_writer_follows_the_primary_within_max_age(keyring_path: Path) -> None:
    writer = LocalKeyring(keyring_path, max_age=0.3)
    assert writer.generate_data_key(CONTEXT)[1][1:5] == (1).to_bytes(4, "big")
    LocalKeyring(keyring_path).rotate()
    time.sleep(0.4)
    assert writer.generate_data_key(CONTEXT)[1][1:5] == (2).to_bytes(4, "big")


def test_unknown_versions_reread_the_file_at_most_once_per_interval(keyring_path: Path) -> None:
    reader = LocalKeyring(keyring_path, reload_interval=60)
    _, wrapped = reader.generate_data_key(CONTEXT)
    reads = 0
    read_document = reader._read_document

    def counting() -> Any:
        nonlocal reads
        reads += 1
        return read_document()

    reader._read_document = counting  # type: ignore[method-assign]
    garbage = wrapped[:1] + (999).to_bytes(4, "big") + wrapped[5:]
    for _ in range(50):
        with pytest.raises(IntegrityError):
            reader.unwrap_data_key(garbage, CONTEXT)
    assert reads == 0  # the file did not change: a stat each, no read
    LocalKeyring(keyring_path).rotate()
    for _ in range(50):
        with pytest.raises(IntegrityError):
            reader.unwrap_data_key(garbage, CONTEXT)
    assert reads == 1  # changed: read once, then not again within reload_interval


def test_a_deleted_or_loosened_keyring_is_not_used_past_max_age(keyring_path: Path) -> None:
    reader = LocalKeyring(keyring_path, max_age=0.2)
    data_key, wrapped = reader.generate_data_key(CONTEXT)
    os.chmod(keyring_path, 0o644)  # ctime changes: looked at again, refused
    time.sleep(0.3)
    with pytest.raises(ConfigError, match="chmod 600"):
        reader.unwrap_data_key(wrapped, CONTEXT)
    os.chmod(keyring_path, 0o600)
    assert reader.unwrap_data_key(wrapped, CONTEXT) == data_key
    keyring_path.unlink()
    time.sleep(0.3)
    with pytest.raises(ConfigError, match="not found"):
        reader.unwrap_data_key(wrapped, CONTEXT)


@pytest.mark.parametrize("options", [{"max_age": -1}, {"reload_interval": "1"}, {"max_age": True}])
def test_bad_timing_options(keyring_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        LocalKeyring(keyring_path, **options)


def test_settings_travel_in_pickles(keyring_path: Path) -> None:
    clone = pickle.loads(pickle.dumps(LocalKeyring(keyring_path, reload_interval=2, max_age=5)))
    assert clone.settings() == {"path": keyring_path, "reload_interval": 2.0, "max_age": 5.0}


# -- tracebacks ---------------------------------------------------------------------------------
def formatted(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))


@pytest.mark.parametrize("case", ["missing", "bad mode", "directory", "not json", "symlink"])
def test_formatted_tracebacks_name_no_path(keyring_path: Path, tmp_path: Path, case: str) -> None:
    path = keyring_path
    if case == "missing":
        path = tmp_path / "missing-keyring.json"
    elif case == "bad mode":
        os.chmod(path, 0o644)
    elif case == "directory":
        path = tmp_path / "a-directory.json"
        path.mkdir(mode=0o700)
    elif case == "not json":
        path.write_text("{ not json")
    elif case == "symlink":
        path = tmp_path / "a-link.json"
        path.symlink_to(keyring_path)
    with pytest.raises(ConfigError) as caught:
        LocalKeyring(path).generate_data_key(CONTEXT)
    text = formatted(caught.value)
    for secret in (str(path), str(keyring_path), str(tmp_path), path.name):
        assert secret not in text
    assert caught.value.__cause__ is None
