"""The plugin registry, through the real importlib.metadata machinery.

Fake plugins are real distributions: a ``*.dist-info`` directory with METADATA and
entry_points.txt on a temporary sys.path entry, next to the modules they point at.
"""

from __future__ import annotations

import sys
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import sealed_results
from sealed_results import plugins
from sealed_results.errors import ConfigError, PluginNotFound
from sealed_results.handlers import LocalHandler, MemoryHandler
from sealed_results.keyproviders.local import LocalKeyring
from sealed_results.serializers import JsonSerializer, MsgpackSerializer
from sealed_results.testing import leakscan

REPO = Path(__file__).resolve().parent.parent

MakeDist = Callable[..., str]


def write_dist(
    site: Path,
    dist_name: str,
    version: str,
    entry_points: dict[str, dict[str, str]],
    modules: dict[str, str],
) -> None:
    """Write an installed distribution into ``site``, the way pip leaves one."""
    info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n"
    )
    lines = []
    for group, names in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in names.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeDist]:
    """``make_dist(entry_points, modules) -> prefix``: a fresh distribution on sys.path whose
    module names start with the returned prefix (unique, so sys.modules never mixes tests)."""
    prefix = f"srfake_{uuid.uuid4().hex[:8]}"
    created: list[str] = []

    def make(
        entry_points: dict[str, dict[str, str]],
        modules: dict[str, str],
        *,
        dist_name: str = "fake-plugin",
        version: str = "1.2.3",
    ) -> str:
        site = tmp_path / f"site-{len(created)}"
        renamed = {f"{prefix}_{name}": source for name, source in modules.items()}
        eps = {
            group: {name: f"{prefix}_{target}" for name, target in names.items()}
            for group, names in entry_points.items()
        }
        write_dist(site, dist_name, version, eps, renamed)
        monkeypatch.syspath_prepend(str(site))
        created.extend(renamed)
        return prefix

    yield make
    for module in created:
        sys.modules.pop(module, None)


GOOD_HANDLER = (
    "from sealed_results.handlers import MemoryHandler\n"
    "class GoodHandler(MemoryHandler):\n"
    "    name = 'good'\n"
)
BROKEN = "raise RuntimeError('this plugin is broken on purpose: BROKEN-DETAIL-77')\n"
MISSING_DEP = "import srfake_dependency_that_is_not_installed  # noqa\n"
NOT_A_HANDLER = "class NotAHandler:\n    pass\n"


def _info(name: str, group: str) -> plugins.PluginInfo:
    [info] = [
        i for i in plugins.list_plugins() if i.name == name and i.group == group and i.loaded
    ] or [i for i in plugins.list_plugins() if i.name == name and i.group == group]
    return info


def test_builtin_table_matches_pyproject() -> None:
    # The fallback table must say what pyproject.toml registers, or the two drift apart.
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    ours = {group: dict(names) for group, names in declared.items() if group in plugins.GROUPS}
    assert ours == plugins._BUILTINS
    # Prefect finds the integration's blocks through its own group, which is not ours.
    assert declared["prefect.collections"] == {"sealed_results": "sealed_results.prefect"}


def test_every_builtin_is_listed_from_sealed_results() -> None:
    infos = plugins.list_plugins()
    for group, names in plugins._BUILTINS.items():
        for name in names:
            [info] = [i for i in infos if i.group == group and i.name == name]
            assert info.distribution == "sealed-results"
            assert info.version == sealed_results.__version__
            assert info.loaded or info.error
    for name in ("local", "memory"):
        assert _info(name, plugins.HANDLERS).loaded
    assert _info("local", plugins.KEYPROVIDERS).loaded
    assert {i.name for i in infos if i.group == plugins.SERIALIZERS} >= {"msgpack", "json"}


def test_load_builtins_by_name() -> None:
    assert plugins.load_handler_class("local") is LocalHandler
    assert plugins.load_handler_class("memory") is MemoryHandler
    assert plugins.load_keyprovider_class("local") is LocalKeyring


def test_unknown_name_lists_installed_and_does_not_echo_the_name() -> None:
    name = "no-such-handler-4d1c"
    with pytest.raises(PluginNotFound) as caught:
        plugins.load_handler_class(name)
    message = str(caught.value)
    assert "no handler plugin of that name is installed" in message
    assert "local" in message and "memory" in message
    assert name not in message
    assert isinstance(caught.value, ConfigError)
    with pytest.raises(PluginNotFound, match="key provider"):
        plugins.load_keyprovider_class(name)


