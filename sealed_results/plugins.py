"""The plugin registry: handlers, key providers and serializers found by name.

Plugins register under three entry-point groups (``sealed_results.handlers``,
``sealed_results.keyproviders``, ``sealed_results.serializers``); the built-ins register through
the same groups. Like keyring's backends, plugins load lazily, one at a time: a plugin whose
import fails is reported by ``list_plugins()`` and never breaks the others, and asking for it by
name raises ``PluginNotFound`` with the extra that provides it.

Built-in names always resolve to the built-in classes, even when another distribution registers
the same name (a plugin must not be able to replace ``local`` by accident or on purpose) and
even when sealed-results runs from a source tree without installed metadata.

``build_handler`` is the one handler factory: ``sealed_results.handler(...)`` and a config
profile's ``build()`` both go through it, so a name, a key provider list, a cache table or a
serializer means the same wherever it is written. Serializer names are resolved by
``sealed_results.serializers.resolve`` (handlers resolve the name stored in a payload there too).
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from sealed_results._version import __version__
from sealed_results.errors import ConfigError, PluginNotFound
from sealed_results.handlers.base import ResultHandler
from sealed_results.keyproviders import (
    CachingKeyProvider,
    KeyMaterials,
    KeyProvider,
    MultiKeyProvider,
)
from sealed_results.serializers import Serializer, resolve

__all__ = [
    "GROUPS",
    "PluginInfo",
    "build_handler",
    "build_keyprovider",
    "check_options",
    "get_serializer",
    "handler",
    "list_plugins",
    "load_handler_class",
    "load_keyprovider_class",
]

HANDLERS = "sealed_results.handlers"
KEYPROVIDERS = "sealed_results.keyproviders"
SERIALIZERS = "sealed_results.serializers"
GROUPS = (HANDLERS, KEYPROVIDERS, SERIALIZERS)

_DIST = "sealed-results"
# Mirrors pyproject.toml (a test keeps the two equal): the fallback when metadata is missing.
_BUILTINS: dict[str, dict[str, str]] = {
    HANDLERS: {
        "local": "sealed_results.handlers:LocalHandler",
        "memory": "sealed_results.handlers:MemoryHandler",
        "s3": "sealed_results.handlers:S3Handler",
        "gcs": "sealed_results.handlers:GCSHandler",
        "azure": "sealed_results.handlers:AzureBlobHandler",
    },
    KEYPROVIDERS: {
        "local": "sealed_results.keyproviders.local:LocalKeyring",
        "vault": "sealed_results.keyproviders.vault:VaultTransit",
        "aws-kms": "sealed_results.keyproviders.kms:AwsKms",
    },
    SERIALIZERS: {
        "msgpack": "sealed_results.serializers:MsgpackSerializer",
        "json": "sealed_results.serializers:JsonSerializer",
        "pickle": "sealed_results.serializers:PickleSerializer",
    },
}
# Built-ins whose third-party dependency ships as an optional extra: (extra, module). The cloud
# handlers import their SDK only on first use, so the module is looked for at load time: a
# missing s3fs then fails when the plugin is named, with the fix, not at the first write.
_EXTRAS = {
    (HANDLERS, "s3"): ("s3", "s3fs"),
    (HANDLERS, "gcs"): ("gcs", "gcsfs"),
    (HANDLERS, "azure"): ("azure", "adlfs"),
    (KEYPROVIDERS, "vault"): ("vault", "hvac"),
    (KEYPROVIDERS, "aws-kms"): ("kms", "boto3"),
}
_KIND = {HANDLERS: "handler", KEYPROVIDERS: "key provider", SERIALIZERS: "serializer"}
_BASE: dict[str, type] = {HANDLERS: ResultHandler, KEYPROVIDERS: KeyProvider}


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin: where it comes from and whether it loads."""

    name: str
    group: str
    distribution: str
    version: str
    loaded: bool
    error: str | None = None  # a one-line summary when it does not load


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    """(distribution name, version); the built-in fallback entry points have no metadata."""
    dist = ep.dist
    if dist is None:
        return _DIST, __version__
    return dist.metadata["Name"] or dist.name, dist.version


