"""Which option names hold secrets: one rule set for the config check and for pickling.

A secret option must never be written in a config file and never travel inside a pickled handler
or key provider (pickles go to other processes, task runners and sometimes the orchestrator).
Names are compared by their words, whatever the spelling: ``SSECustomerKey``,
``sse-customer-key`` and ``sse_customer_key`` are all ``sse customer key``. A name is secret when
it is one of ``SECRET_NAMES`` or its last word is one of ``SECRET_WORDS``; under a store's
options (``in_storage``) the last word ``key`` counts too (s3fs's access key id is ``key``),
while a key provider's ``key`` is a key *name* and is not secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "SECRET_NAMES",
    "SECRET_WORDS",
    "TOKEN_METHODS",
    "is_secret_option",
    "normalize",
    "split_options",
]

SECRET_NAMES = frozenset({
    "account key", "api key", "aws access key id", "aws secret access key",
    "aws session token", "client secret", "connection string", "private key", "sas token",
    "secret access key", "secret key", "session token", "authorization", "sas", "role id",
    "secret id", "sse customer key", "sse kms key id", "proxy authorization", "cookie",
})  # fmt: skip
SECRET_WORDS = frozenset({
    "token", "secret", "password", "passwd", "passphrase", "credential", "credentials",
    "authorization",
})  # fmt: skip
# gcsfs takes ``token`` as a method name too; these say how to authenticate, not a secret.
TOKEN_METHODS = frozenset({"anon", "google_default", "cache", "cloud", "browser"})

# Word boundaries: "-", "_", ".", spaces, and case changes (SSECustomerKey -> SSE Customer Key).
_WORDS = re.compile(r"[A-Z]+[0-9]*(?=[A-Z][a-z])|[A-Z]?[a-z]+[0-9]*|[A-Z]+[0-9]*|[0-9]+")


def normalize(name: str) -> str:
    """``name`` as lower-case words separated by single spaces."""
    return " ".join(word.lower() for word in _WORDS.findall(name))


def is_secret_option(name: str, value: Any = None, *, in_storage: bool = True) -> bool:
    """Whether an option of this name (and value) holds a secret."""
    if isinstance(value, str) and value in TOKEN_METHODS:
        return False
    words = normalize(name)
    last = words.rsplit(" ", 1)[-1]
    return words in SECRET_NAMES or last in SECRET_WORDS or (in_storage and last == "key")


def _is_plain(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    return isinstance(value, str | int | float | bool | type(None))


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(travels, stays)``: options that may be pickled, and the ones that must not be, i.e.
    credentials (by name, at any depth) and live objects (sessions, credential objects)."""
    travels: dict[str, Any] = {}
    stays: dict[str, Any] = {}
    for name, value in options.items():
        if is_secret_option(name, value):
            stays[name] = value
        elif isinstance(value, Mapping):
            inner_travels, inner_stays = split_options(value)
            travels[name] = inner_travels
            if inner_stays:
                stays[name] = inner_stays
        elif _is_plain(value):
            travels[name] = value
        else:
            stays[name] = value
    return travels, stays