def test_broken_plugins_do_not_break_listing(make_dist: MakeDist) -> None:
    prefix = make_dist(
        {
            plugins.HANDLERS: {
                "fake-broken": "broken:Handler",
                "fake-good": "good:GoodHandler",
                "fake-not-a-handler": "nothandler:NotAHandler",
            },
            plugins.KEYPROVIDERS: {"fake-missing-dep": "missingdep:Provider"},
        },
        {
            "broken": BROKEN,
            "good": GOOD_HANDLER,
            "missingdep": MISSING_DEP,
            "nothandler": NOT_A_HANDLER,
        },
        dist_name="fake-plugin",
        version="1.2.3",
    )
    infos = {(i.group, i.name): i for i in plugins.list_plugins()}
    broken = infos[plugins.HANDLERS, "fake-broken"]
    assert (broken.distribution, broken.version, broken.loaded) == ("fake-plugin", "1.2.3", False)
    assert broken.error == "RuntimeError"  # the plugin's own text is not repeated
    missing = infos[plugins.KEYPROVIDERS, "fake-missing-dep"]
    assert not missing.loaded
    assert missing.error is not None and "srfake_dependency_that_is_not_installed" in missing.error
    assert not infos[plugins.HANDLERS, "fake-not-a-handler"].loaded
    assert infos[plugins.HANDLERS, "fake-good"].loaded
    assert infos[plugins.HANDLERS, "local"].loaded  # the built-ins are unaffected
    assert plugins.load_handler_class("fake-good").__module__ == f"{prefix}_good"


def test_broken_plugin_by_name_raises_plugin_not_found_with_cause(make_dist: MakeDist) -> None:
    make_dist(
        {
            plugins.HANDLERS: {"fake-broken": "broken:Handler"},
            plugins.KEYPROVIDERS: {"fake-missing-dep": "missingdep:Provider"},
        },
        {"broken": BROKEN, "missingdep": MISSING_DEP},
    )
    with pytest.raises(PluginNotFound) as caught:
        plugins.load_handler_class("fake-broken")
    assert "fake-plugin" in str(caught.value) and "reinstall" in str(caught.value)
    assert "BROKEN-DETAIL-77" not in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)
    with pytest.raises(PluginNotFound) as caught:
        plugins.load_keyprovider_class("fake-missing-dep")
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


