"""Every cloud store with every key provider, end to end on the real local servers.

The conformance suites test stores and providers one axis at a time; this checks that any
store works with any provider (and with several at once), including streaming and a fresh
handler reading what another wrote.
"""

from __future__ import annotations

import io
import os
from typing import Any

import pytest

from sealed_results.handlers.base import ResultHandler
from sealed_results.keyproviders.base import KeyProvider
from tests.conftest import PLAINTEXT_MARKER

STORES = {
    "s3": ("s3_root", "sealed_results.handlers", "S3Handler"),
    "gcs": ("gcs_root", "sealed_results.handlers", "GCSHandler"),
    "azure": ("azure_root", "sealed_results.handlers", "AzureBlobHandler"),
}
PROVIDERS = ["keyring", "vault_provider", "kms_provider", "vault+kms"]


def _provider(request: pytest.FixtureRequest, name: str) -> KeyProvider | list[KeyProvider]:
    if name == "vault+kms":
        return [request.getfixturevalue("vault_provider"), request.getfixturevalue("kms_provider")]
    provider: KeyProvider = request.getfixturevalue(name)
    return provider


@pytest.mark.parametrize("provider_name", PROVIDERS)
@pytest.mark.parametrize("store", sorted(STORES))
def test_store_with_provider(
    request: pytest.FixtureRequest, store: str, provider_name: str
) -> None:
    import importlib

    # Providers first: the stores' fresh buckets must outlive any server-side setup.
    provider = _provider(request, provider_name)
    fixture, module, cls_name = STORES[store]
    root, options = request.getfixturevalue(fixture)
    cls: Any = getattr(importlib.import_module(module), cls_name)

    def make() -> ResultHandler:
        handler: ResultHandler = cls(
            root=root, keyprovider=provider, storage_options=options, segment_size=1 << 16
        )
        return handler

    writer = make()
    value = {"marker": PLAINTEXT_MARKER, "rows": list(range(50))}
    token = writer.write(value)
    payload = os.urandom(3 * (1 << 16) + 17)
    stream_token = writer.write_stream(io.BytesIO(payload))

    reader = make()  # a fresh handler: token keys come from the store, keys from the provider
    assert reader.read(token) == value
    with reader.open(stream_token) as stream:
        assert stream.read() == payload
    reader.delete(token)
    assert not reader.exists(token)
