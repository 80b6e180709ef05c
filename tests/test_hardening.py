"""The hardening issue's findings on the handler side, each as a test that failed before the fix:
concurrent token-key rotations in real processes, readers following a rotation done by another
process, a lost keyset, junk key sections, secret options spelled in other cases, and
formatted tracebacks that name nothing."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import pytest

from sealed_results.errors import IntegrityError, KeysetMissing, SealedResultsError
from sealed_results.format import BlobHeader, Stanza, encode_stanzas, read_header
from sealed_results.handlers import LocalHandler, S3Handler
from sealed_results.handlers.keyset import KEYSET_NAME
from sealed_results.keyproviders.local import LocalKeyring
from sealed_results.options import split_options
from sealed_results.testing import CountingKeyProvider

REPO = Path(__file__).resolve().parent.parent


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


ROTATOR = """
    import sys
    from sealed_results.handlers import LocalHandler
    from sealed_results.keyproviders.local import LocalKeyring
    root, keyring, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tokens = []
    for i in range(count):
        h = LocalHandler(root, LocalKeyring(keyring))
        h.rotate_token_keys()
        tokens.append(h.write(f"{root}-{i}-{sys.argv[4]}"))
    print("\\n".join(tokens))
"""


def test_concurrent_rotations_in_processes_keep_every_key(
    local_root: Path, keyring: LocalKeyring
) -> None:
    handler = LocalHandler(str(local_root), keyring)
    first = handler.write("before")
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(ROTATOR),
                str(local_root),
                str(keyring.settings()["path"]),
                "15",
                tag,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for tag in ("a", "b")
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err[-2000:] for _, err in outputs]
    tokens = [t for out, _ in outputs for t in out.split()]
    assert len(tokens) == 30
    fresh = LocalHandler(str(local_root), keyring)
    assert fresh.open_keyset() == 31  # the first key and 30 rotations: none lost
    assert fresh.read(first) == "before"
    for token in tokens:
        assert fresh.read(token).startswith(str(local_root))


def test_a_running_reader_follows_a_rotation_done_by_another_process(
    local_root: Path, keyring: LocalKeyring
) -> None:
    reader = LocalHandler(str(local_root), keyring)
    assert reader.read(reader.write("warm")) == "warm"  # token keys now cached here
    time.sleep(LocalHandler.RELOAD_INTERVAL)
    result = run_python(ROTATOR, str(local_root), str(keyring.settings()["path"]), "1", "x")
    assert result.returncode == 0, result.stderr[-2000:]
    assert reader.read(result.stdout.strip()) == f"{local_root}-0-x"
    # New tokens of this process are sealed with the newest key too.
    assert LocalHandler(str(local_root), keyring).read(reader.write("after")) == "after"


def test_garbage_tokens_reload_the_keyset_at_most_once_per_interval(
    local_root: Path, keyring: LocalKeyring
) -> None:
    handler = LocalHandler(str(local_root), keyring)
    token = handler.write("x")
    bad = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    reads: list[str] = []
    store = handler.store
    original = store.get_versioned

    def counting(name: str, **kw: object) -> object:
        reads.append(name)
        return original(name, **kw)  # type: ignore[arg-type]

    store.get_versioned = counting  # type: ignore[method-assign]  # counts, changes nothing
    for _ in range(50):
        with pytest.raises(IntegrityError):
            handler.read(bad)
    assert reads.count(KEYSET_NAME) <= 1


def test_a_lost_keyset_is_an_error_that_names_the_way_out(
    local_root: Path, keyring: LocalKeyring
) -> None:
    handler = LocalHandler(str(local_root), keyring)
    token = handler.write("kept")
    (local_root / KEYSET_NAME).unlink()
    fresh = LocalHandler(str(local_root), keyring)
    with pytest.raises(KeysetMissing, match="restore"):
        fresh.write("new")
    with pytest.raises(KeysetMissing):
        fresh.read(token)
    assert not (local_root / KEYSET_NAME).exists()  # nothing silently recreated
    # An empty root still gets its keyset on first use.
    empty = LocalHandler(str(local_root / "elsewhere"), keyring)
    assert empty.read(empty.write(1)) == 1


def test_junk_key_sections_cost_a_bounded_number_of_provider_calls(
    local_root: Path, keyring: LocalKeyring
) -> None:
    counted = CountingKeyProvider(keyring)
    handler = LocalHandler(str(local_root), counted)
    token = handler.write("value")
    name = next(handler.list_objects())
    path = local_root / name
    blob = path.read_bytes()
    source = io.BytesIO(blob)
    header = read_header(source)
    junk = tuple(Stanza("local", os.urandom(len(header.stanzas[0].wrapped))) for _ in range(15))
    forged: BlobHeader = header.with_stanzas((*junk, *header.stanzas))
    path.write_bytes(forged.fixed + encode_stanzas(forged.stanzas) + blob[source.tell() :])
    counted.calls.clear()
    with pytest.raises(IntegrityError):
        handler.read(token)
    assert counted.calls["unwrap"] <= 2


def test_camel_case_and_kebab_case_credentials_never_travel_in_pickles() -> None:
    options = {
        "endpoint_url": "http://127.0.0.1:9",
        "s3_additional_kwargs": {
            "SSECustomerKey": "sse-c-key-value-1234",
            "ServerSideEncryption": "AES256",
        },
        "client_kwargs": {"Authorization": "Bearer token-value-5678"},
        "Secret-Access-Key": "kebab-secret-9012",
    }
    travels, stays = split_options(options)
    text = repr(travels)
    for secret in ("sse-c-key-value-1234", "token-value-5678", "kebab-secret-9012"):
        assert secret not in text
    assert travels["s3_additional_kwargs"] == {"ServerSideEncryption": "AES256"}
    assert set(stays) == {"s3_additional_kwargs", "client_kwargs", "Secret-Access-Key"}


def test_pickled_s3_handler_carries_no_camel_case_secret(keyring: LocalKeyring) -> None:
    handler = S3Handler(
        "s3://bucket-name-abc/prefix",
        keyring,
        storage_options={"s3_additional_kwargs": {"SSECustomerKey": "sse-c-key-value-1234"}},
    )
    assert b"sse-c-key-value-1234" not in pickle.dumps(handler)


def test_formatted_tracebacks_name_nothing(local_root: Path, keyring: LocalKeyring) -> None:
    handler = LocalHandler(str(local_root), keyring)
    token = handler.write("value")
    name = next(handler.list_objects())
    (local_root / name).unlink()
    (local_root / "file").write_bytes(b"")  # a root that is a file: writing there fails
    failures: list[BaseException] = []
    for attempt in (
        lambda: handler.read(token),
        lambda: handler.open(token),
        lambda: handler.delete(token),
        lambda: handler.read_header(name),
        lambda: LocalHandler(str(local_root / "file"), keyring).write("x"),
    ):
        try:
            attempt()
        except SealedResultsError as exc:
            failures.append(exc)
    assert len(failures) == 5
    for exc in failures:
        text = "".join(traceback.format_exception(exc))
        assert str(local_root) not in text
        assert name not in text


def test_reads_are_bounded_before_anything_is_read(local_root: Path, keyring: LocalKeyring) -> None:
    handler = LocalHandler(str(local_root), keyring, max_result_size=1 << 20)
    token = handler.write(os.urandom(1000))
    path = local_root / next(handler.list_objects())
    os.truncate(path, 64 << 30)  # a sparse 64 GiB object under the token's name
    started = time.monotonic()
    with pytest.raises(IntegrityError):
        handler.read(token)
    assert time.monotonic() - started < 5
    with pytest.raises(IntegrityError):
        LocalHandler(str(local_root), keyring).read(token)  # over the default 16 GiB too
    # Under the bound, a planted object fails authentication on its first segment, before its
    # length is trusted to size any buffer.
    os.truncate(path, 2 << 30)
    started = time.monotonic()
    with pytest.raises(IntegrityError):
        LocalHandler(str(local_root), keyring).read(token)
    assert time.monotonic() - started < 5
