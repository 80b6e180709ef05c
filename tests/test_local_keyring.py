"""LocalKeyring: file creation, permissions, rotation, retirement, and its error kinds."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

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