@pytest.mark.parametrize(
    ("group", "name", "dependency", "extra"),
    [
        (plugins.HANDLERS, "s3", "s3fs", "s3"),
        (plugins.HANDLERS, "gcs", "gcsfs", "gcs"),
        (plugins.HANDLERS, "azure", "adlfs", "azure"),
        (plugins.KEYPROVIDERS, "vault", "hvac", "vault"),
        (plugins.KEYPROVIDERS, "aws-kms", "boto3", "kms"),
    ],
)
def test_builtin_with_missing_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, group: str, name: str, dependency: str, extra: str
) -> None:
    module = plugins._BUILTINS[group][name].split(":")[0]
    # None in sys.modules makes ``import dependency`` fail, as if it were not installed.
    monkeypatch.setitem(sys.modules, dependency, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(PluginNotFound) as caught:
        plugins._load(group, name)
    assert f'pip install "sealed-results[{extra}]"' in str(caught.value)
    assert isinstance(caught.value.__cause__, ImportError)
    [info] = [i for i in plugins.list_plugins([group]) if i.name == name]
    assert not info.loaded and info.error is not None and dependency in info.error


def test_a_plugin_cannot_shadow_a_builtin(make_dist: MakeDist) -> None:
    make_dist(
        {plugins.HANDLERS: {"local": "good:GoodHandler"}},
        {"good": GOOD_HANDLER},
        dist_name="evil-plugin",
    )
    assert plugins.load_handler_class("local") is LocalHandler
    shadowed = [i for i in plugins.list_plugins() if i.distribution == "evil-plugin"]
    assert [(i.name, i.loaded) for i in shadowed] == [("local", False)]
    assert shadowed[0].error is not None and "shadowed" in shadowed[0].error


def test_serializers_builtin_instance_and_plugin(make_dist: MakeDist) -> None:
    assert isinstance(plugins.get_serializer("msgpack"), MsgpackSerializer)
    instance = JsonSerializer()
    assert plugins.get_serializer(instance) is instance
    with pytest.raises(PluginNotFound, match="no serializer plugin of that name"):
        plugins.get_serializer("no-such-serializer")
    make_dist(
        {plugins.SERIALIZERS: {"fake-json": "ser:Upper"}},
        {
            "ser": "from sealed_results.serializers import JsonSerializer\n"
            "class Upper(JsonSerializer):\n    name = 'fake-json'\n"
        },
    )
    serializer = plugins.get_serializer("fake-json")
    assert serializer.name == "fake-json"
    assert serializer.loads(serializer.dumps({"a": 1})) == {"a": 1}


def test_handler_by_name_with_keyprovider_name(tmp_path: Path, keyring_path: Path) -> None:
    root = tmp_path / "by-name"
    leakscan.SCAN.add_secret(str(root))
    h = sealed_results.handler(
        "local", root=str(root), keyprovider="local", keyprovider_options={"path": keyring_path}
    )
    assert isinstance(h, LocalHandler)
    assert h.read(h.write({"rows": 3})) == {"rows": 3}


def test_handler_by_name_with_instance_and_serializer(
    tmp_path: Path, keyring: LocalKeyring
) -> None:
    h = plugins.handler("local", root=str(tmp_path / "r"), keyprovider=keyring, serializer="json")
    assert h.read(h.write([1, "two"])) == [1, "two"]
    assert sealed_results.handler is plugins.handler


def test_handler_by_name_with_several_keyproviders(
    tmp_path: Path, keyring_path: Path, keyring: LocalKeyring
) -> None:
    from sealed_results.keyproviders.local import create_keyring

    second = create_keyring(tmp_path / "second.json")
    h = plugins.handler(
        "local",
        root=str(tmp_path / "r"),
        keyprovider=["local", keyring],
        keyprovider_options=[{"path": str(second)}, {}],
    )
    token = h.write("both")
    alone = plugins.handler("local", root=str(tmp_path / "r"), keyprovider=keyring)
    assert alone.read(token) == "both"


def test_one_factory_for_handler_and_profiles(tmp_path: Path, keyring_path: Path) -> None:
    from sealed_results.keyproviders import CachingKeyProvider

    # sealed_results.handler takes a cache table like a profile does, through build_handler.
    h = sealed_results.handler(
        "local",
        root=str(tmp_path / "r"),
        keyprovider=["local"],  # a list of one is that provider
        keyprovider_options=[{"path": str(keyring_path)}],
        cache={"max_uses": 5},
        serializer="json",
    )
    assert isinstance(h.keyprovider, CachingKeyProvider)
    assert h.read(h.write({"a": [1]})) == {"a": [1]}
    with pytest.raises(ConfigError, match=r"^profiles\.x\.cache: "):
        plugins.build_handler(
            "local",
            root=str(tmp_path / "r"),
            keyprovider="local",
            keyprovider_options={"path": str(keyring_path)},
            cache={"max_age": -1},
            setting="profiles.x",
        )
    with pytest.raises(PluginNotFound, match=r"^profiles\.x\.serializer: no serializer plugin"):
        plugins.build_handler(
            "memory", root="memory://x", keyprovider="local", keyprovider_options={"path": "k"},
            serializer="no-such-serializer", setting="profiles.x",
        )  # fmt: skip


def test_handler_option_errors_name_options_not_values(
    tmp_path: Path, keyring: LocalKeyring
) -> None:
    secret = "VALUE-not-to-be-echoed-31f"
    leakscan.SCAN.add_secret(secret)
    with pytest.raises(ConfigError) as caught:
        plugins.handler("local", keyprovider="local", keyprovider_options={"paht": secret})
    assert "paht" in str(caught.value) and secret not in str(caught.value)
    with pytest.raises(ConfigError, match="one entry per key provider"):
        plugins.handler(
            "local",
            root=secret,
            keyprovider=["local", "local"],
            keyprovider_options={"path": secret},
        )
    with pytest.raises(ConfigError) as caught:
        plugins.handler("local", root=str(tmp_path), keyprovider=keyring, colour=secret)
    assert "colour" in str(caught.value) and secret not in str(caught.value)
    with pytest.raises(ConfigError, match="KeyProvider instance or a plugin name"):
        plugins.handler("local", root=str(tmp_path), keyprovider=42)  # type: ignore[arg-type]
