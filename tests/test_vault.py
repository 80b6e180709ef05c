"""VaultTransit against a real OpenBao dev server: auth, rotation, rewrap, refusals, binding."""

from __future__ import annotations

import base64
import contextlib
import os
import pickle
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

hvac = pytest.importorskip("hvac")

from sealed_results.errors import ConfigError, IntegrityError, KeyProviderError  # noqa: E402
from sealed_results.format import Stanza  # noqa: E402
from sealed_results.keyproviders import as_materials  # noqa: E402
from sealed_results.keyproviders.vault import (  # noqa: E402
    KEY_TYPE_UNCHECKED,
    AppRoleAuth,
    KubernetesAuth,
    TokenAuth,
    VaultTransit,
)
from tests.servers import (  # noqa: E402
    OpenBaoServer,
    ServerProcess,
    _find_bao,
    _free_port,
    _http_answers,
    enable_transit,
)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass
class Vault:
    url: str
    token: str  # a child of root with a random id, so the leak scan can look for it
    root: Any  # hvac client with the root token
    leak_scan: Any

    def key(self, **create: Any) -> str:
        """A fresh Transit key name; created now (non-derived unless asked) when ``create``."""
        name = f"results-{uuid.uuid4().hex[:12]}"
        self.leak_scan.add_secret(name)
        if create.get("key_type") == "aes128-gcm96":  # a type hvac's create_key does not list
            self.root.adapter.post(f"/v1/transit/keys/{name}", json={"type": "aes128-gcm96"})
        elif create:
            self.root.secrets.transit.create_key(name=name, **create)
        return name

    def token_with(self, policy_hcl: str, **options: Any) -> str:
        name = f"policy-{uuid.uuid4().hex[:8]}"
        self.root.sys.create_or_update_policy(name=name, policy=policy_hcl)
        token = self.root.auth.token.create(policies=[name], **options)["auth"]["client_token"]
        self.leak_scan.add_secret(token)
        return str(token)


