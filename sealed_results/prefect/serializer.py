"""The Prefect result serializer: values serialized by sealed-results' own serializers.

Prefect serializes a value with the record's serializer before the storage block sees it, so
this is where the profile's serializer applies (msgpack by default, JSON, or pickle only when
the profile opts in). The output is the serializer's name and the base64 of its bytes: Prefect
wraps it in a JSON record, which must be UTF-8. The storage block then seals that whole record,
so nothing here is ever stored or sent in clear, and nothing is deserialized before the record
was authenticated.

Prefect sends a flow run's serializer with all its fields to its API, a task run's with its
``type`` only: the one field is the profile name. Prefect finds this class by its ``type``
once this module is imported: the ``prefect.collections`` entry point imports it wherever a
sealed storage block is loaded or a worker starts.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
from typing import Any, Literal

from prefect.serializers import Serializer as PrefectSerializer
from pydantic import Field, PrivateAttr

from sealed_results.config import CONFIG_ENV, PROFILE_ENV, resolve_profile
from sealed_results.errors import IntegrityError, SerializationError
from sealed_results.sealing import exception_record, is_exception_record, rebuild_exception
from sealed_results.serializers import Serializer, resolve

__all__ = ["SERIALIZED_FORM", "SERIALIZER_TYPE", "SealedSerializer"]

SERIALIZER_TYPE = "sealed-results"
#: What ``SealedSerializer.dumps`` returns: a serializer name, a colon, base64.
SERIALIZED_FORM = re.compile(rb"[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9+/]*={0,2}\Z")

_SETTINGS: dict[tuple[str | None, str | None, str | None], tuple[str, bool]] = {}
_SETTINGS_LOCK = threading.Lock()


def _profile_serializer(profile: str | None) -> tuple[str, bool]:
    """(serializer name, pickle allowed) of a profile, cached per config and profile."""
    key = (os.environ.get(CONFIG_ENV), os.environ.get(PROFILE_ENV), profile)
    found = _SETTINGS.get(key)
    if found is None:
        settings = resolve_profile(profile)
        found = (settings.serializer, settings.allow_pickle)
        with _SETTINGS_LOCK:
            _SETTINGS[key] = found
    return found


class SealedSerializer(PrefectSerializer):
    """Serializes Prefect results with the sealed-results profile's serializer."""

    type: Literal["sealed-results"] = "sealed-results"
    profile: str | None = Field(
        default=None, description="The sealed-results profile whose serializer applies."
    )
    # sealed(seal_exceptions=...): a private attribute, so Prefect's API (which receives a flow
    # run's serializer with all its fields) never sees it; it pickles with the serializer.
    _seal_exceptions: bool | None = PrivateAttr(default=None)

    @property
    def seal_exceptions(self) -> bool | None:
        """The decorator's choice for exception messages (None: the environment decides)."""
        private = self.__pydantic_private__ or {}
        choice = private.get("_seal_exceptions")
        return choice if isinstance(choice, bool) else None

    def with_exception_choice(self, choice: bool | None) -> SealedSerializer:
        self._seal_exceptions = choice
        return self

    def _serializer(self, name: str) -> Serializer:
        serializer = resolve(name)
        _, allow_pickle = _profile_serializer(self.profile)
        if serializer.requires_opt_in and not allow_pickle:
            raise SerializationError(
                "this result was written with the pickle serializer; reading it needs the "
                "profile to opt in (allow_pickle = true or serializer = 'pickle')"
            )
        return serializer

    def dumps(self, obj: Any) -> bytes:
        name, _ = _profile_serializer(self.profile)
        serializer = self._serializer(name)
        if isinstance(obj, BaseException) and not serializer.requires_opt_in:
            # A failed run's exception: its type, message, arguments and traceback, so that
            # state.result() raises it (rebuilt) in any process with the profile.
            obj = exception_record(obj)
        payload = serializer.dumps(obj)
        return name.encode("ascii") + b":" + base64.b64encode(payload)

    def loads(self, blob: bytes) -> Any:
        name, colon, encoded = bytes(blob).partition(b":")
        if not colon:
            raise IntegrityError()
        try:
            payload = base64.b64decode(encoded, validate=True)
            serializer = self._serializer(name.decode("ascii"))
        except (binascii.Error, UnicodeDecodeError):
            raise IntegrityError() from None
        value = serializer.loads(payload)
        return rebuild_exception(value) if is_exception_record(value) else value
