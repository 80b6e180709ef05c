"""Store-specific checks of the cloud handlers, on the real local servers of tests/servers.py.

What the shared HandlerSuite cannot say about one store: missing buckets and refused access as
our StorageError, what retries where (a fault-injecting HTTP proxy in front of the real server
fails chosen requests), multipart uploads left behind, credentials across processes, and the
storage-option rules that decide what may be pickled.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import sealed_results
from sealed_results.errors import ConfigError, StorageError
from sealed_results.keyproviders.local import LocalKeyring
from sealed_results.options import split_options
from sealed_results.retry import RetryPolicy
from sealed_results.testing import leakscan
from tests.conftest import PLAINTEXT_MARKER
from tests.fault_proxy import Fault, FaultProxy, gcs_error, s3_error
from tests.handler_suite import REPO_ROOT, MiB, PatternSource
from tests.servers import AZURITE_KEY, GCSServer, MotoServer

QUICK = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def s3_proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_server.endpoint_url)
    yield proxy
    proxy.close()


@pytest.fixture
def gcs_proxy(gcs_server: GCSServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(gcs_server.endpoint_url)
    yield proxy
    proxy.close()


def s3_handler(root: str, keyring: LocalKeyring, endpoint: str, **options: Any) -> Any:
    from sealed_results.handlers import S3Handler

    storage = {
        "endpoint_url": endpoint,
        # botocore: 2 attempts per request, so that the counts below are easy to read.
        # ("max_attempts" would mean 2 retries, i.e. 3 attempts.)
        "config_kwargs": {"retries": {"mode": "standard", "total_max_attempts": 2}},
    }
    return S3Handler(root, keyring, storage_options=storage, **options)


def assert_ours(error: pytest.ExceptionInfo[StorageError], *secrets: str) -> None:
    text = f"{error.value} {error.value!r}"
    for secret in secrets:
        assert secret not in text
    # The SDK's error stays reachable for local debugging, out of formatted tracebacks.
    assert error.value.__cause__ is None and error.value.__context__ is not None


# -- what retries where -------------------------------------------------------------------------
def test_s3_transient_errors_are_retried_by_botocore_then_by_us(
    s3_root: tuple[str, dict[str, Any]], s3_proxy: FaultProxy, keyring: LocalKeyring
) -> None:
    root, _ = s3_root
    h = s3_handler(root, keyring, s3_proxy.url, retry=QUICK)
    token = h.write(PLAINTEXT_MARKER)
    # Three 503s outlast botocore's two attempts once; our second attempt gets through.
    s3_proxy.log.clear()
    s3_proxy.fail(*[s3_error("ServiceUnavailable", 503)] * 3)
    assert h.read(token) == PLAINTEXT_MARKER
    assert s3_proxy.count(503) == 3
    # An outage that does not end: exactly 2 (botocore) x 2 (ours) requests, then our error.
    s3_proxy.log.clear()
    s3_proxy.fail(*[s3_error("ServiceUnavailable", 503)] * 50)
    with pytest.raises(StorageError, match="transient") as error:
        h.read(token)
    s3_proxy.faults.clear()
    assert_ours(error, root.split("/")[2])
    assert s3_proxy.count() == 2 * 2


def test_s3_dropped_connection_is_retried(
    s3_root: tuple[str, dict[str, Any]], s3_proxy: FaultProxy, keyring: LocalKeyring
) -> None:
    root, _ = s3_root
    h = s3_handler(root, keyring, s3_proxy.url, retry=RetryPolicy(attempts=1))
    token = h.write("value")
    s3_proxy.fail(Fault(None))
    assert h.read(token) == "value"  # botocore reconnects; our layer was not needed


def test_s3_failed_part_is_retried_without_replaying_the_stream(
    s3_root: tuple[str, dict[str, Any]], s3_proxy: FaultProxy, keyring: LocalKeyring
) -> None:
    root, _ = s3_root
    h = s3_handler(root, keyring, s3_proxy.url)
    h.write("connect")
    s3_proxy.fail(
        Fault(
            500, b"<Error><Code>InternalError</Code></Error>", when=lambda m, p: "partNumber=2" in p
        )
    )
    source = PatternSource(20 * MiB)
    token = h.write_stream(source)
    assert s3_proxy.count(500) == 1
    with h.open(token) as stream:
        assert len(stream.read()) == 20 * MiB


def test_s3_access_denied_is_permanent(
    s3_root: tuple[str, dict[str, Any]], s3_proxy: FaultProxy, keyring: LocalKeyring
) -> None:
    root, _ = s3_root
    h = s3_handler(root, keyring, s3_proxy.url, retry=QUICK)
    token = h.write("value")
    s3_proxy.log.clear()
    s3_proxy.fail(s3_error("AccessDenied", 403))
    with pytest.raises(StorageError, match="denied") as error:
        h.read(token)
    assert s3_proxy.count() == 1  # nobody retried it
    assert_ours(error, root.split("/")[2])


def test_gcs_transient_error_is_retried_and_forbidden_is_not(
    gcs_root: tuple[str, dict[str, Any]], gcs_proxy: FaultProxy, keyring: LocalKeyring
) -> None:
    from sealed_results.handlers import GCSHandler

    root, options = gcs_root
    h = GCSHandler(root, keyring, storage_options={**options, "endpoint_url": gcs_proxy.url})
    token = h.write("value")
    gcs_proxy.log.clear()
    gcs_proxy.fail(gcs_error(503))
    assert h.read(token) == "value"  # gcsfs retried after about a second
    assert gcs_proxy.count(503) == 1
    gcs_proxy.log.clear()
    gcs_proxy.fail(gcs_error(403))
    with pytest.raises(StorageError, match="denied") as error:
        h.read(token)
    assert gcs_proxy.count() == 1
    assert_ours(error, root.split("/")[2])


def test_azure_wrong_key_is_denied_at_once(
    azure_root: tuple[str, dict[str, Any]], keyring: LocalKeyring
) -> None:
    from sealed_results.handlers import AzureBlobHandler

    root, options = azure_root
    wrong = options["connection_string"].replace(AZURITE_KEY, "A" * 86 + "==")
    h = AzureBlobHandler(root, keyring, storage_options={"connection_string": wrong})
    with pytest.raises(StorageError, match="denied") as error:
        h.write("value")
    assert_ours(error, root.split("/")[2], AZURITE_KEY)


# -- missing buckets -----------------------------------------------------------------------------
def _drop_container(kind: str, server: Any, root: str, options: dict[str, Any]) -> None:
    import fsspec

    container = root.split("/")[2]
    fs = fsspec.filesystem(root.split(":")[0], skip_instance_cache=True, **options)
    fs.rm(f"{container}/results", recursive=True)
    if kind == "s3":
        fs.call_s3("delete_bucket", Bucket=container)
    elif kind == "azure":
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(server.connection_string) as client:
            client.delete_container(container)
    else:
        fs.call("DELETE", "b/{}", container)


@pytest.mark.parametrize("kind", ["s3", "azure", "gcs"])
def test_missing_bucket_is_a_storage_error(
    kind: str, request: pytest.FixtureRequest, keyring: LocalKeyring
) -> None:
    from sealed_results.handlers import AzureBlobHandler, GCSHandler, S3Handler

    cls = {"s3": S3Handler, "azure": AzureBlobHandler, "gcs": GCSHandler}[kind]
    server = request.getfixturevalue(
        {"s3": "moto_server", "azure": "azurite_server"}.get(kind, "gcs_server")
    )
    root, options = request.getfixturevalue(f"{kind}_root")
    h = cls(root, keyring, storage_options=options)
    token = h.write("value")
    _drop_container(kind, server, root, options)
    bucket = root.split("/")[2]
    for operation in (h.read, h.exists, h.delete, h.open):
        with pytest.raises(StorageError, match="does not exist") as error:
            operation(token)
        assert_ours(error, bucket)
    with pytest.raises(StorageError, match="does not exist"):
        h.write("more")
    with pytest.raises(StorageError, match="does not exist"):
        cls(root, keyring, storage_options=options).write("on a fresh handler")


# -- leftovers -----------------------------------------------------------------------------------
def test_s3_leaves_no_multipart_upload_behind(
    s3_root: tuple[str, dict[str, Any]], keyring: LocalKeyring
) -> None:
    import boto3

    from sealed_results.handlers import S3Handler

    root, options = s3_root
    h = S3Handler(root, keyring, storage_options=options)
    h.write("connect")
    with pytest.raises(OSError, match="the source broke"):
        h.write_stream(PatternSource(40 * MiB, fail_after=20 * MiB))
    name = uuid.uuid4().hex
    with h.store.create(name) as sink:
        sink.write(b"A" * 9 * MiB)
    with pytest.raises(FileExistsError), h.store.create(name) as sink:
        sink.write(b"B" * 9 * MiB)
    client = boto3.client("s3", endpoint_url=options["endpoint_url"])
    assert client.list_multipart_uploads(Bucket=root.split("/")[2]).get("Uploads", []) == []


# -- credentials across processes ----------------------------------------------------------------
CHILD = r"""
import json, pickle, sys
handler = pickle.loads(sys.stdin.buffer.read())
print(json.dumps({"value": handler.read(sys.argv[1]), "token": handler.write("from the child")}))
"""


def _child(handler: Any, token: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    env = {**env, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", CHILD, token],
        input=pickle.dumps(handler),
        capture_output=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )


def _base_env() -> dict[str, str]:
    # No ambient AWS or Azure credentials: the child has only what the test gives it.
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION", "AZURE_STORAGE"))
    } | {"AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull}


@pytest.mark.parametrize("kind", ["s3", "azure", "gcs"])
def test_pickled_handler_reconnects_in_another_process(
    kind: str, request: pytest.FixtureRequest, keyring: LocalKeyring
) -> None:
    from sealed_results.handlers import AzureBlobHandler, GCSHandler, S3Handler

    root, options = request.getfixturevalue(f"{kind}_root")
    env = _base_env()
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
    done = _child(h, token, env)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    report = json.loads(done.stdout.decode().splitlines()[-1])
    assert report["value"] == {"from": "the parent", "marker": PLAINTEXT_MARKER}
    assert h.read(report["token"]) == "from the child"
    if mapping:  # without the variables the copy refuses, naming the variable only
        bare = {k: v for k, v in env.items() if not k.startswith("SR_TEST_")}
        failed = _child(h, token, bare)
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


def test_credentials_from_env_names_a_missing_variable_only(keyring: LocalKeyring) -> None:
    from sealed_results.handlers import S3Handler

    h = S3Handler(
        "s3://bucket/prefix",
        keyring,
        credentials_from_env={"secret": "SR_TEST_UNSET_VARIABLE"},
    )
    with pytest.raises(ConfigError, match="SR_TEST_UNSET_VARIABLE"):
        h.write("value")


@pytest.mark.parametrize(
    ("cls_name", "good", "bad"),
    [
        ("S3Handler", "s3a://bucket/x", "gs://bucket/x"),
        ("GCSHandler", "gcs://bucket/x", "s3://bucket/x"),
        ("AzureBlobHandler", "abfss://container/x", "gs://bucket/x"),
    ],
)
def test_root_protocol_is_checked(
    cls_name: str, good: str, bad: str, keyring: LocalKeyring
) -> None:
    cls = getattr(sealed_results.handlers, cls_name)
    cls(good, keyring)
    with pytest.raises(ConfigError) as error:
        cls(bad, keyring)
    assert "bucket" not in str(error.value)


def test_built_by_plugin_name(s3_root: tuple[str, dict[str, Any]], keyring: LocalKeyring) -> None:
    root, options = s3_root
    h = sealed_results.handler("s3", root=root, keyprovider=keyring, storage_options=options)
    assert type(h).__name__ == "S3Handler"
    assert h.read(h.write("by name")) == "by name"
    leakscan.SCAN.add_secret(root)
