"""Values sealed into tokens that name their profile, and the redaction of what was sealed.

Framework-neutral pieces that orchestrator adapters share (``sealed_results.prefect`` uses
them for sealed parameters, sealed exception messages and log redaction):

- ``seal(value, profile=None) -> "sealed:<profile>:<token>"`` stores ``value`` encrypted in the
  profile's store and returns a string that is safe to hand to any orchestrator: the profile
  name (empty for the default profile of the machine that opens it) and the store's opaque
  token. ``unseal(text)`` opens it again wherever the profile is configured.
- ``seal_exception(exc, profile)`` seals an exception's type, message and formatted traceback
  and remembers the token on the exception, so every later report of it shows
  ``[sealed message sealed:...]`` instead of the message.
- ``REDACTOR`` knows every string this process must not ship: the settings of the profiles it
  built (roots, bucket and key names, keyring paths, provider addresses), the values it
  unsealed, the messages it sealed and configured patterns (``add_pattern`` or
  ``$SEALED_RESULTS_REDACT_PATTERNS``, one regular expression per line). ``redact(text)``
  rewrites them; orchestrator log handlers call it before records are shipped.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import json
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sealed_results.config import CONFIG_ENV, PROFILE_ENV, Profile, resolve_profile
from sealed_results.errors import ConfigError, IntegrityError
from sealed_results.format.token import TOKEN_LENGTH
from sealed_results.handlers.base import ResultHandler

__all__ = [
    "CREDENTIAL_VARIABLES",
    "EXCEPTION_KIND",
    "PATTERNS_ENV",
    "REDACTOR",
    "TOKEN_FORMAT",
    "TOKEN_PATTERN",
    "Redactor",
    "RemoteException",
    "SealedToken",
    "exception_placeholder",
    "exception_record",
    "exception_token",
    "find_tokens",
    "is_exception_record",
    "is_sealed_token",
    "open_token",
    "parse_token",
    "profile_handler",
    "rebuild_exception",
    "seal",
    "seal_exception",
    "unseal",
]

#: The JSON-schema ``format`` of a sealed value.
TOKEN_FORMAT = "sealed-results-token"
PREFIX = "sealed"
_PROFILE_NAME = r"[A-Za-z0-9_.-]{0,64}"
#: A sealed value anywhere in a text: ``sealed:<profile>:<token>``.
TOKEN_PATTERN = re.compile(
    rf"{PREFIX}:({_PROFILE_NAME}):([A-Za-z0-9_-]{{{TOKEN_LENGTH}}})(?![A-Za-z0-9_-])"
)
_WHOLE = re.compile(rf"{PREFIX}:{_PROFILE_NAME}:[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")
#: The ``kind`` field of a sealed exception record.
EXCEPTION_KIND = "sealed-results-exception"
PATTERNS_ENV = "SEALED_RESULTS_REDACT_PATTERNS"
# Shorter strings are not redacted as text: rewriting every "id" or "ok" in a log would destroy
# it and protect nothing.
MIN_SECRET_LENGTH = 4
_TOKEN_ATTRIBUTE = "__sealed_results_token__"


@dataclass(frozen=True)
class SealedToken:
    """A parsed ``sealed:<profile>:<token>``; ``profile`` is None for the default profile."""

    profile: str | None
    token: str

    def __str__(self) -> str:
        return f"{PREFIX}:{self.profile or ''}:{self.token}"


def is_sealed_token(text: object) -> bool:
    return isinstance(text, str) and _WHOLE.fullmatch(text) is not None


def parse_token(text: str) -> SealedToken:
    """The parts of a sealed value; IntegrityError when ``text`` is not one."""
    match = TOKEN_PATTERN.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise IntegrityError()
    return SealedToken(match.group(1) or None, match.group(2))


def find_tokens(text: str) -> Iterator[re.Match[str]]:
    """Every sealed value in ``text``, as regular-expression matches."""
    return TOKEN_PATTERN.finditer(text)


# -- handlers, one per (config file, profile variable, profile) per process -----------------
_HANDLERS: dict[tuple[str | None, str | None, str | None, tuple[Any, ...]], ResultHandler] = {}
_HANDLERS_LOCK = threading.Lock()


def profile_handler(profile: str | None, **replace: Any) -> ResultHandler:
    """The handler of ``profile`` (None: the default profile here), cached per process and per
    environment; ``replace`` changes profile settings (``serializer="bytes"``). The profile's
    settings are registered with ``REDACTOR``."""
    cache_key = (
        os.environ.get(CONFIG_ENV),
        os.environ.get(PROFILE_ENV),
        profile,
        tuple(sorted(replace.items())),
    )
    handler = _HANDLERS.get(cache_key)
    if handler is None:
        with _HANDLERS_LOCK:
            handler = _HANDLERS.get(cache_key)
            if handler is None:
                settings = resolve_profile(profile)
                REDACTOR.add_profile(settings)
                if replace:
                    settings = dataclasses.replace(settings, **replace)
                handler = _HANDLERS[cache_key] = settings.build()
    return handler


def _check_profile_name(profile: str | None) -> None:
    if profile is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", profile):
        raise ConfigError(
            "a profile named in a sealed value must be 1 to 64 letters, digits, '_', '.' or "
            "'-'; use profile=None for the default profile"
        )


def seal(value: Any, profile: str | None = None) -> str:
    """Store ``value`` sealed under ``profile`` and return ``sealed:<profile>:<token>``: safe
    to pass as an orchestrator parameter. The value is serialized by the profile's serializer
    (msgpack by default)."""
    _check_profile_name(profile)
    token = profile_handler(profile).write(value)
    return str(SealedToken(profile, token))


def open_token(sealed: SealedToken, profile: str | None = None) -> Any:
    """The value behind a parsed token, opened with ``profile`` when given (else the profile
    the token names, else the default profile)."""
    return profile_handler(profile or sealed.profile).read(sealed.token)


def unseal(text: str, profile: str | None = None) -> Any:
    """The value behind ``sealed:<profile>:<token>``; the value is remembered by ``REDACTOR``
    (it is now plaintext in this process and must not be shipped in a log)."""
    sealed = parse_token(text)
    value = open_token(sealed, profile)
    REDACTOR.add_value(value, str(sealed))
    return value


# -- exceptions --------------------------------------------------------------------------------
def exception_placeholder(token: str) -> str:
    """What an orchestrator sees in place of a sealed exception message."""
    return f"[sealed message {token}]"


def exception_token(exc: BaseException) -> str | None:
    """The token of an exception sealed by ``seal_exception`` in this process, if any."""
    token = getattr(exc, _TOKEN_ATTRIBUTE, None)
    return token if isinstance(token, str) else None


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def exception_record(exc: BaseException) -> dict[str, Any]:
    """What is sealed for an exception: its type, message, arguments (when plain) and the
    formatted traceback, chained causes included."""
    args = [a for a in exc.args if isinstance(a, str | int | float | bool | None)]
    return {
        "kind": EXCEPTION_KIND,
        "type": _type_name(exc),
        "message": str(exc),
        "args": args if len(args) == len(exc.args) else [str(exc)],
        "traceback": "".join(traceback.format_exception(exc)),
    }


def seal_exception(exc: BaseException, profile: str | None = None) -> str:
    """Seal ``exc`` (``exception_record``) once; return its token. Its message and the
    messages of its chained causes are then redacted by ``REDACTOR`` wherever they appear."""
    known = exception_token(exc)
    if known is not None:
        return known
    _check_profile_name(profile)
    token = str(SealedToken(profile, profile_handler(profile).write(exception_record(exc))))
    with contextlib.suppress(AttributeError, TypeError):  # an exception without a __dict__
        setattr(exc, _TOKEN_ATTRIBUTE, token)
    placeholder = exception_placeholder(token)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        REDACTOR.add_secret(str(current), placeholder, rank=2)
        current = current.__cause__ or current.__context__
    return token


class RemoteException(Exception):
    """An exception read back from a sealed record whose type is not importable here."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


