"""examples/third_party_plugin, built and installed by pip like any third-party distribution,
then used by name and through a profile.

pip installs it into a temporary ``--target`` directory put on sys.path for these tests only,
so the environment is left as it was. The build needs hatchling: from this environment when it
is installed, else pip fetches it from PyPI into an isolated build environment.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import sealed_results
from sealed_results import KeyProvider, Store
from sealed_results.cli import main
from sealed_results.config import from_profile
from sealed_results.errors import IntegrityError
from sealed_results.plugins import HANDLERS, KEYPROVIDERS, list_plugins
from sealed_results.testing import KeyProviderSuite, StoreSuite, leakscan

REPO = Path(__file__).resolve().parent.parent
PLUGIN_SOURCE = REPO / "examples" / "third_party_plugin"
DIST = "sealed-results-example-plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target"]
    command += [str(target), str(PLUGIN_SOURCE)]
    if importlib.util.find_spec("hatchling") is not None:
        command.insert(4, "--no-build-isolation")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return target


@pytest.fixture
def installed(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(plugin_site))
    yield plugin_site
    for name in [m for m in sys.modules if m.partition(".")[0] == "sr_example_plugin"]:
        del sys.modules[name]


@pytest.fixture
def kek(monkeypatch: pytest.MonkeyPatch) -> str:
    value = base64.urlsafe_b64encode(os.urandom(32)).decode()
    leakscan.SCAN.add_secret(value)
    monkeypatch.setenv("SR_EXAMPLE_KEK", value)
    return value


def test_the_plugin_is_listed_with_its_distribution(installed: Path) -> None:
    infos = {(i.group, i.name): i for i in list_plugins()}
    for key in ((HANDLERS, "example-dir"), (KEYPROVIDERS, "example-static")):
        info = infos[key]
        assert (info.distribution, info.version, info.loaded) == (DIST, "0.1.0", True)


def test_the_plugin_is_listed_by_the_command_in_a_fresh_process(installed: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(REPO)])}
    result = subprocess.run(
        [sys.executable, "-m", "sealed_results.cli", "plugins", "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    listed = {(p["group"], p["name"]): p for p in json.loads(result.stdout)}
    assert listed[HANDLERS, "example-dir"]["distribution"] == DIST
    assert listed[KEYPROVIDERS, "example-static"]["loaded"] is True


def test_handler_by_name(installed: Path, kek: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    leakscan.SCAN.add_secret(str(store))
    h = sealed_results.handler(
        "example-dir",
        root=f"exdir://{store}",
        keyprovider="example-static",
        keyprovider_options={"env": "SR_EXAMPLE_KEK"},
    )
    token = h.write({"rows": 3})
    assert h.read(token) == {"rows": 3}
    assert (store / "keyset").exists()
    # Picklable without the key: rebuilt from the exdir:// root, the KEK read again.
    clone = pickle.loads(pickle.dumps(h))
    assert kek.encode() not in pickle.dumps(h)
    assert clone.read(token) == {"rows": 3}


def test_profile_and_doctor(
    installed: Path,
    kek: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "store"
    leakscan.SCAN.add_secret(str(store))
    config = tmp_path / "sealed-results.toml"
    config.write_text(f"""
default_profile = "example"
[profiles.example]
handler = "example-dir"
root = "exdir://{store}"
keyprovider = "example-static"
keyprovider_options = {{ env = "SR_EXAMPLE_KEK" }}
""")
    monkeypatch.setenv("SEALED_RESULTS_CONFIG", str(config))
    h = from_profile()
    token = h.write(["through", "a", "profile"])
    assert sealed_results.from_profile("example").read(token) == ["through", "a", "profile"]

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and str(store) not in out

    # Without its key the provider fails; with another key the data does not open.
    monkeypatch.delenv("SR_EXAMPLE_KEK")
    assert main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [c["status"] for c in report["checks"] if c["step"] == "keyprovider"] == ["FAIL"]
    monkeypatch.setenv("SR_EXAMPLE_KEK", base64.urlsafe_b64encode(os.urandom(32)).decode())
    with pytest.raises(IntegrityError):
        from_profile().read(token)


# The plugin's own parts pass the suites sealed_results.testing ships for plugin authors.
class TestExampleStoreConforms(StoreSuite):
    @pytest.fixture
    def store(self, installed: Path, tmp_path: Path) -> Store:
        from sr_example_plugin.handler import ExampleDirStore

        return ExampleDirStore(f"exdir://{tmp_path / 'objects'}")


class TestExampleKeyProviderConforms(KeyProviderSuite):
    rotates = False  # a static KEK (the example says so)

    @pytest.fixture
    def provider(self, installed: Path, kek: str) -> KeyProvider:
        from sr_example_plugin.keyprovider import ExampleStaticKeyProvider

        return ExampleStaticKeyProvider()

    @pytest.fixture
    def provider_secrets(self, kek: str) -> list[str]:
        return [kek]
