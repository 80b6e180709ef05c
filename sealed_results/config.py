"""The config file: named profiles that build result handlers (``from_profile("prod")``).

Found at ``$SEALED_RESULTS_CONFIG``, else ``./sealed-results.toml``, else
``$XDG_CONFIG_HOME/sealed-results/config.toml`` (XDG default ``~/.config``). The profile is the
name given, else ``$SEALED_RESULTS_PROFILE``, else the file's ``default_profile``.

The file is checked as a whole when it is loaded (shape, types, no secrets); ``${VAR}``
references are expanded only for the profile in use, so a variable that only another profile
needs may be unset. Every ConfigError names the setting (``profiles.prod.root``) and never its
value: these messages can reach the orchestrator's cloud inside a failed task's traceback.
The format is described in docs/config.md.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sealed_results import plugins
from sealed_results.errors import ConfigError
from sealed_results.handlers.base import ResultHandler
from sealed_results.options import is_secret_option

__all__ = [
    "CONFIG_ENV",
    "PROFILE_ENV",
    "Config",
    "Profile",
    "find_config",
    "from_profile",
    "load_config",
    "resolve_profile",
]

CONFIG_ENV = "SEALED_RESULTS_CONFIG"
PROFILE_ENV = "SEALED_RESULTS_PROFILE"
LOCAL_NAME = "sealed-results.toml"

_NUMBER = (int, float)
# setting -> (accepted types, required)
_PROFILE_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "handler": ((str,), True),
    "root": ((str,), True),
    "keyprovider": ((str, list), True),
    "keyprovider_options": ((dict, list), False),
    "storage_options": ((dict,), False),
    "serializer": ((str,), False),
    "allow_pickle": ((bool,), False),
    "segment_size": ((int,), False),
    "cache": ((dict,), False),
    "durable": ((bool,), False),
    "seal_exceptions": ((bool,), False),
}
_CACHE_KEYS = {
    "max_age": _NUMBER,
    "max_uses": (int,),
    "max_bytes": (int,),
    "unwrap_cache_size": (int,),
    "unwrap_ttl": _NUMBER,
}
_TYPE_NAMES = {
    str: "a string",
    list: "a list",
    dict: "a table",
    bool: "true or false",
    int: "an integer",
    float: "a number",
}

# -- secrets ---------------------------------------------------------------------------------
# Which names hold secrets is decided in one place for the config check and for pickling
# (sealed_results.options): any spelling (SSECustomerKey, sse-customer-key), at any depth.
# ``$${`` is a literal ``${``; ``${NAME}`` is an environment variable; any other ``${`` is an error.
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")
_ONLY_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def _refuse_secrets(value: Any, where: str, *, in_storage: bool) -> None:
    """Refuse secret-looking options anywhere below ``where``; a value that is only a ``${VAR}``
    reference is allowed, because the secret itself then stays in the environment."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_secrets(item, f"{where}[{index}]", in_storage=in_storage)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        path = f"{where}.{key}"
        # A gcsfs token method name ("anon", "google_default"...) is not a secret there.
        secret = is_secret_option(key, item, in_storage=in_storage)
        if secret and not (isinstance(item, str) and _ONLY_REFERENCE.fullmatch(item)):
            raise ConfigError(
                f"{path} looks like a secret, and secrets must not be written in the config "
                "file; provide it through the environment (the provider's own variables, "
                'or a reference such as "${MY_VARIABLE}" as the whole value)'
            )
        _refuse_secrets(item, path, in_storage=in_storage)


