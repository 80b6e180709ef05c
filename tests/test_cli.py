"""The ``sealed-results`` command, called in-process through ``main(argv)``."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sealed_results.cli import main
from sealed_results.handlers import LocalHandler
from sealed_results.keyproviders.local import LocalKeyring, create_keyring
from sealed_results.plugins import HANDLERS
from sealed_results.testing import leakscan
from tests.conftest import register_keyring_secrets
from tests.test_plugins import write_dist


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- the verb registry ----------------------------------------------------------------------
def test_a_new_verb_plugs_in_without_touching_main(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import types

    from sealed_results.cli.common import EXIT_OK, add_json_option, add_profile_options
    from sealed_results.cli.main import VERBS, build_parser

    def run_hello(args: argparse.Namespace) -> int:
        print(f"hello {args.profile} {args.json}")
        return EXIT_OK

    def add_parser(subparsers: Any) -> None:
        parser = subparsers.add_parser("hello", help="a verb for this test")
        add_profile_options(parser)
        add_json_option(parser)
        parser.set_defaults(func=run_hello)

    hello = types.SimpleNamespace(add_parser=add_parser)
    args = build_parser([*VERBS, hello]).parse_args(["hello", "--profile", "p", "--json"])
    assert args.func(args) == 0 and capsys.readouterr().out == "hello p True\n"
    with pytest.raises(SystemExit):  # not registered in the real command
        main(["hello"])
    capsys.readouterr()


# -- keys --------------------------------------------------------------------------------------
def test_keys_init_creates_a_private_keyring_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    code, out, _ = run(capsys, "keys", "init", str(path))
    assert code == 0 and "mode 0600" in out
    register_keyring_secrets(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    code, _, err = run(capsys, "keys", "init", str(path))
    assert code == 2 and "refusing to overwrite" in err
    assert path.read_bytes() == before
    assert str(path) not in err


def test_keys_add_adds_a_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = create_keyring(tmp_path / "keys.json")
    code, out, _ = run(capsys, "keys", "add", str(path))
    register_keyring_secrets(path)
    assert code == 0 and "added key version 2" in out
    assert json.loads(path.read_text())["primary"] == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keys_add_without_a_keyring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "keys", "add", str(tmp_path / "missing.json"))
    assert code == 2 and "keyring file not found" in err


# -- demo --------------------------------------------------------------------------------------
def test_demo_succeeds_and_prints_opaque_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "demo", "--root", str(tmp_path / "demo"))
    assert code == 0
    section = out.split("1. ")[1].split("2. ")[0]
    tokens = re.findall(r'"(\S+?)\.\.\.', section)  # printed as json.dumps(token)[:60]...
    assert len(tokens) == 4
    for token in tokens:
        # base64url only: no names, no paths, none of the demo's values
        assert re.fullmatch(r"[A-Za-z0-9_\-]+", token)
        for marker in ("ada", "example.com", "sk_live", "48213", "customer", "demo"):
            assert marker not in token


# -- plugins -----------------------------------------------------------------------------------
def test_plugins_lists_every_group(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins")
    assert code == 0
    lines = out.splitlines()
    assert any(line.split()[:3] == ["handlers", "local", "sealed-results"] for line in lines)
    assert any(line.split()[:2] == ["keyproviders", "local"] for line in lines)
    assert any(line.split()[:2] == ["serializers", "msgpack"] for line in lines)
    code, out, _ = run(capsys, "plugins", "--json")
    listed = json.loads(out)
    assert code == 0
    local = next(p for p in listed if p["group"] == HANDLERS and p["name"] == "local")
    assert local == {
        "name": "local",
        "group": HANDLERS,
        "distribution": "sealed-results",
        "version": local["version"],
        "loaded": True,
        "error": None,
    }


def test_plugins_survives_a_broken_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"
    write_dist(site, "broken-cli-plugin", "0.9", {HANDLERS: {"cli-broken": "srcli_broken:H"}},
               {"srcli_broken": "raise ImportError('nope')\n"})  # fmt: skip
    monkeypatch.syspath_prepend(str(site))
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    broken = next(p for p in json.loads(out) if p["name"] == "cli-broken")
    assert (broken["distribution"], broken["version"], broken["loaded"]) == (
        "broken-cli-plugin",
        "0.9",
        False,
    )
    assert any(p["name"] == "local" and p["loaded"] for p in json.loads(out))


# -- doctor ------------------------------------------------------------------------------------
def profile_file(tmp_path: Path, body: str, name: str = "p") -> Path:
    path = tmp_path / "config" / "sealed-results.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[profiles.{name}]\n" + textwrap.dedent(body))
    return path


def local_body(root: Path, keyring: Path) -> str:
    return f"""
        handler = "local"
        root = "{root}"
        keyprovider = "local"
        keyprovider_options = {{ path = "{keyring}" }}
    """


def doctor(
    capsys: pytest.CaptureFixture[str], config: Path, *extra: str
) -> tuple[int, dict[str, Any], str]:
    code, out, err = run(capsys, "doctor", "--config", str(config), "--profile", "p", "--json")
    report = json.loads(out)
    assert report["exit_code"] == code
    return code, {c["step"]: (c["status"], c["detail"]) for c in report["checks"]}, out + err


def assert_no_leak(output: str, *secrets: object) -> None:
    for secret in secrets:
        assert str(secret) not in output


@pytest.fixture
def no_config_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SEALED_RESULTS_CONFIG", "SEALED_RESULTS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def test_doctor_passes_on_a_local_profile(
    tmp_path: Path,
    local_root: Path,
    keyring_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = profile_file(tmp_path, local_body(local_root, keyring_path))
    code, steps, output = doctor(capsys, config)
    assert code == 0
    assert [s for s, _ in steps.values()] == ["PASS"] * 11
    assert steps["keyset"][1].startswith("absent; the root holds no results yet")
    assert steps["keyset updates"][1].startswith("atomic")
    assert steps["token keys"][1].startswith("created")
    assert list(local_root.iterdir()) == [local_root / "keyset"]  # the probes are gone
    assert_no_leak(output, local_root, keyring_path, config)
    # Plain text, through the environment instead of --config; the keyset now exists.
    monkeypatch.setenv("SEALED_RESULTS_CONFIG", str(config))
    code, out, _ = run(capsys, "doctor", "--profile", "p")
    assert code == 0 and "all checks passed" in out and "warning" not in out
    assert "PASS  token keys      opened" in out and "PASS  keyset          present" in out
    assert_no_leak(out, local_root, keyring_path, config)


def test_doctor_root_with_results_but_no_keyset(
    tmp_path: Path, local_root: Path, keyring_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = profile_file(tmp_path, local_body(local_root, keyring_path))
    handler = LocalHandler(str(local_root), LocalKeyring(keyring_path))
    handler.write("a result whose token is out there")
    (local_root / "keyset").unlink()  # e.g. a lifecycle rule or a careless cleanup
    code, steps, output = doctor(capsys, config)
    assert code == 1
    status, detail = steps["keyset"]
    assert status == "FAIL" and "KeysetMissing" in detail and "restore" in detail
    assert steps["keyset updates"][0] == "PASS"
    assert [steps[s][0] for s in ("token keys", "write", "read", "delete")] == ["SKIP"] * 4
    assert not (local_root / "keyset").exists()  # doctor made no new keyset
    assert_no_leak(output, local_root, keyring_path)


# Two stores a third party might ship, installed as a real plugin distribution (entry points),
# so doctor meets them through a profile exactly as a user's would.
UNSAFE_STORES = """
from sealed_results.handlers import ResultHandler
from sealed_results.stores import LocalStore, Store