@pytest.fixture
def vault(openbao_server: OpenBaoServer, monkeypatch: pytest.MonkeyPatch, leak_scan: Any) -> Vault:
    enable_transit(openbao_server)
    root = hvac.Client(url=openbao_server.url, token=openbao_server.token)
    token = root.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
    leak_scan.add_secret(openbao_server.url, token)
    for name in ("ADDR", "TOKEN", "NAMESPACE", "ROLE_ID", "SECRET_ID"):
        monkeypatch.delenv(f"VAULT_{name}", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.vault-token of the developer's
    return Vault(openbao_server.url, token, root, leak_scan)


def transit_policy(key: str, *ops: str) -> str:
    return "\n".join(f'path "transit/{op}/{key}" {{ capabilities = ["update"] }}' for op in ops)


def enable_approle(root: Any) -> None:
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        with contextlib.suppress(hvac.exceptions.InvalidRequest):  # enabled meanwhile
            root.sys.enable_auth_method("approle")


def approle_ids(vault: Vault, key: str, ttl: str = "1h") -> tuple[str, str]:
    enable_approle(vault.root)
    policy = f"policy-{uuid.uuid4().hex[:8]}"
    vault.root.sys.create_or_update_policy(
        name=policy, policy=transit_policy(key, "encrypt", "decrypt", "rewrap")
    )
    role = f"role-{uuid.uuid4().hex[:8]}"
    vault.root.auth.approle.create_or_update_approle(
        role, token_policies=[policy], token_ttl=ttl, token_max_ttl=ttl
    )
    role_id = vault.root.auth.approle.read_role_id(role)["data"]["role_id"]
    secret_id = vault.root.auth.approle.generate_secret_id(role)["data"]["secret_id"]
    vault.leak_scan.add_secret(role_id, secret_id)
    return role_id, secret_id


class CountingAppRole(AppRoleAuth):
    """AppRoleAuth that remembers the tokens it got; ``hide_ttl`` forces the 403 path."""

    def __init__(self, *args: Any, hide_ttl: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokens: list[str] = []
        self.hide_ttl = hide_ttl

    def login(self, client: Any) -> tuple[str, float | None]:
        token, ttl = super().login(client)
        self.tokens.append(token)
        return token, (None if self.hide_ttl else ttl)


# -- auth and environment -------------------------------------------------------------------------
def test_token_auth_from_explicit_arguments(vault: Vault) -> None:
    provider = VaultTransit(url=vault.url, key=vault.key(), token=vault.token)
    dk = as_materials(provider).new_data_key(10)
    assert dk.stanzas[0].kind == "vault"
    assert dk.stanzas[0].wrapped.startswith(b"\x01vault:v1:")
    assert as_materials(provider).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext


def test_environment_is_read_and_explicit_arguments_win(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = vault.key()
    monkeypatch.setenv("VAULT_ADDR", vault.url)
    monkeypatch.setenv("VAULT_TOKEN", vault.token)
    dk = as_materials(VaultTransit(key=key)).new_data_key(10)
    # Wrong values in the environment lose against explicit ones.
    monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("VAULT_TOKEN", "not-a-valid-token")
    explicit = VaultTransit(url=vault.url, key=key, token=vault.token)
    assert as_materials(explicit).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext


def test_token_file_is_used_like_the_vault_cli(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".vault-token").write_text(vault.token + "\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    provider = VaultTransit(url=vault.url, key=vault.key())
    dk = as_materials(provider).new_data_key(10)
    assert as_materials(provider).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext


def test_missing_or_unusable_address_or_token_is_a_config_error(vault: Vault) -> None:
    with pytest.raises(ConfigError, match="VAULT_ADDR"):
        as_materials(VaultTransit(key=vault.key(), token=vault.token)).new_data_key(1)
    with pytest.raises(ConfigError, match="VAULT_TOKEN"):
        as_materials(VaultTransit(url=vault.url, key=vault.key())).new_data_key(1)
    vault.leak_scan.add_secret("vault.internal:8200")
    with pytest.raises(ConfigError, match="address"):  # requests' ValueError names the URL
        as_materials(
            VaultTransit(url="vault.internal:8200", key="k", token=vault.token)
        ).new_data_key(1)


@pytest.mark.parametrize(
    "options",
    [
        {"key": None},
        {"key": "../sys/seal"},
        {"key": "k", "mount": "a//b"},
        {"key": "k", "auth": "ldap"},
        {"key": "k", "auth": "kubernetes"},  # no role
        {"key": "k", "auth": TokenAuth(), "token": "t"},
        {"key": "k", "auth": "approle", "token": "t"},
        {"key": "k", "attempts": 0},
    ],
)
def test_bad_settings_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        VaultTransit(url="http://127.0.0.1:1", **options)


def test_approle_login_from_environment(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    key = vault.key(key_type="aes256-gcm96")
    role_id, secret_id = approle_ids(vault, key)
    monkeypatch.setenv("VAULT_ROLE_ID", role_id)
    monkeypatch.setenv("VAULT_SECRET_ID", secret_id)
    provider = VaultTransit(url=vault.url, key=key, auth="approle")
    dk = as_materials(provider).new_data_key(10)
    assert as_materials(provider).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext
    assert as_materials(provider).open_data_key(
        dk.key_id, as_materials(provider).rewrap_stanzas(dk.key_id, dk.stanzas)
    )
    # The pickle carries neither the secret id nor the token; the copy logs in again.
    data = pickle.dumps(provider)
    assert provider._token is not None
    assert secret_id.encode() not in data and provider._token.encode() not in data
    assert as_materials(pickle.loads(data)).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext


def test_approle_auth_object_with_explicit_ids(vault: Vault) -> None:
    key = vault.key(key_type="aes256-gcm96")
    role_id, secret_id = approle_ids(vault, key)
    provider = VaultTransit(url=vault.url, key=key, auth=AppRoleAuth(role_id, secret_id))
    dk = as_materials(provider).new_data_key(10)
    assert as_materials(provider).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext
    assert secret_id.encode() not in pickle.dumps(provider)
    wrong = VaultTransit(url=vault.url, key=key, auth=AppRoleAuth(role_id, "wrong-secret-id"))
    with pytest.raises(KeyProviderError, match="log in"):
        as_materials(wrong).new_data_key(10)


def test_expired_approle_token_is_renewed_by_logging_in_again(vault: Vault) -> None:
    key = vault.key(key_type="aes256-gcm96")
    role_id, secret_id = approle_ids(vault, key, ttl="2s")
    ahead = CountingAppRole(role_id, secret_id)  # knows the TTL: logs in before expiry
    behind = CountingAppRole(role_id, secret_id, hide_ttl=True)  # finds out from the 403
    providers = [VaultTransit(url=vault.url, key=key, auth=a) for a in (ahead, behind)]
    keys = [as_materials(p).new_data_key(10) for p in providers]
    time.sleep(2.5)
    for provider, dk in zip(providers, keys, strict=True):
        assert as_materials(provider).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext
    assert len(ahead.tokens) == 2 and len(behind.tokens) == 2


def test_revoked_approle_token_gets_one_new_login(vault: Vault) -> None:
    key = vault.key(key_type="aes256-gcm96")
    auth = CountingAppRole(*approle_ids(vault, key))
    provider = VaultTransit(url=vault.url, key=key, auth=auth)
    dk = as_materials(provider).new_data_key(10)
    vault.root.auth.token.revoke(auth.tokens[-1])
    assert as_materials(provider).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext
    assert len(auth.tokens) == 2


def test_kubernetes_auth_arguments(vault: Vault, tmp_path: Path) -> None:
    # No Kubernetes here: only the argument handling and the failure paths are testable.
    assert KubernetesAuth("reader")._jwt_path == (
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )
    with pytest.raises(ConfigError):
        KubernetesAuth("")
    options = {"url": vault.url, "key": vault.key(), "auth": "kubernetes", "role": "reader"}
    missing = VaultTransit(**options, jwt_path=str(tmp_path / "x"))
    with pytest.raises(KeyProviderError, match="service-account token"):
        as_materials(missing).new_data_key(10)
    jwt = tmp_path / "token"
    jwt.write_text("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    no_mount = VaultTransit(**options, jwt_path=str(jwt))
    with pytest.raises(KeyProviderError, match="log in") as info:
        as_materials(no_mount).new_data_key(10)
    assert str(tmp_path) not in str(info.value)
    assert pickle.loads(pickle.dumps(no_mount))._auth._role == "reader"


def test_namespace_from_argument_and_environment(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = f"ns{uuid.uuid4().hex[:8]}"
    vault.root.adapter.post(f"/v1/sys/namespaces/{namespace}")
    scoped = hvac.Client(url=vault.url, token="root", namespace=namespace)
    scoped.sys.enable_secrets_engine("transit")
    key = vault.key()
    scoped.secrets.transit.create_key(name=key)
    vault.leak_scan.add_secret(namespace)

    provider = VaultTransit(url=vault.url, key=key, token="root", namespace=namespace)
    dk = as_materials(provider).new_data_key(10)
    monkeypatch.setenv("VAULT_NAMESPACE", namespace)
    from_env = VaultTransit(url=vault.url, key=key, token="root")
    assert as_materials(from_env).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext
    monkeypatch.delenv("VAULT_NAMESPACE")
    with pytest.raises(KeyProviderError) as info:  # the root namespace has no such key
        as_materials(VaultTransit(url=vault.url, key=key, token="root")).open_data_key(
            dk.key_id, dk.stanzas
        )
    assert namespace not in str(info.value)


# -- rotation and policy ----------------------------------------------------------------------
def test_rotate_and_rewrap_move_to_the_new_version(vault: Vault) -> None:
    key = vault.key()
    provider = VaultTransit(url=vault.url, key=key, token=vault.token)
    dk = as_materials(provider).new_data_key(10)
    provider.rotate()
    assert vault.root.secrets.transit.read_key(name=key)["data"]["latest_version"] == 2
    rewrapped = as_materials(provider).rewrap_stanzas(dk.key_id, dk.stanzas)
    assert rewrapped[0].wrapped.startswith(b"\x01vault:v2:")
    assert as_materials(provider).open_data_key(dk.key_id, rewrapped) == dk.plaintext
    assert as_materials(provider).new_data_key(10).stanzas[0].wrapped.startswith(b"\x01vault:v2:")


def test_min_decryption_version_is_a_policy_refusal(vault: Vault) -> None:
    key = vault.key()
    provider = VaultTransit(url=vault.url, key=key, token=vault.token)
    old = as_materials(provider).new_data_key(10)
    provider.rotate()
    vault.root.secrets.transit.update_key_configuration(name=key, min_decryption_version=2)
    for attempt in (as_materials(provider).open_data_key, as_materials(provider).rewrap_stanzas):
        with pytest.raises(KeyProviderError, match="min_decryption_version") as info:
            attempt(old.key_id, old.stanzas)
        assert not isinstance(info.value, IntegrityError)
    new = as_materials(provider).new_data_key(10)
    assert as_materials(provider).open_data_key(new.key_id, new.stanzas) == new.plaintext


def test_token_without_permission_is_a_provider_error(vault: Vault) -> None:
    key = vault.key()
    writer = VaultTransit(url=vault.url, key=key, token=vault.token)
    dk = as_materials(writer).new_data_key(10)
    encrypt_only = vault.token_with(transit_policy(key, "encrypt"))
    provider = VaultTransit(url=vault.url, key=key, token=encrypt_only)
    as_materials(provider).new_data_key(10)
    with pytest.raises(KeyProviderError, match="denied permission") as info:
        as_materials(provider).open_data_key(dk.key_id, dk.stanzas)
    # The SDK's error stays reachable for local debugging, outside the formatted traceback.
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert isinstance(info.value.__context__, hvac.exceptions.Forbidden)
    for secret in (vault.url, key, encrypt_only):
        assert secret not in str(info.value)


# -- identity binding and bad bytes -----------------------------------------------------------
def test_wrong_key_id_inside_the_plaintext(vault: Vault) -> None:
    key = vault.key(key_type="aes256-gcm96")  # not derived: Transit ignores context on this key
    provider = VaultTransit(url=vault.url, key=key, token=vault.token)
    key_id, other_id, data_key = os.urandom(16), os.urandom(16), os.urandom(32)
    forged = vault.root.secrets.transit.encrypt_data(
        name=key, plaintext=b64(other_id + data_key), context=b64(key_id)
    )["data"]["ciphertext"]
    stanzas = (Stanza("vault", b"\x01" + forged.encode()),)
    with pytest.raises(IntegrityError):
        as_materials(provider).open_data_key(key_id, stanzas)
    assert as_materials(provider).open_data_key(other_id, stanzas) == data_key


@pytest.mark.parametrize(
    "create",
    [
        {"key_type": "aes256-gcm96"},
        {"key_type": "aes128-gcm96"},
        {"key_type": "chacha20-poly1305"},
        {"key_type": "rsa-2048"},
        {"key_type": "aes256-gcm96", "derived": True},
        {"key_type": "aes256-gcm96", "derived": True, "convergent_encryption": True},
        {"key_type": "chacha20-poly1305", "derived": True},
    ],
    ids=["aes", "aes128", "chacha", "rsa", "derived", "convergent", "chacha-derived"],
)
def test_binding_survives_rewrap_on_every_key_type(vault: Vault, create: dict[str, Any]) -> None:
    provider = VaultTransit(url=vault.url, key=vault.key(**create), token=vault.token)
    if create["key_type"].startswith("rsa"):  # public-key: refused before any use
        with pytest.raises(KeyProviderError, match="not a symmetric encryption key"):
            as_materials(provider).new_data_key(10)
        return
    dk = as_materials(provider).new_data_key(10)
    provider.rotate()
    rewrapped = as_materials(provider).rewrap_stanzas(dk.key_id, dk.stanzas)
    assert as_materials(provider).open_data_key(dk.key_id, rewrapped) == dk.plaintext
    with pytest.raises(IntegrityError):
        as_materials(provider).open_data_key(os.urandom(16), rewrapped)
    assert provider.describe()["key_type"] == create["key_type"]


@pytest.mark.parametrize("key_type", ["rsa-2048", "rsa-4096", "ecdsa-p256", "ed25519"])
def test_public_key_transit_keys_are_refused(vault: Vault, key_type: str) -> None:
    """With a public-key type, anyone holding the public key can encrypt under it: a store
    writer could install wrapped data keys (and token keys) of their own choosing."""
    key = vault.key(key_type=key_type)
    provider = VaultTransit(url=vault.url, key=key, token=vault.token)
    key_id, data_key = os.urandom(16), os.urandom(32)
    stanzas: tuple[Stanza, ...] = ()
    if key_type.startswith("rsa"):  # a forgery made without Vault's private key
        forged = vault.root.secrets.transit.encrypt_data(
            name=key, plaintext=b64(key_id + data_key), context=b64(key_id)
        )["data"]["ciphertext"]
        stanzas = (Stanza("vault", b"\x01" + forged.encode()),)
    attempts = [
        lambda: as_materials(provider).new_data_key(10),
        provider.rotate,
        provider.describe,
    ]
    if stanzas:
        attempts.append(lambda: as_materials(provider).open_data_key(key_id, stanzas))
        attempts.append(lambda: as_materials(provider).rewrap_stanzas(key_id, stanzas))
    for attempt in attempts:
        with pytest.raises(KeyProviderError, match="not a symmetric encryption key") as info:
            attempt()
        assert key not in str(info.value) and key_type not in str(info.value)
    assert vault.root.secrets.transit.read_key(name=key)["data"]["latest_version"] == 1


def test_key_type_check_that_may_not_read_the_key_is_reported_not_fatal(vault: Vault) -> None:
    key = vault.key(key_type="aes256-gcm96")
    no_read = vault.token_with(transit_policy(key, "encrypt", "decrypt"))
    provider = VaultTransit(url=vault.url, key=key, token=no_read)
    dk = as_materials(provider).new_data_key(10)
    assert as_materials(provider).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext
    assert provider.describe()["key_type"] == KEY_TYPE_UNCHECKED
    assert key not in KEY_TYPE_UNCHECKED
    with_read = vault.token_with(
        transit_policy(key, "encrypt", "decrypt")
        + f'\npath "transit/keys/{key}" {{ capabilities = ["read"] }}'
    )
    readable = VaultTransit(url=vault.url, key=key, token=with_read)
    assert as_materials(readable).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext
    assert readable.describe()["key_type"] == "aes256-gcm96"


@pytest.mark.parametrize(
    "ciphertext",
    [b"garbage", b"vault:v1:AAAA", b"vault:v99:", b"vault:v1:!!!!", b"nope:v1:AAAA"],
)
def test_malformed_ciphertexts_are_integrity_errors(vault: Vault, ciphertext: bytes) -> None:
    provider = VaultTransit(url=vault.url, key=vault.key(), token=vault.token)
    dk = as_materials(provider).new_data_key(10)
    if ciphertext == b"vault:v99:":  # well formed, but a version this key never had
        ciphertext = dk.stanzas[0].wrapped[1:].replace(b"vault:v1:", b"vault:v99:")
    stanzas = (Stanza("vault", b"\x01" + ciphertext),)
    with pytest.raises(IntegrityError):
        as_materials(provider).open_data_key(dk.key_id, stanzas)


def test_foreign_key_ciphertext_is_an_integrity_error(vault: Vault) -> None:
    mine = VaultTransit(url=vault.url, key=vault.key(key_type="aes256-gcm96"), token=vault.token)
    theirs = VaultTransit(url=vault.url, key=vault.key(), token=vault.token)
    dk = as_materials(theirs).new_data_key(10)
    with pytest.raises(IntegrityError):
        as_materials(mine).open_data_key(dk.key_id, dk.stanzas)
    with pytest.raises(IntegrityError):
        as_materials(mine).rewrap_stanzas(dk.key_id, dk.stanzas)


def test_approle_ids_never_travel_in_pickles(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    key = vault.key(key_type="aes256-gcm96")
    role_id, secret_id = approle_ids(vault, key)
    for provider in (
        VaultTransit(url=vault.url, key=key, auth=AppRoleAuth(role_id, secret_id)),
        VaultTransit(url=vault.url, key=key, auth="approle", role_id=role_id, secret_id=secret_id),
    ):
        dk = as_materials(provider).new_data_key(10)
        data = pickle.dumps(provider)
        for secret in (role_id, secret_id, provider._token):
            assert secret is not None and secret.encode() not in data
        copy = pickle.loads(data)
        with pytest.raises(ConfigError, match="VAULT_ROLE_ID"):  # nothing to log in with
            as_materials(copy).open_data_key(dk.key_id, dk.stanzas)
        monkeypatch.setenv("VAULT_ROLE_ID", role_id)
        monkeypatch.setenv("VAULT_SECRET_ID", secret_id)
        copy = pickle.loads(data)
        assert as_materials(copy).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext
        monkeypatch.delenv("VAULT_ROLE_ID")
        monkeypatch.delenv("VAULT_SECRET_ID")


def test_key_that_cannot_encrypt_or_does_not_exist(vault: Vault) -> None:
    signing = VaultTransit(url=vault.url, key=vault.key(key_type="ecdsa-p256"), token=vault.token)
    with pytest.raises(KeyProviderError, match="encryption key"):
        as_materials(signing).new_data_key(10)
    dk = as_materials(VaultTransit(url=vault.url, key=vault.key(), token=vault.token)).new_data_key(
        10
    )
    missing = VaultTransit(url=vault.url, key=vault.key(), token=vault.token)
    with pytest.raises(KeyProviderError, match="missing"):
        as_materials(missing).open_data_key(dk.key_id, dk.stanzas)
    no_mount = VaultTransit(url=vault.url, key=vault.key(), mount="nothing-here", token=vault.token)
    with pytest.raises(KeyProviderError, match="mount"):
        as_materials(no_mount).new_data_key(10)


# -- availability ---------------------------------------------------------------------------
class CountingVault(VaultTransit):
    """Counts how often a transient failure was looked at (each one is one attempt)."""

    transient_seen = 0

    def _is_transient(self, exc: BaseException) -> bool:
        type(self).transient_seen += 1
        return super()._is_transient(exc)


def test_unreachable_vault_fails_after_bounded_retries(vault: Vault, leak_scan: Any) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    leak_scan.add_secret(url)
    CountingVault.transient_seen = 0
    provider = CountingVault(url=url, key="results", token=vault.token, attempts=3, base_delay=0.05)
    started = time.monotonic()
    with pytest.raises(KeyProviderError, match="unreachable") as info:
        as_materials(provider).new_data_key(10)
    assert time.monotonic() - started < 5
    assert CountingVault.transient_seen == 2  # attempts 1 and 2 retried, the 3rd is final
    assert url not in str(info.value) and info.value.__context__ is not None


def test_sealed_vault_fails_after_bounded_retries(tmp_path: Path, leak_scan: Any) -> None:
    binary = _find_bao()
    if binary is None:
        pytest.skip("bao not installed")
    port = _free_port(2)  # a server of its own: sealing the shared one would break the others
    url, token = f"http://127.0.0.1:{port}", f"sealed-{uuid.uuid4().hex[:8]}"
    leak_scan.add_secret(url, token)
    argv = [binary, "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}"]
    argv += [f"-dev-root-token-id={token}", "-dev-no-store-token"]
    server = ServerProcess("openbao-sealed", argv, tmp_path / "bao.log")
    try:
        server.wait_ready(lambda: _http_answers(f"{url}/v1/sys/health", lambda s: s == 200), 30)
        client = hvac.Client(url=url, token=token)
        client.sys.enable_secrets_engine("transit")
        provider = VaultTransit(url=url, key="results", token=token, base_delay=0.05)
        dk = as_materials(provider).new_data_key(10)
        client.sys.seal()
        with pytest.raises(KeyProviderError, match="sealed") as info:
            as_materials(provider).open_data_key(dk.key_id, dk.stanzas)
        assert isinstance(info.value.__context__, hvac.exceptions.VaultDown)
    finally:
        server.stop()


# -- formatted tracebacks ---------------------------------------------------------------------
def formatted(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))


def test_formatted_tracebacks_name_no_address_key_or_token(vault: Vault) -> None:
    """Orchestrators log and ship whole tracebacks: chained causes must not carry the hvac or
    requests error (which names the URL, the key's path and sometimes the token)."""
    port = _free_port()
    closed = f"http://127.0.0.1:{port}"
    key = vault.key(key_type="aes256-gcm96")
    written = as_materials(VaultTransit(url=vault.url, key=key, token=vault.token)).new_data_key(10)
    no_permission = vault.token_with(transit_policy(key, "encrypt"))
    cases = {
        "unreachable": (
            VaultTransit(url=closed, key=key, token=vault.token, attempts=2, base_delay=0.01),
            "unreachable",
        ),
        "forbidden": (VaultTransit(url=vault.url, key=key, token=no_permission), "denied"),
        "missing key": (VaultTransit(url=vault.url, key=vault.key(), token=vault.token), "missing"),
        "no mount": (
            VaultTransit(url=vault.url, key=key, mount="no-such-mount", token=vault.token),
            "mount",
        ),
    }
    secrets = [vault.url, closed, str(port), key, vault.token, no_permission, "127.0.0.1"]
    secrets += [c[0]._key for c in cases.values()]
    for name, (provider, message) in cases.items():
        with pytest.raises(KeyProviderError, match=message) as info:
            as_materials(provider).open_data_key(written.key_id, written.stanzas)
        text = formatted(info.value)
        for secret in secrets:
            assert secret not in text, name
        assert info.value.__context__ is not None, name  # still there for local debugging


def test_doctor_warns_when_the_key_type_cannot_be_checked(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sealed_results.cli.doctor import WARN, run_doctor

    key = vault.key(key_type="aes256-gcm96")
    monkeypatch.setenv("VAULT_TOKEN", vault.token_with(transit_policy(key, "encrypt", "decrypt")))
    config = tmp_path / "sealed-results.toml"
    config.write_text(
        f"""
[profiles.p]
handler = "local"
root = "{tmp_path / "results"}"
keyprovider = "vault"
keyprovider_options = {{ url = "{vault.url}", key = "{key}" }}
"""
    )
    report = run_doctor("p", path=config)
    assert report.ok and report.warnings == 1
    [check] = [c for c in report.checks if c.step == "keyprovider"]
    assert check.status == WARN and "grant read" in check.detail
    assert key not in check.detail and vault.url not in check.detail