# -- environment references --------------------------------------------------------------------
def _expand(value: Any, where: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        variable = match.group(1)
        if variable is None:
            raise ConfigError(
                f"{where} has a malformed ${{...}} reference; write $${{ for a literal"
            )
        if variable not in env:
            raise ConfigError(
                f"{where} refers to environment variable {variable}, which is not set"
            )
        return env[variable]

    return _REFERENCE.sub(substitute, value)


# -- the file --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """A parsed, checked config file. ``source`` says how it was found (not where)."""

    path: Path = field(repr=False)
    source: str
    default_profile: str | None
    profiles: dict[str, dict[str, Any]] = field(repr=False)


def find_config() -> tuple[Path, str] | None:
    """The config file to use and how it was found, or None when there is none."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            # Falling through to another file would silently use the wrong settings.
            raise ConfigError(f"{CONFIG_ENV} is set but names no readable file")
        return path, f"${CONFIG_ENV}"
    local = Path(LOCAL_NAME)
    if local.is_file():
        return local.resolve(), f"./{LOCAL_NAME}"
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    user = base / "sealed-results" / "config.toml"
    if user.is_file():
        return user, "$XDG_CONFIG_HOME/sealed-results/config.toml"
    return None


def _type_error(where: str, types: tuple[type, ...]) -> ConfigError:
    return ConfigError(f"{where} must be {' or '.join(_TYPE_NAMES[t] for t in types)}")


def _is_a(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int in Python but not in TOML: ``segment_size = true`` is a mistake.
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def _check_profile(name: str, profile: Any) -> None:
    where = f"profiles.{name}"
    if not isinstance(profile, dict):
        raise ConfigError(f"{where} must be a table")
    _refuse_secrets(
        profile.get("keyprovider_options"), f"{where}.keyprovider_options", in_storage=False
    )
    _refuse_secrets(profile.get("storage_options"), f"{where}.storage_options", in_storage=True)
    for key in profile:
        if key not in _PROFILE_KEYS:
            if is_secret_option(key, profile[key], in_storage=False):
                raise ConfigError(f"{where}.{key} looks like a secret and is not a setting")
            raise ConfigError(
                f"{where}.{key} is not a known setting; the settings are: "
                + ", ".join(_PROFILE_KEYS)
            )
    for key, (types, required) in _PROFILE_KEYS.items():
        if key not in profile:
            if required:
                raise ConfigError(f"{where}.{key} is required")
            continue
        if not _is_a(profile[key], types):
            raise _type_error(f"{where}.{key}", types)
    providers = profile["keyprovider"]
    if isinstance(providers, list):
        if not providers:
            raise ConfigError(f"{where}.keyprovider must name at least one key provider")
        for index, item in enumerate(providers):
            if not isinstance(item, str):
                raise _type_error(f"{where}.keyprovider[{index}]", (str,))
    options = profile.get("keyprovider_options")
    if isinstance(options, list):
        if not isinstance(providers, list) or len(options) != len(providers):
            raise ConfigError(
                f"{where}.keyprovider_options must be a table, or a list of tables with one "
                "entry per key provider"
            )
        for index, item in enumerate(options):
            if not isinstance(item, dict):
                raise _type_error(f"{where}.keyprovider_options[{index}]", (dict,))
    elif isinstance(options, dict) and isinstance(providers, list) and len(providers) > 1:
        raise ConfigError(f"{where}.keyprovider_options needs one table per key provider")
    for key, value in profile.get("cache", {}).items():
        if key not in _CACHE_KEYS:
            raise ConfigError(
                f"{where}.cache.{key} is not a known setting; the settings are: "
                + ", ".join(_CACHE_KEYS)
            )
        if not _is_a(value, _CACHE_KEYS[key]):
            raise _type_error(f"{where}.cache.{key}", _CACHE_KEYS[key])


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and check the config file (``path``, else the one ``find_config`` finds)."""
    if path is not None:
        found: tuple[Path, str] | None = (Path(path), "the given path")
    else:
        found = find_config()
    if found is None:
        raise ConfigError(
            f"no config file found: set {CONFIG_ENV}, or create ./{LOCAL_NAME} or "
            "$XDG_CONFIG_HOME/sealed-results/config.toml"
        )
    file, source = found
    try:
        document = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("the config file cannot be read") from exc
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages end with the position; the rest is generic, and no value is shown.
        position = re.search(r"\(at (line \d+, column \d+|end of document)\)", str(exc))
        at = f" ({position.group(1)})" if position else ""
        raise ConfigError(f"the config file is not valid TOML{at}") from None
    except UnicodeDecodeError:
        raise ConfigError("the config file is not UTF-8 text") from None
    for key in document:
        if key not in ("default_profile", "profiles"):
            raise ConfigError(f"{key} is not a known top-level setting")
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError("profiles must be a table of profiles")
    for name, profile in profiles.items():
        _check_profile(name, profile)
    default = document.get("default_profile")
    if default is not None:
        if not isinstance(default, str):
            raise _type_error("default_profile", (str,))
        if default not in profiles:
            raise ConfigError("default_profile names no profile of this file")
    return Config(path=file.resolve(), source=source, default_profile=default, profiles=profiles)


# -- profiles --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """The resolved settings of one profile: ``${VAR}`` expanded, relative paths anchored at
    the config file's directory. Roots and options stay out of the repr."""

    name: str
    handler: str
    root: str = field(repr=False)
    keyprovider: tuple[str, ...]
    keyprovider_options: tuple[dict[str, Any], ...] = field(repr=False)
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    serializer: str = "msgpack"
    allow_pickle: bool = False
    segment_size: int | None = None
    cache: dict[str, Any] | None = None
    # Local store: fsync every result write (docs/stores.md has the cost).
    durable: bool | None = None
    # Orchestrator adapters: seal failure messages of every run that uses this profile.
    seal_exceptions: bool = False
    # Secret storage options written as "${VAR}": the handler reads VAR again wherever it is
    # unpickled, since pickles carry no secrets (docs/stores.md).
    credentials_from_env: dict[str, str] = field(default_factory=dict, repr=False)

    def build(self) -> ResultHandler:
        """The result handler these settings describe (through ``plugins.build_handler``)."""
        options: dict[str, Any] = {"root": self.root, "allow_pickle": self.allow_pickle}
        if self.segment_size is not None:
            options["segment_size"] = self.segment_size
        if self.durable is not None:
            options["durable"] = self.durable
        if self.storage_options:
            options["storage_options"] = self.storage_options
        if self.credentials_from_env:
            options["credentials_from_env"] = self.credentials_from_env
        return plugins.build_handler(
            self.handler,
            keyprovider=list(self.keyprovider),
            keyprovider_options=list(self.keyprovider_options),
            cache=self.cache,
            serializer=self.serializer,
            setting=f"profiles.{self.name}",
            **options,
        )


def _anchor(path: str, base: Path) -> str:
    """A local path relative to the config file's directory, so a worker started anywhere
    finds the same files; URLs and absolute paths are left alone."""
    if "://" in path:
        return path
    expanded = Path(path).expanduser()
    return str(expanded if expanded.is_absolute() else base / expanded)


def _choose(config: Config, name: str | None) -> str:
    chosen = name or os.environ.get(PROFILE_ENV) or config.default_profile
    if not chosen:
        raise ConfigError(
            f"no profile chosen: pass a profile name, set {PROFILE_ENV}, or set default_profile"
        )
    if chosen not in config.profiles:
        known = ", ".join(sorted(config.profiles)) or "(none)"
        raise ConfigError(f"no profile of that name in the config file; its profiles are: {known}")
    return chosen


def resolve_profile(
    name: str | None = None, *, path: str | os.PathLike[str] | None = None
) -> Profile:
    """The settings of profile ``name`` (else ``$SEALED_RESULTS_PROFILE``, else the file's
    ``default_profile``), with environment references expanded."""
    config = load_config(path)
    chosen = _choose(config, name)
    where = f"profiles.{chosen}"
    references = {
        key: value[2:-1]
        for key, value in config.profiles[chosen].get("storage_options", {}).items()
        if isinstance(value, str)
        and _ONLY_REFERENCE.fullmatch(value)
        and is_secret_option(key, value, in_storage=True)
    }
    raw = _expand(config.profiles[chosen], where, os.environ)
    providers = raw["keyprovider"]
    providers = tuple(providers) if isinstance(providers, list) else (providers,)
    options = raw.get("keyprovider_options", {})
    tables = [dict(t) for t in (options if isinstance(options, list) else [options])]
    tables += [{} for _ in range(len(providers) - len(tables))]
    base = config.path.parent
    for provider, table in zip(providers, tables, strict=True):
        # The local keyring is the one built-in whose option is a file path.
        if provider == "local" and isinstance(table.get("path"), str):
            table["path"] = _anchor(table["path"], base)
    return Profile(
        name=chosen,
        handler=raw["handler"],
        # Only the local handler's root is a path; other roots are URLs or names.
        root=_anchor(raw["root"], base) if raw["handler"] == "local" else raw["root"],
        keyprovider=providers,
        keyprovider_options=tuple(tables),
        storage_options=raw.get("storage_options", {}),
        serializer=raw.get("serializer", "msgpack"),
        allow_pickle=raw.get("allow_pickle", False),
        segment_size=raw.get("segment_size"),
        durable=raw.get("durable"),
        seal_exceptions=raw.get("seal_exceptions", False),
        cache=raw.get("cache"),
        credentials_from_env=references,
    )


def from_profile(
    name: str | None = None, *, path: str | os.PathLike[str] | None = None
) -> ResultHandler:
    """The result handler of profile ``name`` (None: the default profile)."""
    return resolve_profile(name, path=path).build()