def _is_ours(ep: EntryPoint) -> bool:
    return _dist_of(ep)[0].lower().replace("_", "-") == _DIST


def _builtin_ep(group: str, name: str) -> EntryPoint:
    return EntryPoint(name=name, value=_BUILTINS[group][name], group=group)


def _candidates(group: str) -> dict[str, list[EntryPoint]]:
    """Entry points by name, the one that wins first; built-ins are always present."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in sorted(entry_points(group=group), key=lambda e: _dist_of(e)[0].lower()):
        found.setdefault(ep.name, []).append(ep)
    for name in _BUILTINS.get(group, {}):
        eps = found.setdefault(name, [])
        ours = [ep for ep in eps if _is_ours(ep)]
        others = [ep for ep in eps if not _is_ours(ep)]
        found[name] = [ours[0] if ours else _builtin_ep(group, name), *others]
    return found


def _summary(exc: BaseException) -> str:
    # Import errors name the missing module, which is what the user needs to fix; other
    # exceptions show only their type, since their text is the plugin's and may say anything.
    if isinstance(exc, ImportError) and exc.name:
        return f"{type(exc).__name__}: missing module {exc.name!r}"
    return type(exc).__name__


def _check(group: str, obj: Any) -> Any:
    base = _BASE.get(group)
    if base is not None and not (isinstance(obj, type) and issubclass(obj, base)):
        raise TypeError(f"not a {base.__name__} subclass")
    if group == SERIALIZERS and not (
        isinstance(obj, Serializer) or (isinstance(obj, type) and issubclass(obj, Serializer))
    ):
        raise TypeError("not a Serializer")
    return obj


def _load_ep(group: str, ep: EntryPoint) -> Any:
    needs = _EXTRAS.get((group, ep.name))
    if needs is not None and _is_ours(ep) and importlib.util.find_spec(needs[1]) is None:
        raise ModuleNotFoundError(f"No module named {needs[1]!r}", name=needs[1])
    return _check(group, ep.load())


def list_plugins(groups: Sequence[str] = GROUPS) -> list[PluginInfo]:
    """Every registered plugin of ``groups``, each imported once to tell whether it loads.

    A plugin that fails to import is listed with its error summary; it stops nothing else.
    """
    infos: list[PluginInfo] = []
    for group in groups:
        for name, eps in sorted(_candidates(group).items()):
            for position, ep in enumerate(eps):
                dist, version = _dist_of(ep)
                if position > 0:
                    infos.append(
                        PluginInfo(name, group, dist, version, False, "shadowed by another plugin")
                    )
                    continue
                try:
                    _load_ep(group, ep)
                except Exception as exc:  # a broken plugin is reported, never fatal
                    infos.append(PluginInfo(name, group, dist, version, False, _summary(exc)))
                else:
                    infos.append(PluginInfo(name, group, dist, version, True))
    return infos


def _installed(group: str) -> list[str]:
    return sorted(_candidates(group))


def _load(group: str, name: str, *, setting: str | None = None) -> Any:
    """The object behind plugin ``name`` of ``group``; PluginNotFound when it is missing or
    broken. ``setting`` (a config path) prefixes the message so users see where it came from."""
    prefix = f"{setting}: " if setting else ""
    kind = _KIND[group]
    eps = _candidates(group).get(name) if isinstance(name, str) else None
    extra = _EXTRAS.get((group, name), ("", ""))[0] if isinstance(name, str) else ""
    hint = f'; install it with: pip install "sealed-results[{extra}]"' if extra else ""
    if not eps:
        # The requested name is not echoed: it is a setting value and may be anything.
        raise PluginNotFound(
            f"{prefix}no {kind} plugin of that name is installed; the registered {kind}s are: "
            f"{', '.join(_installed(group))}"
        )
    ep = eps[0]
    try:
        return _load_ep(group, ep)
    except Exception as exc:
        missing = (exc.name or "") if isinstance(exc, ImportError) else ""
        if _is_ours(ep) and missing.partition(".")[0] == "sealed_results":
            message = f"the {name} {kind} is not part of this installation of sealed-results"
        elif extra:
            message = f"the {name} {kind} needs an optional dependency that is not installed{hint}"
        else:
            dist = _dist_of(ep)[0]
            message = (
                f"the {name} {kind} plugin (from {dist}) failed to load ({_summary(exc)}); "
                "reinstall it and its dependencies"
            )
        raise PluginNotFound(prefix + message) from exc


def load_handler_class(name: str, *, setting: str | None = None) -> type[ResultHandler]:
    """The ResultHandler subclass registered as ``name`` (``"local"``, ``"s3"``, ...)."""
    cls: type[ResultHandler] = _load(HANDLERS, name, setting=setting)
    return cls


def load_keyprovider_class(name: str, *, setting: str | None = None) -> type[KeyProvider]:
    """The KeyProvider subclass registered as ``name`` (``"local"``, ``"vault"``, ...)."""
    cls: type[KeyProvider] = _load(KEYPROVIDERS, name, setting=setting)
    return cls


def get_serializer(name_or_instance: str | Serializer, *, setting: str | None = None) -> Serializer:
    """``serializers.resolve``, with ``setting`` (a config path) in front of its messages."""
    try:
        return resolve(name_or_instance)
    except ConfigError as exc:  # PluginNotFound is one
        if not setting:
            raise
        raise type(exc)(f"{setting}: {exc}") from exc


def _accepted_names(cls: type) -> set[str] | None:
    """Keyword names the constructor chain accepts; None when it takes any keyword. A subclass
    that passes ``**options`` up (FsspecHandler -> ResultHandler) is followed along the MRO,
    and a named handler's ``**options`` go to its ``store_class``: they are that one's names."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        try:
            parameters = inspect.signature(vars(klass)["__init__"]).parameters.values()
        except (TypeError, ValueError):
            return None
        names |= {p.name for p in parameters if p.kind is not p.VAR_KEYWORD}
        if all(p.kind is not p.VAR_KEYWORD for p in parameters):
            return names
    store_class = getattr(cls, "store_class", None)
    if issubclass(cls, ResultHandler) and isinstance(store_class, type):
        store_names = _accepted_names(store_class)
        return None if store_names is None else names | (store_names - {"root"})
    return None


