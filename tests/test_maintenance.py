"""Key rotation and maintenance (issue 13) on real servers: every key provider (local keyring,
Vault on OpenBao, KMS on moto, Vault + KMS) on the local and S3 stores; retire refusing and then
taking effect; verify catching a flipped byte and a truncation; inspect; gc keeping the keyset
and everything younger than the bound; the CLI's exit codes, --json and progress."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sealed_results import maintenance
from sealed_results.cli.main import main
from sealed_results.errors import ConfigError, IntegrityError, KeyProviderError
from sealed_results.handlers import LocalHandler, ResultHandler, S3Handler
from sealed_results.keyproviders import KeyProvider
from sealed_results.keyproviders.local import LocalKeyring
from sealed_results.maintenance import JOURNAL_NAME
from sealed_results.stores import LocalStore, Store, _localfs
from tests.conftest import PLAINTEXT_MARKER

MiB = 1 << 20
PROVIDERS = ["local", "vault", "kms", "vault+kms"]


def _provider(request: pytest.FixtureRequest, kind: str) -> KeyProvider | list[KeyProvider]:
    if kind == "local":
        return LocalKeyring(request.getfixturevalue("keyring_path"))
    if kind == "vault":
        return request.getfixturevalue("vault_provider")  # type: ignore[no-any-return]
    if kind == "kms":
        return request.getfixturevalue("kms_provider")  # type: ignore[no-any-return]
    return [request.getfixturevalue("vault_provider"), request.getfixturevalue("kms_provider")]


def _handler(request: pytest.FixtureRequest, store: str, kp: Any) -> ResultHandler:
    if store == "local":
        root = request.getfixturevalue("local_root")
        return LocalHandler(str(root), kp, segment_size=1 << 16)
    root, options = request.getfixturevalue("s3_root")
    return S3Handler(root, kp, storage_options=options, segment_size=1 << 16)


def _fill(h: ResultHandler, n: int = 12) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for i in range(n):
        value = {"i": i, "marker": PLAINTEXT_MARKER}
        values[h.write(value)] = value
    big = os.urandom(MiB + 12345)
    values[h.write_stream(io.BytesIO(big))] = big
    return values


def _read_all(h: ResultHandler, values: dict[str, Any]) -> None:
    for token, value in values.items():
        assert h.read(token) == value


def _fresh(h: ResultHandler) -> ResultHandler:
    """A handler as another process builds it (pickled settings: no cached keys)."""
    import pickle

    return pickle.loads(pickle.dumps(h))  # type: ignore[no-any-return]


def _versions(h: ResultHandler) -> set[tuple[str, str]]:
    return {(row["kind"], row["version"]) for row in maintenance.inventory(h).by_key}


# -- rotation across providers and stores ---------------------------------------------------------
@pytest.mark.parametrize("store", ["local", "s3"])
@pytest.mark.parametrize("kind", PROVIDERS)
def test_rotation_rewraps_everything_and_keeps_every_token(
    request: pytest.FixtureRequest, kind: str, store: str
) -> None:
    h = _handler(request, store, _provider(request, kind))
    values = _fill(h)
    before = maintenance.inventory(h)
    assert before.objects == len(values) and before.unreadable == 0
    assert before.token_keys == 1
    kinds = {"local"} if kind == "local" else set(kind.replace("kms", "aws-kms").split("+"))
    assert {row["kind"] for row in before.by_key} == kinds
    if kind in ("local", "vault"):
        assert _versions(h) == {(kind, "v1")}

    plan = maintenance.rotate(h)  # dry run: nothing changes
    assert not plan.applied and plan.would_rewrap == len(values)
    assert maintenance.inventory(h).by_key == before.by_key

    report = maintenance.rotate(h, apply=True, settle=0, workers=4)
    assert report.state == "done" and report.exit_code == 0, report.to_dict()
    assert report.rewrapped == len(values) + 1  # every result and the keyset
    assert report.failed == report.skipped == 0
    assert report.token_key_added and report.token_keys == 2
    assert sorted(report.providers_rotated) == sorted(kinds)
    after = maintenance.inventory(h)
    assert after.objects == len(values) and after.outdated == 0 and after.token_keys == 2
    if kind in ("local", "vault"):
        assert _versions(h) == {(kind, "v2")}
    if "vault" in kind:
        assert ("vault", "v2") in _versions(h)
    # Same tokens, same names, from a process that never saw the old state.
    _read_all(_fresh(h), values)
    assert maintenance.verify(h).failed == 0

    # A second apply starts a new rotation; --rewrap-only finds everything current.
    again = maintenance.rotate(h, apply=True, settle=0, rewrap_only=True)
    assert again.state == "done"
    assert again.rewrapped == (0 if "aws-kms" not in kinds else len(values) + 1)
    assert not again.token_key_added and again.providers_rotated == []


@pytest.mark.parametrize("kind", ["local", "vault"])
def test_retire_refuses_while_old_versions_remain_then_takes_effect(
    request: pytest.FixtureRequest, kind: str, local_root: Path
) -> None:
    kp = _provider(request, kind)
    h = _handler(request, "local", kp)
    values = _fill(h, 6)
    names = sorted(h.list_objects())
    old_copy = (local_root / names[0]).read_bytes()  # a blob still under v1

    h.materials.rotate()  # a new key version, nothing rewrapped yet
    refused = maintenance.retire(h, apply=True, min_wait=0)
    assert refused.refused and refused.exit_code == 1
    assert f"{len(values) + 1} stored object(s)" in refused.reason  # the results and the keyset
    assert refused.remaining == {kind: len(values) + 1}

    assert h.rewrap_object(names[0]) == "rewrapped"
    assert maintenance.retire(h, min_wait=0).remaining == {kind: len(values)}
    # Finish: rewrap-only, then retire applies.
    done = maintenance.rotate(h, apply=True, rewrap_only=True, settle=0)
    assert done.rewrapped == len(values)  # the rest of the results and the keyset
    assert maintenance.retire(h, apply=True).refused  # right after a rotation: wait first
    retired = maintenance.retire(h, apply=True, min_wait=0)
    assert not retired.refused and retired.actions, retired.to_dict()
    state = maintenance.provider_state(h.materials.providers()[0])
    assert state.minimum == state.current == 2

    reader = _fresh(h)
    _read_all(reader, values)
    # An un-rewrapped old blob put back now: the provider refuses it by policy.
    (local_root / names[0]).write_bytes(old_copy)
    token = next(t for t in values if reader.locate_token(t)[0] == names[0])
    with pytest.raises(KeyProviderError):
        reader.read(token)


def test_retire_with_kms_has_nothing_to_raise(request: pytest.FixtureRequest) -> None:
    h = _handler(request, "local", _provider(request, "kms"))
    _fill(h, 2)
    report = maintenance.retire(h, apply=True, min_wait=0)
    assert not report.refused and report.actions == []
    assert any("aws-kms" in note for note in report.notes)


# -- verify, inspect ------------------------------------------------------------------------------
def test_verify_catches_a_flipped_byte_and_a_truncation(
    local_handler: LocalHandler, local_root: Path
) -> None:
    values = _fill(local_handler, 5)
    names = sorted(local_handler.list_objects())
    flipped, truncated = names[0], names[1]
    data = bytearray((local_root / flipped).read_bytes())
    data[-3] ^= 0x01
    (local_root / flipped).write_bytes(bytes(data))
    blob = (local_root / truncated).read_bytes()
    (local_root / truncated).write_bytes(blob[: len(blob) - 7])

    report = maintenance.verify(local_handler)
    assert report.checked == len(values) + 1 and report.failed == 2 and report.exit_code == 1
    assert {f["object"] for f in report.failures} == {flipped, truncated}
    assert {f["error"] for f in report.failures} == {"integrity"}
    with pytest.raises(IntegrityError):
        maintenance.inspect(local_handler, flipped)
    # Rotation still rewraps them (only the key section is touched); verify keeps failing them.
    assert maintenance.rotate(local_handler, apply=True, settle=0).failed == 0
    assert maintenance.verify(local_handler).failed == 2


def test_inspect_by_token_and_by_reference(local_handler: LocalHandler) -> None:
    token = local_handler.write({"a": 1})
    stream_token = local_handler.write_stream(io.BytesIO(b"z" * 100_000))
    seen = maintenance.inspect(local_handler, token)
    assert seen.serializer == "msgpack" and seen.payload_size > 0 and seen.matches_token
    assert seen.key_stanzas == [{"kind": "local", "version": "v1"}]
    assert seen.modified is not None
    again = maintenance.inspect(local_handler, seen.object)
    assert again.object == seen.object and again.matches_token is None
    streamed = maintenance.inspect(local_handler, stream_token)
    assert streamed.serializer == "bytes" and streamed.payload_size == 100_000
    assert streamed.stored_size > 100_000
    with pytest.raises(IntegrityError):
        maintenance.inspect(local_handler, token[:-2] + ("A" if token[-2] != "A" else "B") + "A")


# -- gc -------------------------------------------------------------------------------------------
def test_gc_keeps_the_keyset_the_journal_and_everything_younger(
    local_handler: LocalHandler, local_root: Path
) -> None:
    values = _fill(local_handler, 6)
    maintenance.rotate(local_handler, apply=True, settle=0)  # leaves the journal
    tokens = list(values)
    old = tokens[:3]
    month_ago = time.time() - 30 * 86400
    for token in old:
        name, _ = local_handler.locate_token(token)
        os.utime(local_root / name, (month_ago, month_ago))
    for fixed in ("keyset", JOURNAL_NAME):
        os.utime(local_root / fixed, (month_ago, month_ago))

    dry = maintenance.gc(local_handler, "7d")
    assert dry.candidates == 3 and dry.deleted == 0 and dry.kept == len(values) - 3
    assert all(local_handler.exists(t) for t in tokens)
    done = maintenance.gc(local_handler, "7d", apply=True)
    assert done.deleted == 3 and done.exit_code == 0
    assert not any(local_handler.exists(t) for t in old)
    assert (local_root / "keyset").exists() and (local_root / JOURNAL_NAME).exists()
    _read_all(_fresh(local_handler), {t: values[t] for t in tokens[3:]})
    # A rotation keeps the local store's times (rewrite_head keeps the mtime): still old.
    month_old = tokens[3:5]
    for token in month_old:
        name, _ = local_handler.locate_token(token)
        os.utime(local_root / name, (month_ago, month_ago))
    assert maintenance.rotate(local_handler, apply=True, settle=0).rewrapped == 5  # + keyset
    assert maintenance.gc(local_handler, "7d").candidates == 2
    # Everything is younger than a year; nothing more goes.
    assert maintenance.gc(local_handler, "52w", apply=True).deleted == 0


def test_gc_sweeps_old_temporary_files_and_only_when_applied(
    local_handler: LocalHandler, local_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process killed inside LocalStore.replace/swap/rewrite_head leaves a hidden .tmp-* file.
    values = _fill(local_handler, 3)
    day_ago = time.time() - 86400
    old, fresh = local_root / ".tmp-keyset-0123456789ab", local_root / ".tmp-keyset-ba9876543210"
    for path in (old, fresh):
        path.write_bytes(b"left by a killed swap")
    os.utime(old, (day_ago, day_ago))
    os.utime(local_root / "keyset", (day_ago, day_ago))
    # The sweep ages files by their ctime too (which no one can set back): its clock moves on.
    later = time.time() + 2 * 3600
    monkeypatch.setattr(_localfs, "time", SimpleNamespace(time=lambda: later))
    os.utime(fresh, (later - 60, later - 60))  # changed a minute before that clock's now

    dry = maintenance.gc(local_handler, "1h")
    assert dry.swept == 0 and old.exists() and fresh.exists()
    done = maintenance.gc(local_handler, "1h", apply=True)
    assert done.swept == 1 and done.exit_code == 0 and done.to_dict()["swept"] == 1
    assert not old.exists() and fresh.exists()
    assert done.deleted == 0  # every result is younger than the bound by its own time
    assert (local_root / "keyset").exists()  # old, but never gc's to take
    _read_all(_fresh(local_handler), values)
    # Whatever the bound, litter younger than an hour stays (a slow write may own it).
    old.write_bytes(b"again")
    soon = time.time() + 120
    monkeypatch.setattr(_localfs, "time", SimpleNamespace(time=lambda: soon))
    os.utime(old, (day_ago, day_ago))
    assert maintenance.gc(local_handler, "1s", apply=True).swept == 0
    assert old.exists()


def test_gc_needs_a_store_that_tells_times(tmp_path: Path, keyring: LocalKeyring) -> None:
    class NoTimes(LocalStore):
        name = "no-times"
        info = Store.info  # the default: sizes only

    h = ResultHandler(NoTimes(tmp_path / "root"), keyring)
    h.write({"a": 1})
    assert maintenance.inventory(h).bytes == h.store.info(next(h.list_objects())).size
    with pytest.raises(ConfigError, match="object times"):
        maintenance.gc(h, "1d")


def test_gc_on_s3_by_store_time(request: pytest.FixtureRequest, keyring: LocalKeyring) -> None:
    h = _handler(request, "s3", keyring)
    values = _fill(h, 3)
    now = datetime.now(UTC)
    assert maintenance.gc(h, "1h", apply=True, now=now).deleted == 0
    later = maintenance.gc(h, "1h", apply=True, now=now + timedelta(hours=2))
    assert later.deleted == len(values) and later.unknown_age == 0
    assert h.keyset_exists()  # never the keyset
    assert maintenance.inventory(h).token_keys == 1


def test_parse_duration() -> None:
    assert maintenance.parse_duration("1d12h") == timedelta(days=1, hours=12)
    assert maintenance.parse_duration("90m") == timedelta(minutes=90)
    assert maintenance.parse_duration(30) == timedelta(seconds=30)
    for bad in ("", "12", "3x", "1d junk"):
        with pytest.raises(Exception, match="duration"):
            maintenance.parse_duration(bad)


# -- the command line -----------------------------------------------------------------------------
@pytest.fixture
def profile(tmp_path: Path, keyring_path: Path, local_root: Path) -> Path:
    config = tmp_path / "sealed-results.toml"
    config.write_text(
        'default_profile = "dev"\n[profiles.dev]\nhandler = "local"\n'
        f'root = "{local_root}"\nkeyprovider = "local"\n'
        f'keyprovider_options = {{ path = "{keyring_path}" }}\n'
    )
    return config


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except ValueError:
        return code, out, err


def test_cli_verbs_exit_codes_json_and_no_progress_off_a_terminal(
    profile: Path, keyring_path: Path, local_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = LocalHandler(str(local_root), LocalKeyring(keyring_path))
    tokens = [h.write({"n": i, "m": PLAINTEXT_MARKER}) for i in range(4)]
    cfg = ("--config", str(profile))

    code, inv, err = _cli(capsys, "inventory", *cfg, "--json")
    assert code == 0 and err == ""  # no progress when stderr is not a terminal
    assert inv["objects"] == 4 and inv["by_key"][0]["version"] == "v1"

    code, plan, _ = _cli(capsys, "rotate", *cfg, "--json")
    assert code == 0 and plan["applied"] is False
    code, done, err = _cli(capsys, "rotate", *cfg, "--apply", "--settle", "0", "--json")
    assert code == 0 and done["state"] == "done" and done["rewrapped"] == 5 and err == ""
    code, text, _ = _cli(capsys, "rotate", *cfg, "--apply", "--settle", "0", "--rewrap-only")
    assert code == 0 and "rewrapped 0, already current 5" in text

    code, refused, _ = _cli(capsys, "retire", *cfg, "--apply", "--json")
    assert code == 1 and refused["refused"]  # too soon after the rotation
    code, retired, _ = _cli(capsys, "retire", *cfg, "--apply", "--min-wait", "0", "--json")
    assert code == 0 and not retired["refused"]

    name, _ = h.locate_token(tokens[0])
    data = bytearray((local_root / name).read_bytes())
    data[-1] ^= 0x80
    (local_root / name).write_bytes(bytes(data))
    code, text, _ = _cli(capsys, "verify", *cfg)
    assert code == 1 and name in text and PLAINTEXT_MARKER not in text
    code, text, err = _cli(capsys, "inspect", *cfg, tokens[0])
    assert code == 3 and "integrity" in err
    code, seen, _ = _cli(capsys, "inspect", *cfg, tokens[1], "--json")
    assert code == 0 and seen["serializer"] == "msgpack" and PLAINTEXT_MARKER not in str(seen)

    code, swept, _ = _cli(capsys, "gc", *cfg, "--older-than", "1d", "--json")
    assert code == 0 and swept["candidates"] == 0 and not swept["applied"]
    code, _, err = _cli(capsys, "gc", *cfg, "--older-than", "soon")
    assert code == 2 and "duration" in err


def test_terminal_progress_draws_only_on_a_tty() -> None:
    from sealed_results.cli.maintenance import TerminalProgress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        progress = TerminalProgress(stream)
        progress("verify", 1, 2)
        progress("verify", 2, 2)
        progress.close()
    assert "verify: 2/2" in tty.getvalue() and pipe.getvalue() == ""


# -- failures, retries, takeovers -----------------------------------------------------------------
def test_a_failed_rewrap_keeps_the_rotation_open_and_a_rerun_finishes_it(
    local_handler: LocalHandler, keyring_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = _fill(local_handler, 5)
    materials = local_handler.materials
    real = materials.rewrap_stanzas
    calls = [0]

    def flaky(key_id: bytes, stanzas: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise KeyProviderError("the local key provider failed")
        return real(key_id, stanzas)

    monkeypatch.setattr(materials, "rewrap_stanzas", flaky)
    first = maintenance.rotate(local_handler, apply=True, settle=0, workers=1)
    assert first.state == "incomplete" and first.failed == 1 and first.exit_code == 1
    assert first.failures[0]["error"] == "KeyProviderError"
    assert first.token_key_added  # once per rotation, even when the pass must be retried
    again = maintenance.rotate(local_handler, apply=True, settle=0)
    assert again.state == "done" and again.resumed and again.exit_code == 0
    assert again.providers_rotated == [] and not again.token_key_added
    assert again.rewrapped == 1 and again.already_current == len(values)
    assert LocalKeyring(keyring_path).describe()["versions"] == [1, 2]
    assert maintenance.inventory(local_handler).token_keys == 2


def test_a_second_run_takes_the_journal_over_and_the_first_stops(
    local_handler: LocalHandler,
) -> None:
    from sealed_results.maintenance import RotationTakenOver
    from sealed_results.maintenance._journal import claim_journal, load_journal, save_journal

    _fill(local_handler, 2)
    first = claim_journal(local_handler, "run-a", lambda current: maintenance.Journal())
    second = claim_journal(local_handler, "run-b", lambda current: current or first)
    assert second.run == first.run and second.owner == "run-b"
    with pytest.raises(RotationTakenOver):
        save_journal(local_handler, first)
    save_journal(local_handler, second)
    stored, _ = load_journal(local_handler)
    assert stored is not None and stored.owner == "run-b"
