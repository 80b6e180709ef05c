"""The config file: where it is found, which profile wins, ${VAR}, secrets, and every way a file
can be wrong. Each ConfigError must name the setting and never show the value."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import sealed_results
from sealed_results.config import (
    find_config,
    from_profile,
    load_config,
    resolve_profile,
)
from sealed_results.errors import ConfigError, PluginNotFound
from sealed_results.handlers import LocalHandler
from sealed_results.testing import leakscan

# A value that must never appear in a message; registered with the suite-wide leak scan too.
SECRET = "VALUE-must-not-leak-7c2e9a"
leakscan.SCAN.add_secret(SECRET)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: no config variables, HOME and XDG under tmp_path, cwd in ./work."""
    for name in ("SEALED_RESULTS_CONFIG", "SEALED_RESULTS_PROFILE", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def local_profile(name: str, keyring: Path, root: str = "./results") -> str:
    return f"""
        [profiles.{name}]
        handler = "local"
        root = "{root}"
        keyprovider = "local"
        keyprovider_options = {{ path = "{keyring}" }}
    """


# -- where the file is found ---------------------------------------------------------------------
def test_precedence_env_then_local_then_xdg(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "[profiles.x]\nhandler='memory'\nroot='memory://x'\nkeyprovider='local'\n"
    xdg = write(env / "xdg" / "sealed-results" / "config.toml", text)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(env / "xdg"))
    assert find_config() == (xdg, "$XDG_CONFIG_HOME/sealed-results/config.toml")
    local = write(env / "work" / "sealed-results.toml", "")
    assert find_config() == (local.resolve(), "./sealed-results.toml")
    explicit = write(env / "elsewhere.toml", "")
    monkeypatch.setenv("SEALED_RESULTS_CONFIG", str(explicit))
    assert find_config() == (explicit, "$SEALED_RESULTS_CONFIG")
    assert load_config().source == "$SEALED_RESULTS_CONFIG"


def test_xdg_defaults_to_home_config_and_ignores_relative(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert find_config() is None
    home = write(env / "home" / ".config" / "sealed-results" / "config.toml", "")
    assert find_config() == (home, "$XDG_CONFIG_HOME/sealed-results/config.toml")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # invalid per the XDG spec
    assert find_config() == (home, "$XDG_CONFIG_HOME/sealed-results/config.toml")


def test_config_env_naming_a_missing_file_does_not_fall_through(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(env / "work" / "sealed-results.toml", "")
    missing = env / f"{SECRET}.toml"
    monkeypatch.setenv("SEALED_RESULTS_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="SEALED_RESULTS_CONFIG") as caught:
        load_config()
    assert SECRET not in str(caught.value)


def test_no_config_file(env: Path) -> None:
    with pytest.raises(ConfigError, match="no config file found"):
        from_profile()


# -- which profile -------------------------------------------------------------------------------
def test_profile_precedence(env: Path, keyring_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = 'default_profile = "a"\n' + "".join(
        local_profile(n, keyring_path, f"./{n}") for n in "abc"
    )
    write(env / "work" / "sealed-results.toml", text)
    assert resolve_profile().name == "a"
    monkeypatch.setenv("SEALED_RESULTS_PROFILE", "b")
    assert resolve_profile().name == "b"
    assert resolve_profile("c").name == "c"  # an explicit name wins over everything


def test_no_profile_chosen_and_unknown_profile(env: Path, keyring_path: Path) -> None:
    write(env / "work" / "sealed-results.toml", local_profile("dev", keyring_path))
    with pytest.raises(ConfigError, match="no profile chosen"):
        resolve_profile()
    with pytest.raises(ConfigError, match="its profiles are: dev") as caught:
        resolve_profile(SECRET)
    assert SECRET not in str(caught.value)


def test_from_profile_builds_a_working_handler(
    env: Path, keyring_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(env / "cfg" / "config.toml",
                   'default_profile = "dev"\n' + local_profile("dev", keyring_path))  # fmt: skip
    monkeypatch.setenv("SEALED_RESULTS_CONFIG", str(config))
    handler = sealed_results.from_profile()
    assert isinstance(handler, LocalHandler)
    token = handler.write({"rows": 3})
    # A relative root is anchored at the config file's directory, not the working directory.
    assert (env / "cfg" / "results" / "keyset").exists()
    monkeypatch.chdir(env)
    assert from_profile("dev").read(token) == {"rows": 3}


def test_profile_repr_hides_roots_and_options(env: Path, keyring_path: Path) -> None:
    write(env / "work" / "sealed-results.toml", local_profile("dev", keyring_path, SECRET))
    profile = resolve_profile("dev")
    assert profile.root.endswith(SECRET)
    assert SECRET not in repr(profile) and str(keyring_path) not in repr(profile)


def test_all_settings(env: Path, keyring_path: Path) -> None:
    write(env / "work" / "sealed-results.toml", local_profile("dev", keyring_path) + """
        serializer = "json"
        allow_pickle = false
        segment_size = 65536
        [profiles.dev.cache]
        max_age = 60
        max_uses = 100
        max_bytes = 1048576
        unwrap_cache_size = 8
        unwrap_ttl = 30.5
    """)  # fmt: skip
    profile = resolve_profile("dev")
    assert (profile.serializer, profile.segment_size) == ("json", 65536)
    handler = profile.build()
    assert handler.read(handler.write([1, 2])) == [1, 2]
    from sealed_results.keyproviders import CachingKeyProvider

    assert isinstance(handler.keyprovider, CachingKeyProvider)


def test_options_the_handler_does_not_take_are_named(env: Path, keyring_path: Path) -> None:
    # A local handler's store takes no storage_options: refused before anything is built.
    write(env / "work" / "sealed-results.toml", local_profile("dev", keyring_path) + f"""
        storage_options = {{ auto_mkdir = "{SECRET}" }}
    """)  # fmt: skip
    with pytest.raises(ConfigError, match=r"profiles\.dev settings do not fit") as caught:
        from_profile("dev")
    assert "'storage_options'" in str(caught.value) and SECRET not in str(caught.value)


def test_several_keyproviders(env: Path, keyring_path: Path, tmp_path: Path) -> None:
    from sealed_results.keyproviders.local import create_keyring

    second = create_keyring(tmp_path / "second.json")
    write(env / "work" / "sealed-results.toml", f"""
        [profiles.two]
        handler = "local"
        root = "./results"
        keyprovider = ["local", "local"]
        keyprovider_options = [{{ path = "{keyring_path}" }}, {{ path = "{second}" }}]
        [profiles.second-only]
        handler = "local"
        root = "./results"
        keyprovider = "local"
        keyprovider_options = {{ path = "{second}" }}
    """)  # fmt: skip
    token = from_profile("two").write("either key opens it")
    assert from_profile("second-only").read(token) == "either key opens it"


# -- ${VAR} --------------------------------------------------------------------------------------
def test_environment_references(
    env: Path, keyring_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SR_TEST_ROOT", str(env / "from-env"))
    monkeypatch.setenv("SR_TEST_KEYS", str(keyring_path))
    write(env / "work" / "sealed-results.toml", """
        [profiles.dev]
        handler = "local"
        root = "${SR_TEST_ROOT}/results"
        keyprovider = "local"
        keyprovider_options = { path = "${SR_TEST_KEYS}" }
        storage_options = { note = "costs $$5, literal $${NOT_A_VAR}" }
        [profiles.other]
        handler = "local"
        root = "${SR_TEST_UNSET_VARIABLE}"
        keyprovider = "local"
    """)  # fmt: skip
    profile = resolve_profile("dev")  # "other" needs an unset variable: it does not matter here
    assert profile.root == str(env / "from-env" / "results")
    assert profile.keyprovider_options == ({"path": str(keyring_path)},)
    assert profile.storage_options == {"note": "costs $$5, literal ${NOT_A_VAR}"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${SR_TEST_UNSET_VARIABLE}", "refers to environment variable SR_TEST_UNSET_VARIABLE"),
        (f"{SECRET}${{broken", "malformed"),
        (f"{SECRET}${{1BAD}}", "malformed"),
    ],
)
def test_bad_environment_references(env: Path, value: str, expected: str) -> None:
    write(env / "work" / "sealed-results.toml", profile_with(root=f'"{value}"'))
    with pytest.raises(ConfigError) as caught:
        resolve_profile("p")
    assert "profiles.p.root" in str(caught.value) and expected in str(caught.value)
    assert SECRET not in str(caught.value)


# -- secrets ---------------------------------------------------------------------------------
SECRET_SETTINGS = [
    "keyprovider_options.token",
    "keyprovider_options.secret_id",
    "keyprovider_options.role_id",
    "keyprovider_options.password",
    "keyprovider_options.client_secret",
    "keyprovider_options.vault_token",
    "storage_options.key",
    "storage_options.secret",
    "storage_options.token",
    "storage_options.account_key",
    "storage_options.connection_string",
    "storage_options.sas_token",
    "storage_options.client_secret",
    "storage_options.session_token",
    "storage_options.aws_secret_access_key",
    "storage_options.credential",
    "storage_options.private_key",
    "storage_options.sse_customer_key",
    "storage_options.client_kwargs.aws_secret_access_key",
    "storage_options.Account-Key",
    # One rule set for every spelling and depth (sealed_results.options): the SDKs' CamelCase.
    "storage_options.s3_additional_kwargs.SSECustomerKey",
    "storage_options.client_kwargs.headers.Authorization",
    "storage_options.Authorization",
    "keyprovider_options.Authorization",
    "keyprovider_options.RoleId",
]


@pytest.mark.parametrize("setting", SECRET_SETTINGS)
def test_secrets_in_the_file_are_refused(env: Path, setting: str) -> None:
    section, *names = setting.split(".")
    table = f'"{SECRET}"'
    for name in reversed(names):
        table = f"{{ {name} = {table} }}"
    write(env / "work" / "sealed-results.toml", f"""
        [profiles.prod]
        handler = "local"
        root = "./r"
        keyprovider = "local"
        {section} = {table}
    """)  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_config()
    message = str(caught.value)
    assert f"profiles.prod.{setting}" in message and "secret" in message
    assert SECRET not in message


def test_secret_in_a_list_of_keyprovider_options(env: Path) -> None:
    write(env / "work" / "sealed-results.toml", f"""
        [profiles.prod]
        handler = "local"
        root = "./r"
        keyprovider = ["local", "vault"]
        keyprovider_options = [{{ path = "k.json" }}, {{ secret_id = "{SECRET}" }}]
    """)  # fmt: skip
    with pytest.raises(ConfigError, match=r"profiles\.prod\.keyprovider_options\[1\]\.secret_id"):
        load_config()


def test_secret_table_and_secret_as_profile_key_are_refused(env: Path) -> None:
    base = '[profiles.prod]\nhandler = "local"\nroot = "./r"\nkeyprovider = "local"\n'
    write(env / "work" / "sealed-results.toml",
          base + f'storage_options = {{ credentials = {{ a = "{SECRET}" }} }}\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"profiles\.prod\.storage_options\.credentials"):
        load_config()
    write(env / "work" / "sealed-results.toml", base + f'password = "{SECRET}"\n')
    with pytest.raises(ConfigError, match=r"profiles\.prod\.password looks like a secret"):
        load_config()


def test_what_is_not_a_secret(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A whole-value ${VAR} keeps the secret in the environment; a key provider's "key" is a
    # key name; gcsfs token methods are not secrets; *_path/*_file options point at files.
    write(env / "work" / "sealed-results.toml", """
        [profiles.prod]
        handler = "local"
        root = "./r"
        keyprovider = "vault"
        keyprovider_options = { key = "results", token = "${SR_TEST_TOKEN}", jwt_path = "/x" }
        [profiles.prod.storage_options]
        key = "${SR_TEST_KEY}"
        secret = "${SR_TEST_SECRET}"
        token = "anon"
        token_file = "/y"
    """)  # fmt: skip
    monkeypatch.setenv("SR_TEST_TOKEN", "t")
    monkeypatch.setenv("SR_TEST_KEY", "k")
    monkeypatch.setenv("SR_TEST_SECRET", "s")
    profile = resolve_profile("prod")
    assert profile.keyprovider_options[0]["token"] == "t"
    assert profile.storage_options["secret"] == "s"


def test_a_secret_with_more_than_a_reference_is_refused(env: Path) -> None:
    write(env / "work" / "sealed-results.toml", f"""
        [profiles.prod]
        handler = "local"
        root = "./r"
        keyprovider = "vault"
        keyprovider_options = {{ token = "{SECRET}${{SR_TEST_TOKEN}}" }}
    """)  # fmt: skip
    with pytest.raises(ConfigError, match=r"keyprovider_options\.token") as caught:
        load_config()
    assert SECRET not in str(caught.value)


# -- malformed files -----------------------------------------------------------------------------
HEAD = '[profiles.p]\nhandler = "local"\nroot = "./r"\nkeyprovider = "local"\n'
MINIMAL = {
    "handler": '"local"',
    "root": '"./r"',
    "keyprovider": '"local"',
    "keyprovider_options": '{ path = "k.json" }',  # read lazily: building needs no file
}


def profile_with(**settings: str) -> str:
    lines = {**MINIMAL, **settings}
    return "[profiles.p]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items() if v)


S = f'"{SECRET}"'
MALFORMED = [
    (f"default_profile = {S}\nnot toml at all = = {S}", "not valid TOML (line 2"),
    (f"profiles = {S}", "profiles must be a table"),
    (f"[profiles]\np = {S}", "profiles.p must be a table"),
    (f"colour = {S}\n" + HEAD, "colour is not a known top-level setting"),
    (f"default_profile = {S}\n" + HEAD, "default_profile names no profile"),
    ("default_profile = 3\n" + HEAD, "default_profile must be a string"),
    (profile_with(handler=""), "profiles.p.handler is required"),
    (profile_with(root=""), "profiles.p.root is required"),
    (profile_with(keyprovider=""), "profiles.p.keyprovider is required"),
    (profile_with(root=f"[{S}]"), "profiles.p.root must be a string"),
    (profile_with(handler="7"), "profiles.p.handler must be a string"),
    (profile_with(keyprovider="3"), "profiles.p.keyprovider must be a string or a list"),
    (profile_with(keyprovider="[]"), "profiles.p.keyprovider must name at least one"),
    (profile_with(keyprovider='["local", 4]'), "profiles.p.keyprovider[1] must be a string"),
    (profile_with(keyprovider_options=S), "profiles.p.keyprovider_options must be a table or"),
    (profile_with(keyprovider_options=f"[{{ path = {S} }}]"), "one entry per key provider"),
    (profile_with(keyprovider='["local", "local"]', keyprovider_options=f"{{ path = {S} }}"),
     "profiles.p.keyprovider_options needs one table per key provider"),
    (profile_with(keyprovider='["local", "local"]', keyprovider_options=f"[{S}, {S}]"),
     "profiles.p.keyprovider_options[0] must be a table"),
    (profile_with(storage_options=S), "profiles.p.storage_options must be a table"),
    (profile_with(serializer="1"), "profiles.p.serializer must be a string"),
    (profile_with(allow_pickle=S), "profiles.p.allow_pickle must be true or false"),
    (profile_with(segment_size="true"), "profiles.p.segment_size must be an integer"),
    (profile_with(segment_size="65536.0"), "profiles.p.segment_size must be an integer"),
    (profile_with(cache=S), "profiles.p.cache must be a table"),
    (profile_with(cache=f"{{ size = {S} }}"), "profiles.p.cache.size is not a known setting"),
    (profile_with(cache=f"{{ max_uses = {S} }}"), "profiles.p.cache.max_uses must be an integer"),
    (profile_with(rooot=S), "profiles.p.rooot is not a known setting"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), MALFORMED)
def test_malformed_config(env: Path, text: str, expected: str) -> None:
    write(env / "work" / "sealed-results.toml", text)
    with pytest.raises(ConfigError) as caught:
        resolve_profile("p")
    assert expected in str(caught.value)
    assert SECRET not in str(caught.value)


def test_config_not_utf8(env: Path) -> None:
    (env / "work" / "sealed-results.toml").write_bytes(b'default_profile = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config()


BUILD_ERRORS = [
    (profile_with(handler=S), PluginNotFound, "profiles.p.handler: no handler plugin"),
    (profile_with(keyprovider=S), PluginNotFound, "profiles.p.keyprovider: no key provider"),
    (profile_with(serializer=S), PluginNotFound, "profiles.p.serializer: no serializer plugin"),
    (profile_with(keyprovider_options=f"{{ paht = {S} }}"), ConfigError,
     "profiles.p.keyprovider options do not fit the LocalKeyring constructor: unexpected 'paht'"),
    (profile_with(keyprovider_options="{}"), ConfigError,
     "missing a required argument: 'path'"),
    (profile_with(handler='"memory"'), ConfigError, "profiles.p: "),
    (profile_with(segment_size="1000"), ConfigError, "profiles.p: segment_size must be a power"),
    (profile_with(cache="{ max_age = -1 }"), ConfigError, "profiles.p.cache"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "error", "expected"), BUILD_ERRORS)
def test_errors_building_the_handler(
    env: Path, text: str, error: type[Exception], expected: str
) -> None:
    write(env / "work" / "sealed-results.toml", text)
    with pytest.raises(error) as caught:
        from_profile("p")
    assert expected in str(caught.value)
    assert SECRET not in str(caught.value)


def test_the_documented_example_is_valid(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text()
    blocks = [b.split("```")[0] for b in docs.split("```toml\n")[1:]]
    [example] = [b for b in blocks if b.startswith("default_profile")]
    write(env / "work" / "sealed-results.toml", example)
    monkeypatch.setenv("VAULT_ADDR", "https://vault.example:8200")
    config = load_config()
    for name in config.profiles:
        assert resolve_profile(name).name == name
    assert resolve_profile().name == "dev"
    assert resolve_profile("prod-dual").keyprovider == ("vault", "aws-kms")


def test_s3_profile_secrets_from_the_environment_survive_pickling(
    env: Path,
    keyring_path: Path,
    s3_root: tuple[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A profile's ``"${VAR}"`` credentials travel as variable names, never as values: the
    unpickled handler in another process reads them from its own environment."""
    import pickle
    import subprocess
    import sys

    root, options = s3_root
    monkeypatch.setenv("SR_TEST_S3_KEY", options["key"])
    monkeypatch.setenv("SR_TEST_S3_SECRET", options["secret"])
    write(
        env / "work" / "sealed-results.toml",
        f"""
        [profiles.cloud]
        handler = "s3"
        root = "{root}"
        keyprovider = "local"
        keyprovider_options = {{ path = "{keyring_path}" }}
        [profiles.cloud.storage_options]
        endpoint_url = "{options["endpoint_url"]}"
        key = "${{SR_TEST_S3_KEY}}"
        secret = "${{SR_TEST_S3_SECRET}}"
        """,
    )
    handler = sealed_results.from_profile("cloud")
    token = handler.write({"from": "parent"})
    blob = pickle.dumps(handler)
    assert options["secret"].encode() not in blob
    (env / "handler.pickle").write_bytes(blob)
    code = (
        "import pickle,sys; h=pickle.load(open(sys.argv[1],'rb')); "
        "assert h.read(sys.argv[2]) == {'from': 'parent'}; print('ok')"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, str(env / "handler.pickle"), token],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert child.stdout.strip() == "ok", child.stderr[-2000:]


def test_durable_and_seal_exceptions_settings(tmp_path: Path) -> None:
    from sealed_results.config import resolve_profile
    from sealed_results.keyproviders.local import create_keyring

    create_keyring(tmp_path / "keys.json")
    config = tmp_path / "sealed-results.toml"
    config.write_text(
        '[profiles.p]\nhandler = "local"\nroot = "./r"\nkeyprovider = "local"\n'
        'keyprovider_options = { path = "keys.json" }\ndurable = true\nseal_exceptions = true\n'
        '[profiles.s3]\nhandler = "s3"\nroot = "s3://b/p"\nkeyprovider = "local"\n'
        'keyprovider_options = { path = "keys.json" }\ndurable = true\n'
    )
    profile = resolve_profile("p", path=config)
    assert profile.durable is True and profile.seal_exceptions is True
    handler = profile.build()
    assert handler.store.settings()["durable"] is True
    assert handler.read(handler.write("x")) == "x"
    with pytest.raises(ConfigError, match="durable"):
        resolve_profile("s3", path=config).build()  # only the local store takes it