def check_options(cls: type, options: dict[str, Any], setting: str, *args: Any) -> None:
    """Check options against the constructor before calling it, so a misspelt or missing
    option is a ConfigError that names options (never values), not a TypeError."""
    accepted = _accepted_names(cls)
    unknown = sorted(set(options) - accepted) if accepted is not None else []
    if unknown:
        raise ConfigError(
            f"{setting} do not fit the {cls.__name__} constructor: unexpected "
            + ", ".join(repr(name) for name in unknown)
        )
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as exc:
        # Python's binding messages name parameters only ("missing a required argument: 'x'").
        raise ConfigError(f"{setting} do not fit the {cls.__name__} constructor: {exc}") from None
    except ValueError:  # no signature to check: let the constructor decide
        pass


def _keyprovider_options(options: Any, count: int) -> list[dict[str, Any]]:
    if options is None:
        return [{} for _ in range(count)]
    if count == 1 and isinstance(options, dict):
        return [options]
    if (
        isinstance(options, list)
        and len(options) == count
        and all(isinstance(o, dict) for o in options)
    ):
        return options
    raise ConfigError(
        "keyprovider_options must be a table for one key provider, or a list of tables with "
        "one entry per key provider"
    )


def build_keyprovider(
    spec: str | KeyProvider | KeyMaterials | Sequence[str | KeyProvider | KeyMaterials],
    options: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    *,
    setting: str = "keyprovider",
) -> KeyProvider | KeyMaterials | list[KeyProvider | KeyMaterials]:
    """A key provider from an instance or a plugin name with its ``options``; for a list, a
    list of providers (``options`` then one table per entry, ``{}`` for instances)."""
    specs = list(spec) if isinstance(spec, list | tuple) else [spec]
    if not specs:
        raise ConfigError(f"{setting} names no key provider")
    tables = _keyprovider_options(options, len(specs))
    providers: list[KeyProvider | KeyMaterials] = []
    for index, (item, opts) in enumerate(zip(specs, tables, strict=True)):
        where = f"{setting}[{index}]" if len(specs) > 1 else setting
        if isinstance(item, KeyProvider | KeyMaterials):
            if opts:
                raise ConfigError(f"{where} is an instance; it takes no keyprovider_options")
            providers.append(item)
        elif isinstance(item, str):
            cls = load_keyprovider_class(item, setting=where)
            check_options(cls, opts, f"{where} options")
            try:
                providers.append(cls(**opts))
            except ConfigError as exc:
                raise type(exc)(f"{where}: {exc}") from exc
        else:
            raise ConfigError(f"{where} must be a KeyProvider instance or a plugin name")
    return providers if isinstance(spec, list | tuple) else providers[0]


