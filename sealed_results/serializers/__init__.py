"""Serializers: how a value becomes the plaintext bytes that get sealed, and back.

Every sealed payload records the ``name`` of the serializer that wrote it, so a reader picks the
right one without being told. ``msgpack`` is the default; ``json`` is for interop; ``bytes``
stores bytes as they are (``write_stream``); ``pickle`` runs code on load and is only used on
explicit opt-in. Other serializers are plugins registered under the entry-point group
``sealed_results.serializers``; ``resolve`` is the one place that turns a name into a
serializer, for handlers, profiles and ``sealed_results.handler`` alike.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from sealed_results.errors import ConfigError, PluginNotFound
from sealed_results.serializers.base import MAX_DEPTH, BytesLike, Serializer
from sealed_results.serializers.json import JsonSerializer
from sealed_results.serializers.msgpack import MsgpackSerializer
from sealed_results.serializers.pickle import PickleSerializer
from sealed_results.serializers.raw import RawBytesSerializer

__all__ = [
    "BUILTIN_SERIALIZERS",
    "GROUP",
    "MAX_DEPTH",
    "BytesLike",
    "JsonSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "RawBytesSerializer",
    "Serializer",
    "get_serializer",
    "resolve",
]

GROUP = "sealed_results.serializers"

# Built-in names always mean these classes: a plugin cannot replace one, by accident or not.
BUILTIN_SERIALIZERS: dict[str, type[Serializer]] = {
    "msgpack": MsgpackSerializer,
    "json": JsonSerializer,
    "pickle": PickleSerializer,
    "bytes": RawBytesSerializer,
}


def resolve(name_or_instance: str | Serializer) -> Serializer:
    """The serializer for an instance (itself), a built-in name, or a plugin's name.

    PluginNotFound when no plugin of that name is installed or it fails to load; the message
    never repeats an unknown name, which may come from a stored payload or a setting.
    """
    if isinstance(name_or_instance, Serializer):
        return name_or_instance
    if not isinstance(name_or_instance, str):
        raise ConfigError("a serializer is a Serializer instance or the name of one")
    builtin = BUILTIN_SERIALIZERS.get(name_or_instance)
    if builtin is not None:
        return builtin()
    return _plugin(name_or_instance)


get_serializer = resolve  # the earlier name


def _distribution(ep: EntryPoint) -> str:
    return (ep.dist.metadata["Name"] or ep.dist.name) if ep.dist is not None else "?"


def _summary(exc: BaseException) -> str:
    # An import error names the missing module, which is what the user needs to fix; any other
    # exception shows only its type, since its text is the plugin's and may say anything.
    if isinstance(exc, ImportError) and exc.name:
        return f"{type(exc).__name__}: missing module {exc.name!r}"
    return type(exc).__name__


def _plugin(name: str) -> Serializer:
    # Like the plugin registry, the first distribution by name wins when several register one.
    found = sorted(entry_points(group=GROUP, name=name), key=lambda ep: _distribution(ep).lower())
    if not found:
        known = sorted({*BUILTIN_SERIALIZERS, *(ep.name for ep in entry_points(group=GROUP))})
        raise PluginNotFound(
            "no serializer plugin of that name is installed; the registered serializers are: "
            f"{', '.join(known)}; install the distribution that provides it "
            "(pip install <distribution>) in every environment that writes or reads results"
        )
    ep = found[0]
    try:
        obj = ep.load()
        if isinstance(obj, type) and issubclass(obj, Serializer):
            obj = obj()
        if not isinstance(obj, Serializer):
            raise TypeError("not a Serializer")
    except Exception as exc:
        raise PluginNotFound(
            f"the {name} serializer plugin (from {_distribution(ep)}) failed to load "
            f"({_summary(exc)}); reinstall it and its dependencies"
        ) from exc
    return obj
