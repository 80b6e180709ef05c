"""The KeyProviderSuite against every provider, and handlers end to end over real servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sealed_results.errors import KeyProviderError
from sealed_results.handlers import LocalHandler
from sealed_results.keyproviders import MultiKeyProvider, as_materials
from sealed_results.keyproviders.base import KeyProvider
from sealed_results.keyproviders.caching import CachingKeyProvider
from sealed_results.keyproviders.local import LocalKeyring, create_keyring
from sealed_results.testing import CountingKeyProvider, KeyProviderSuite
from tests.servers import _free_port

VALUE = {"rows": [1, 2, 3], "name": "plaintext-marker-0c4f9e"}


class TestLocalKeyring(KeyProviderSuite):
    @pytest.fixture
    def provider(self, keyring: LocalKeyring) -> KeyProvider:
        return keyring

    @pytest.fixture
    def provider_private(self, keyring_path: Path) -> list[str]:
        return [str(keyring_path)]


class TestVaultTransit(KeyProviderSuite):
    @pytest.fixture
    def provider(self, vault_provider: KeyProvider) -> KeyProvider:
        return vault_provider

    @pytest.fixture
    def provider_secrets(self, vault_settings: dict[str, str]) -> list[str]:
        return [vault_settings["token"], vault_settings["url"]]

    @pytest.fixture
    def provider_private(self, vault_settings: dict[str, str]) -> list[str]:
        return [vault_settings["key"]]


class TestAwsKms(KeyProviderSuite):
    @pytest.fixture
    def provider(self, kms_provider: KeyProvider) -> KeyProvider:
        return kms_provider

    @pytest.fixture
    def provider_secrets(self) -> list[str]:
        return ["testing"]  # the fake AWS secret key from the environment

    @pytest.fixture
    def provider_private(self, kms_key: dict[str, str]) -> list[str]:
        return [kms_key["arn"], kms_key["key_id"], kms_key["endpoint_url"]]


class TestMultiLocal(KeyProviderSuite):
    @pytest.fixture
    def provider(self, keyring: LocalKeyring, tmp_path: Path) -> KeyProvider:
        second = LocalKeyring(create_keyring(tmp_path / "break-glass.json"))
        return MultiKeyProvider(keyring, second)


class TestMultiVaultKms(KeyProviderSuite):
    @pytest.fixture
    def provider(self, vault_provider: KeyProvider, kms_provider: KeyProvider) -> KeyProvider:
        return MultiKeyProvider(vault_provider, kms_provider)

    @pytest.fixture
    def provider_secrets(self, vault_settings: dict[str, str]) -> list[str]:
        return [vault_settings["token"], "testing"]


class TestCachingLocal(KeyProviderSuite):
    @pytest.fixture
    def provider(self, keyring: LocalKeyring) -> KeyProvider:
        return CachingKeyProvider(keyring, max_uses=5)


class TestCachingMultiVaultKms(KeyProviderSuite):
    @pytest.fixture
    def provider(self, vault_provider: KeyProvider, kms_provider: KeyProvider) -> KeyProvider:
        return CachingKeyProvider(MultiKeyProvider(vault_provider, kms_provider))


# -- MultiKeyProvider specifics -----------------------------------------------------------------
def test_multi_writes_one_stanza_per_provider_and_opens_with_any(
    keyring: LocalKeyring, tmp_path: Path
) -> None:
    second = LocalKeyring(create_keyring(tmp_path / "second.json"))
    counted = [CountingKeyProvider(keyring), CountingKeyProvider(second)]
    multi = MultiKeyProvider(*counted)
    dk = as_materials(multi).new_data_key(10)
    assert [s.kind for s in dk.stanzas] == ["local", "local"]
    assert counted[0].calls["generate"] == 1 and counted[1].calls["wrap"] == 1
    for index in range(2):  # each stanza alone opens the key
        assert (
            as_materials(multi).open_data_key(dk.key_id, dk.stanzas[index : index + 1])
            == dk.plaintext
        )
    assert MultiKeyProvider(counted[1]).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext


def test_multi_flattens_and_refuses_a_cache_inside(keyring: LocalKeyring) -> None:
    from sealed_results.errors import ConfigError

    inner = MultiKeyProvider(keyring, keyring)
    assert MultiKeyProvider(inner, keyring).providers() == (keyring, keyring, keyring)
    with pytest.raises(ConfigError):
        MultiKeyProvider(CachingKeyProvider(keyring), keyring)
    # Key materials compose providers; they have no wrap/unwrap primitives of their own.
    assert not hasattr(inner, "unwrap_data_key") and not hasattr(inner, "kind")


def test_multi_rotate_rotates_every_provider_and_reports_failures(
    keyring: LocalKeyring, tmp_path: Path
) -> None:
    second = LocalKeyring(create_keyring(tmp_path / "second.json"))
    MultiKeyProvider(keyring, second).rotate()
    assert keyring.describe()["primary_version"] == 2 and second.describe()["primary_version"] == 2
    (tmp_path / "second.json").unlink()
    with pytest.raises(KeyProviderError, match="1 of 2"):
        MultiKeyProvider(keyring, second).rotate()
    assert keyring.describe()["primary_version"] == 3  # the reachable one still rotated


# -- handlers end to end ---------------------------------------------------------------------------
def roundtrip(root: Path, provider: Any) -> tuple[LocalHandler, str]:
    handler = LocalHandler(root=str(root), keyprovider=provider)
    token = handler.write(VALUE)
    assert handler.read(token) == VALUE
    return handler, token


def test_local_handler_with_vault(local_root: Path, vault_provider: KeyProvider) -> None:
    roundtrip(local_root, vault_provider)


def test_local_handler_with_kms(local_root: Path, kms_provider: KeyProvider) -> None:
    roundtrip(local_root, kms_provider)


def test_local_handler_with_vault_and_kms_reads_through_kms_when_vault_is_gone(
    local_root: Path,
    vault_settings: dict[str, str],
    kms_provider: KeyProvider,
    leak_scan: Any,
) -> None:
    from sealed_results.keyproviders.vault import VaultTransit

    vault = VaultTransit(key=vault_settings["key"], base_delay=0.01)
    _, token = roundtrip(local_root, [vault, kms_provider])
    closed = f"http://127.0.0.1:{_free_port()}"
    leak_scan.add_secret(closed)
    gone = VaultTransit(url=closed, key=vault_settings["key"], attempts=2, base_delay=0.01)
    # A new handler (no cached token keys): the keyset and the result both open through KMS.
    reader = LocalHandler(root=str(local_root), keyprovider=[gone, kms_provider])
    assert reader.read(token) == VALUE
    only_vault = LocalHandler(root=str(local_root), keyprovider=gone)
    with pytest.raises(KeyProviderError, match="unreachable"):
        only_vault.read(token)