def _with_cache(
    keyprovider: KeyProvider | KeyMaterials | list[KeyProvider | KeyMaterials],
    cache: Mapping[str, Any],
    where: str,
) -> KeyMaterials:
    if isinstance(keyprovider, list):
        keyprovider = MultiKeyProvider(*keyprovider)
    check_options(CachingKeyProvider, dict(cache), where, keyprovider)
    try:
        return CachingKeyProvider(keyprovider, **cache)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def build_handler(
    name: str,
    /,
    *,
    keyprovider: str | KeyProvider | KeyMaterials | Sequence[str | KeyProvider | KeyMaterials],
    keyprovider_options: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    cache: Mapping[str, Any] | None = None,
    serializer: str | Serializer | None = None,
    setting: str | None = None,
    **options: Any,
) -> ResultHandler:
    """The one handler factory: handler plugin ``name`` over the key provider(s) described by
    ``keyprovider`` (an instance, a plugin name with ``keyprovider_options``, or a list of
    either, then every provider wraps each data key), with a data-key cache when ``cache``
    holds CachingKeyProvider's bounds, and ``serializer`` (an instance or a name). Other
    ``options`` (``root``, ``storage_options``, ``segment_size``...) go to the handler class.

    ``setting`` is where the description came from (``profiles.prod`` of the config file): it
    prefixes every error message, which names settings and options, never their values.
    """
    at = f"{setting}." if setting else ""
    cls = load_handler_class(name, setting=f"{at}handler" if setting else None)
    built = build_keyprovider(keyprovider, keyprovider_options, setting=f"{at}keyprovider")
    if isinstance(built, list) and len(built) == 1:
        built = built[0]  # one provider in a list is that provider, not a group of one
    providers: KeyProvider | KeyMaterials | list[KeyProvider | KeyMaterials] = built
    if cache is not None:
        providers = _with_cache(providers, cache, f"{at}cache")
    if serializer is not None:
        options["serializer"] = get_serializer(serializer, setting=f"{at}serializer")
    check_options(
        cls,
        {**options, "keyprovider": providers},
        f"{setting} settings" if setting else "handler options",
    )
    try:
        return cls(keyprovider=providers, **options)
    except ConfigError as exc:
        if not setting:
            raise
        raise type(exc)(f"{setting}: {exc}") from exc


def handler(
    name: str,
    /,
    *,
    keyprovider: str | KeyProvider | KeyMaterials | Sequence[str | KeyProvider | KeyMaterials],
    keyprovider_options: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    cache: Mapping[str, Any] | None = None,
    **options: Any,
) -> ResultHandler:
    """Build a result handler by plugin name::

        h = sealed_results.handler("s3", root="s3://bucket/prefix", keyprovider="vault",
                                   keyprovider_options={"url": ..., "key": "results"})

    ``keyprovider`` is an instance, a plugin name (with ``keyprovider_options``), or a list of
    either: then every provider wraps each data key and any one of them opens it. ``cache``
    (e.g. ``{"max_age": 300}``) puts a data-key cache in front of the provider(s).
    """
    return build_handler(
        name,
        keyprovider=keyprovider,
        keyprovider_options=keyprovider_options,
        cache=cache,
        **options,
    )
