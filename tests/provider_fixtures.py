"""Fixtures for real key providers: a fresh Transit key on OpenBao, a fresh KMS key on moto."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sealed_results.keyproviders.base import KeyProvider
from tests.servers import MotoServer, OpenBaoServer, enable_transit


@pytest.fixture
def vault_settings(
    openbao_server: OpenBaoServer, monkeypatch: pytest.MonkeyPatch, leak_scan: Any
) -> dict[str, str]:
    """Address and token in the environment (so unpickled copies find them), a fresh key."""
    hvac = pytest.importorskip("hvac")
    enable_transit(openbao_server)
    root = hvac.Client(url=openbao_server.url, token=openbao_server.token)
    token = root.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
    key = f"results-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("VAULT_ADDR", openbao_server.url)
    monkeypatch.setenv("VAULT_TOKEN", token)
    monkeypatch.delenv("VAULT_NAMESPACE", raising=False)
    leak_scan.add_secret(openbao_server.url, token, key)
    return {"url": openbao_server.url, "token": token, "key": key}


@pytest.fixture
def vault_provider(vault_settings: dict[str, str]) -> KeyProvider:
    from sealed_results.keyproviders.vault import VaultTransit

    return VaultTransit(key=vault_settings["key"], base_delay=0.05)


@pytest.fixture
def kms_key(moto_server: MotoServer, leak_scan: Any) -> dict[str, str]:
    boto3 = pytest.importorskip("boto3")
    client = boto3.client("kms", endpoint_url=moto_server.endpoint_url)
    meta = client.create_key()["KeyMetadata"]
    leak_scan.add_secret(moto_server.endpoint_url, meta["KeyId"], meta["Arn"])
    return {"arn": meta["Arn"], "key_id": meta["KeyId"], "endpoint_url": moto_server.endpoint_url}


@pytest.fixture
def kms_provider(kms_key: dict[str, str]) -> KeyProvider:
    from sealed_results.keyproviders.kms import AwsKms

    return AwsKms(kms_key["arn"], endpoint_url=kms_key["endpoint_url"])
