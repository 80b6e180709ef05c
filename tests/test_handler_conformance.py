"""The shared HandlerSuite, run unchanged against every store: local disk, fsspec memory, S3
(moto), Azure Blob (Azurite) and GCS (fake-gcs-server).

The server fixtures come from the ``tests.servers`` plugin (loaded by tests/conftest.py), the
keyring from conftest's ``keyring`` fixture (a LocalKeyring on a fresh keyring file).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from sealed_results.handlers import LocalHandler, MemoryHandler
from sealed_results.keyproviders.local import LocalKeyring
from tests.handler_suite import HandlerSuite, Store
from tests.servers import AZURITE_KEY

# Read by the Azure handler (and its pickled copies) through credentials_from_env.
AZURE_ENV = "SR_TEST_AZURE_CONNECTION_STRING"


class TestLocalHandler(HandlerSuite):
    @pytest.fixture
    def store(self, tmp_path: Path, keyring: LocalKeyring, keyring_path: Path) -> Store:
        return Store(LocalHandler, str(tmp_path / "results"), {}, keyring, keyring_path)


class TestMemoryHandler(HandlerSuite):
    @pytest.fixture
    def store(self, keyring: LocalKeyring, keyring_path: Path) -> Store:
        root = f"memory://{uuid.uuid4().hex}/results"
        return Store(MemoryHandler, root, {}, keyring, keyring_path)


class TestS3Handler(HandlerSuite):
    @pytest.fixture
    def store(
        self, s3_root: tuple[str, dict[str, Any]], keyring: LocalKeyring, keyring_path: Path
    ) -> Store:
        from sealed_results.handlers import S3Handler

        root, options = s3_root
        # Distinctive explicit credentials (moto takes any): they must not be pickled, and
        # copies find credentials on the AWS chain instead (moto_server sets AWS_* fakes).
        key, secret = f"AKIA{uuid.uuid4().hex[:16].upper()}", f"sr-secret-{uuid.uuid4().hex}"
        options = {**options, "key": key, "secret": secret}
        return Store(
            S3Handler,
            root,
            options,
            keyring,
            keyring_path,
            secrets=[key, secret],
            racy_server=(
                "moto checks If-None-Match and then stores, without a lock, so two racing "
                "creates can both succeed there; S3 itself decides atomically"
            ),
        )


class TestAzureBlobHandler(HandlerSuite):
    @pytest.fixture
    def store(
        self,
        azure_root: tuple[str, dict[str, Any]],
        keyring: LocalKeyring,
        keyring_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> Store:
        from sealed_results.handlers import AzureBlobHandler

        root, options = azure_root
        monkeypatch.setenv(AZURE_ENV, options["connection_string"])
        return Store(
            AzureBlobHandler,
            root,
            options,
            keyring,
            keyring_path,
            handler_options={"credentials_from_env": {"connection_string": AZURE_ENV}},
            secrets=[AZURITE_KEY, "AccountKey"],
        )


class TestGCSHandler(HandlerSuite):
    @pytest.fixture
    def store(
        self, gcs_root: tuple[str, dict[str, Any]], keyring: LocalKeyring, keyring_path: Path
    ) -> Store:
        from sealed_results.handlers import GCSHandler

        root, options = gcs_root
        return Store(GCSHandler, root, options, keyring, keyring_path)