class NonAtomicStore(LocalStore):
    # swap is the base class's compare-then-replace
    atomic_swap = False
    swap = Store.swap
    get_versioned = Store.get_versioned


class IgnoresConditionsStore(LocalStore):
    # like an S3-compatible server that ignores If-Match: claims atomic, writes regardless
    def swap(self, name, data, version):
        self.replace(name, data)


class NonAtomicHandler(ResultHandler):
    name = "nonatomic"
    store_class = NonAtomicStore


class IgnoresConditionsHandler(ResultHandler):
    name = "ignores-conditions"
    store_class = IgnoresConditionsStore
"""


@pytest.mark.parametrize(
    ("handler_name", "says"),
    [
        ("nonatomic", "not atomic on this store"),
        ("ignores-conditions", "accepted a write whose condition did not hold"),
    ],
)
def test_doctor_warns_about_keyset_updates_that_are_not_atomic(
    tmp_path: Path,
    local_root: Path,
    keyring_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    handler_name: str,
    says: str,
) -> None:
    site = tmp_path / "site"
    write_dist(
        site,
        "unsafe-stores",
        "1.0",
        {
            HANDLERS: {
                "nonatomic": "srcli_unsafe_stores:NonAtomicHandler",
                "ignores-conditions": "srcli_unsafe_stores:IgnoresConditionsHandler",
            }
        },
        {"srcli_unsafe_stores": UNSAFE_STORES},
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "srcli_unsafe_stores", raising=False)
    body = local_body(local_root, keyring_path).replace('"local"', f'"{handler_name}"', 1)
    config = profile_file(tmp_path, body)
    code, out, _ = run(capsys, "doctor", "--config", str(config), "--profile", "p")
    assert code == 0  # a warning, not a failure
    line = next(line for line in out.splitlines() if "keyset updates" in line)
    assert line.strip().startswith("WARN") and says in line
    assert "concurrent key rotations could lose keys here" in line
    assert "all checks passed (1 warning)" in out
    code, json_out, _ = run(capsys, "doctor", "--config", str(config), "--profile", "p", "--json")
    report = json.loads(json_out)
    assert code == 0 and report["ok"] is True and report["warnings"] == 1
    assert not any(p.name.startswith(".doctor") for p in local_root.iterdir())
    assert_no_leak(out + json_out, local_root, keyring_path)


def test_doctor_without_config(no_config_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--json")
    report = json.loads(out)
    assert code == 2
    assert report["checks"][0]["status"] == "FAIL" and report["checks"][0]["step"] == "config"
    assert {c["status"] for c in report["checks"][1:]} == {"SKIP"}


def test_doctor_unknown_profile_is_a_config_error(
    tmp_path: Path, local_root: Path, keyring_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = profile_file(tmp_path, local_body(local_root, keyring_path), name="other")
    code, steps, _ = doctor(capsys, config)
    assert code == 2 and steps["profile"][0] == "FAIL" and steps["handler"][0] == "SKIP"


def test_doctor_missing_keyring_file(
    tmp_path: Path, local_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-keyring.json"
    config = profile_file(tmp_path, local_body(local_root, missing))
    code, steps, output = doctor(capsys, config)
    assert code == 2  # the fix is in the configuration
    assert steps["keyprovider"][0] == "FAIL" and "keyring file not found" in steps["keyprovider"][1]
    assert steps["write"][0] == "SKIP"
    assert_no_leak(output, missing, local_root)


def test_doctor_root_that_is_not_a_directory(
    tmp_path: Path, keyring_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "a-file-not-a-dir"
    root.write_text("in the way")
    leakscan.SCAN.add_secret(str(root))
    config = profile_file(tmp_path, local_body(root, keyring_path))
    code, steps, output = doctor(capsys, config)
    assert code == 1
    failed = [step for step, (status, _) in steps.items() if status == "FAIL"]
    assert failed and failed[0] in ("store", "token keys")
    assert "StorageError" in steps[failed[0]][1]
    assert_no_leak(output, root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_doctor_root_without_permission(
    tmp_path: Path, local_root: Path, keyring_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local_root.mkdir(mode=0o000)
    try:
        config = profile_file(tmp_path, local_body(local_root, keyring_path))
        code, steps, output = doctor(capsys, config)
    finally:
        local_root.chmod(0o700)
    assert code == 1 and steps["store"][0] == "FAIL" and "StorageError" in steps["store"][1]
    assert_no_leak(output, local_root)


def test_doctor_wrong_keyring_for_an_existing_root(
    tmp_path: Path,
    local_root: Path,
    keyring_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = profile_file(tmp_path, local_body(local_root, keyring_path))
    assert doctor(capsys, config)[0] == 0  # creates the root's keyset with the first keyring
    other = create_keyring(tmp_path / "other-keys.json")
    register_keyring_secrets(other)
    config = profile_file(tmp_path, local_body(local_root, other))
    code, steps, output = doctor(capsys, config)
    assert code == 1
    assert steps["keyprovider"][0] == "PASS"  # the other keyring itself works
    status, detail = steps["token keys"]
    assert status == "FAIL" and "IntegrityError" in detail and "wrote this root" in detail
    assert steps["write"][0] == "SKIP"
    assert_no_leak(output, local_root, other)


# -- doctor against real servers (fixtures from tests/servers.py, loaded by conftest) -----------
def test_doctor_s3_on_moto(
    tmp_path: Path,
    s3_root: tuple[str, dict[str, Any]],
    keyring_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, options = s3_root
    leakscan.SCAN.add_secret(root, root.split("/")[2])
    # The credentials stay in the environment (moto_server set them); the file names them only.
    config = profile_file(tmp_path, f"""
        handler = "s3"
        root = "{root}"
        keyprovider = "local"
        keyprovider_options = {{ path = "{keyring_path}" }}
        [profiles.p.storage_options]
        endpoint_url = "{options["endpoint_url"]}"
        key = "${{AWS_ACCESS_KEY_ID}}"
        secret = "${{AWS_SECRET_ACCESS_KEY}}"
    """)  # fmt: skip
    code, steps, output = doctor(capsys, config)
    assert code == 0, steps
    assert_no_leak(output, root.split("/")[2], options["endpoint_url"], keyring_path)


def test_doctor_vault_on_openbao(
    tmp_path: Path,
    local_root: Path,
    openbao_server: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.servers import enable_transit

    enable_transit(openbao_server)
    monkeypatch.setenv("VAULT_TOKEN", openbao_server.token)
    key = f"doctor-{os.urandom(4).hex()}"
    leakscan.SCAN.add_secret(key, openbao_server.url)
    body = f"""
        handler = "local"
        root = "{local_root}"
        keyprovider = "vault"
        keyprovider_options = {{ url = "{openbao_server.url}", key = "{key}", auth = "token" }}
    """
    config = profile_file(tmp_path, body)
    code, steps, output = doctor(capsys, config)
    assert code == 0, steps
    assert_no_leak(output, key, openbao_server.url, local_root)
    monkeypatch.setenv("VAULT_TOKEN", "not-a-valid-token")
    code, steps, output = doctor(capsys, config)
    assert code == 1 and steps["keyprovider"][0] == "FAIL"
    assert "KeyProviderError" in steps["keyprovider"][1]
    assert_no_leak(output, key, openbao_server.url, "not-a-valid-token")


def test_doctor_kms_on_moto(
    tmp_path: Path, local_root: Path, moto_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3 = pytest.importorskip("boto3")
    kms = boto3.client("kms", region_name="us-east-1", endpoint_url=moto_server.endpoint_url)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    leakscan.SCAN.add_secret(key_id)
    config = profile_file(tmp_path, f"""
        handler = "local"
        root = "{local_root}"
        keyprovider = "aws-kms"
        [profiles.p.keyprovider_options]
        key_id = "{key_id}"
        region_name = "us-east-1"
        endpoint_url = "{moto_server.endpoint_url}"
    """)  # fmt: skip
    code, steps, output = doctor(capsys, config)
    assert code == 0, steps
    assert_no_leak(output, key_id, moto_server.endpoint_url, local_root)
