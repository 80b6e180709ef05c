"""Handler-level checks of the cloud handlers, on the real local servers of tests/servers.py.

What neither the shared HandlerSuite nor the store tests (tests/test_stores.py: missing buckets,
refused access, retries, multipart leftovers, credentials_from_env, pickled stores in another
process) say: a pickled handler, keyring and all, reads a token and writes in another process
with credentials only from the environment; the storage-option rules that decide what may be
pickled; and handlers built by plugin name.
"""

from __future__ import annotations

import pickle
import uuid
from typing import Any

import pytest

import sealed_results
from sealed_results.keyproviders.local import LocalKeyring
from sealed_results.options import split_options
from sealed_results.testing import leakscan
from tests.conftest import PLAINTEXT_MARKER
from tests.handler_suite import child_process, isolated_env, run_child
from tests.servers import AZURITE_KEY

# -- credentials across processes ----------------------------------------------------------------
CHILD = r"""
import json, pickle, sys
handler = pickle.loads(sys.stdin.buffer.read())
print(json.dumps({"value": handler.read(sys.argv[1]), "token": handler.write("from the child")}))
"""


@pytest.mark.parametrize("kind", ["s3", "azure", "gcs"])
def test_pickled_handler_reconnects_in_another_process(
    kind: str, request: pytest.FixtureRequest, keyring: LocalKeyring
) -> None:
    from sealed_results.handlers import AzureBlobHandler, GCSHandler, S3Handler

    root, options = request.getfixturevalue(f"{kind}_root")
    env = isolated_env()
    mapping: dict[str, str] = {}
    secrets: list[str] = []
    if kind == "s3":
        key, secret = f"AKIA{uuid.uuid4().hex[:16].upper()}", f"sr-secret-{uuid.uuid4().hex}"
        options = {**options, "key": key, "secret": secret}
        mapping = {"key": "SR_TEST_S3_KEY", "secret": "SR_TEST_S3_SECRET"}
        env |= {"SR_TEST_S3_KEY": key, "SR_TEST_S3_SECRET": secret}
        secrets = [key, secret]
    elif kind == "azure":
        mapping = {"connection_string": "SR_TEST_AZURE_CONNECTION_STRING"}
        env["SR_TEST_AZURE_CONNECTION_STRING"] = options["connection_string"]
        secrets = [AZURITE_KEY, options["connection_string"]]
    cls = {"s3": S3Handler, "azure": AzureBlobHandler, "gcs": GCSHandler}[kind]
    h = cls(root, keyring, storage_options=options, credentials_from_env=mapping)
    token = h.write({"from": "the parent", "marker": PLAINTEXT_MARKER})
    blob = pickle.dumps(h)
    for secret in secrets:
        assert secret.encode() not in blob
    report = run_child(CHILD, h, token, env=env)
    assert report["value"] == {"from": "the parent", "marker": PLAINTEXT_MARKER}
    assert h.read(report["token"]) == "from the child"
    if mapping:  # without the variables the copy refuses, naming the variable only
        bare = {k: v for k, v in env.items() if not k.startswith("SR_TEST_")}
        failed = child_process(CHILD, h, token, env=bare)
        assert failed.returncode != 0
        stderr = failed.stderr.decode(errors="replace")
        assert "ConfigError" in stderr and next(iter(mapping.values())) in stderr
        for secret in secrets:
            assert secret not in stderr


# -- options and construction (no server) --------------------------------------------------------
def test_split_options_keeps_secrets_and_live_objects_out_of_pickles() -> None:
    session = object()
    travels, stays = split_options(
        {
            "endpoint_url": "http://127.0.0.1:1",
            "key": "AKIA",
            "secret": "s",
            "token": "anon",
            "profile": "dev",
            "client_kwargs": {"region_name": "eu-west-1", "aws_session_token": "t"},
            "config_kwargs": {"retries": {"max_attempts": 3}},
            "account_key": "k",
            "connection_string": "c",
            "sas_token": "t",
            "credential": session,
            "session": session,
            "blocksize": 1,
        }
    )
    assert travels == {
        "endpoint_url": "http://127.0.0.1:1",
        "token": "anon",
        "profile": "dev",
        "client_kwargs": {"region_name": "eu-west-1"},
        "config_kwargs": {"retries": {"max_attempts": 3}},
        "blocksize": 1,
    }
    assert set(stays) == {
        "key", "secret", "client_kwargs", "account_key", "connection_string", "sas_token",
        "credential", "session",
    }  # fmt: skip
    assert split_options({"token": {"client_secret": "x"}})[0] == {}
    assert split_options({"token": "/path/to/service-account.json"})[0] == {}


def test_built_by_plugin_name(s3_root: tuple[str, dict[str, Any]], keyring: LocalKeyring) -> None:
    root, options = s3_root
    h = sealed_results.handler("s3", root=root, keyprovider=keyring, storage_options=options)
    assert type(h).__name__ == "S3Handler"
    assert h.read(h.write("by name")) == "by name"
    leakscan.SCAN.add_secret(root)