def is_exception_record(value: Any) -> bool:
    return isinstance(value, dict) and value.get("kind") == EXCEPTION_KIND


def rebuild_exception(record: dict[str, Any]) -> BaseException:
    """An exception from an ``exception_record``: its own type when that type is a builtin or
    already imported here (nothing is imported) and accepts the recorded arguments, else
    ``RemoteException``. The original traceback is attached as a note."""
    type_name = str(record.get("type", "Exception"))
    message = str(record.get("message", ""))
    args = record.get("args") or [message]
    module, _, name = type_name.rpartition(".")
    cls: Any = sys.modules.get(module) if module else builtins
    for part in name.split("."):
        cls = getattr(cls, part, None) if cls is not None else None
    exc: BaseException | None = None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            exc = cls(*args)
        except Exception:
            exc = None
        if exc is not None and str(exc) != message:
            exc = None
    if exc is None:
        exc = RemoteException(type_name, message)
    text = record.get("traceback")
    if isinstance(text, str) and text:
        exc.add_note("Raised where it ran (sealed by sealed-results):\n" + text)
    return exc


# -- redaction ---------------------------------------------------------------------------------
def _escaped_forms(text: str) -> set[str]:
    """The text as it appears inside a repr or a JSON string too."""
    forms = {
        text,
        repr(text)[1:-1],
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
    }
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def _leaves(value: Any, depth: int = 0) -> Iterator[str]:
    if depth > 20:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif isinstance(value, dict):
        for item in value.values():  # keys name fields; they are no secrets
            yield from _leaves(item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _leaves(item, depth + 1)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def _profile_strings(profile: Profile) -> Iterator[str]:
    """The settings of a profile that would tell where results are and which keys guard them."""
    yield from _leaves(profile.root)
    if "://" not in profile.root:
        yield from _path_parts(profile.root)
    for table in profile.keyprovider_options:
        for value in _leaves(table):
            yield value
            if os.sep in value:
                yield from _path_parts(value)
    yield from _leaves(profile.storage_options)
    config = os.environ.get(CONFIG_ENV)
    if config:
        yield config
        yield from _path_parts(config)
    # A bucket is the first component of a URL root; its path the rest.
    if "://" in profile.root:
        rest = profile.root.split("://", 1)[1]
        yield from (part for part in rest.split("/") if part)


# Credentials that key providers and stores read from the environment (their SDKs' own
# variables): if one ever reaches a log line (a debug dump, an SDK's error text), it is shipped
# redacted. Never read by this library for anything else.
CREDENTIAL_VARIABLES = (
    "VAULT_TOKEN",
    "VAULT_ROLE_ID",
    "VAULT_SECRET_ID",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_APPLICATION_CREDENTIALS",
)


def _credential_strings(variables: Iterable[str]) -> Iterator[str]:
    """The values of these credential variables in the environment now (read at each use: a
    credential refreshed by an agent is redacted too), and a connection string's parts."""
    for variable in variables:
        value = os.environ.get(variable)
        if value and len(value) >= 6:
            yield value
            # A connection string's parts (AccountKey=...;) show up on their own too.
            for part in value.split(";"):
                secret = part.split("=", 1)[1] if "=" in part else ""
                if len(secret) >= 6:  # shorter parts would redact ordinary words
                    yield secret


def _path_parts(path: str) -> Iterator[str]:
    """Absolute paths and the components that are not shared system names."""
    common = {"tmp", "home", "var", "usr", "etc", "opt", "private", "users", "root", "data"}
    yield os.path.abspath(path)
    for part in re.split(r"[\\/]", path):
        if len(part) >= 6 and part.lower() not in common:
            yield part


class Redactor:
    """Rewrites every known secret in a text. Thread-safe; the expression is rebuilt only
    when something new is added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replacements: dict[str, tuple[str, int]] = {}
        self._patterns: list[re.Pattern[str]] = []
        self._compiled: re.Pattern[str] | None = None
        self._env_patterns: str | None = None
        self._env_compiled: list[re.Pattern[str]] = []
        self._variables: set[str] = set(CREDENTIAL_VARIABLES)

    def add_secret(self, text: str, replacement: str = "[redacted]", *, rank: int = 0) -> None:
        """Redact ``text`` (and its repr and JSON forms) as ``replacement``. A text already
        known keeps its replacement unless this one ranks higher (an exact sealed value ranks
        above a part of one, which ranks above a plain secret)."""
        if not isinstance(text, str):
            return
        with self._lock:
            changed = False
            for form in _escaped_forms(text):
                known = self._replacements.get(form)
                if known is None or rank > known[1]:
                    self._replacements[form] = (replacement, rank)
                    changed = True
            if changed:
                self._compiled = None

    def add_value(self, value: Any, token: str) -> None:
        """Redact an unsealed value as ``[sealed value <token>]``, and each string inside a
        container value as ``[part of sealed value <token>]``."""
        if isinstance(value, str | bytes):
            for leaf in _leaves(value):
                self.add_secret(leaf, f"[sealed value {token}]", rank=2)
            return
        for leaf in _leaves(value):
            self.add_secret(leaf, f"[part of sealed value {token}]", rank=1)

    def add_profile(self, profile: Profile) -> None:
        for text in _profile_strings(profile):
            self.add_secret(text)
        with self._lock:
            self._variables.update(profile.credentials_from_env.values())

    def add_pattern(self, pattern: str | re.Pattern[str]) -> None:
        """Redact every match of a regular expression as ``[redacted]``."""
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        with self._lock:
            self._patterns.append(compiled)

    def secrets(self) -> Iterable[str]:
        with self._lock:
            return list(self._replacements)

    def _env(self) -> list[re.Pattern[str]]:
        raw = os.environ.get(PATTERNS_ENV, "")
        if raw != self._env_patterns:
            found: list[re.Pattern[str]] = []
            for line in raw.splitlines():
                if line.strip():
                    try:
                        found.append(re.compile(line.strip()))
                    except re.error:
                        raise ConfigError(f"{PATTERNS_ENV} holds an invalid expression") from None
            self._env_patterns, self._env_compiled = raw, found
        return self._env_compiled

    def redact(self, text: str) -> str:
        """``text`` with every known secret and pattern match rewritten."""
        with self._lock:
            compiled = self._compiled
            if compiled is None and self._replacements:
                forms = sorted(self._replacements, key=len, reverse=True)
                compiled = self._compiled = re.compile("|".join(map(re.escape, forms)))
            replacements = dict(self._replacements)
            patterns = list(self._patterns)
            variables = list(self._variables)
        for credential in sorted(_credential_strings(variables), key=len, reverse=True):
            text = text.replace(credential, "[redacted]")
        if compiled is not None:
            text = compiled.sub(lambda m: replacements[m.group(0)][0], text)
        for pattern in [*patterns, *self._env()]:
            text = pattern.sub("[redacted]", text)
        return text


REDACTOR = Redactor()
