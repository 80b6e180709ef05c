"""The token keyset: token keys stored under the root, sealed by the key provider.

Every machine with the profile (the store plus the key provider) can open every token, and
nothing else can: the keyset is an ordinary blob (format v1) at the fixed name ``keyset``, with a
fixed object id, whose payload is JSON ``{"token_keys": [base64url, ...]}``, newest first.
Rotating the key-encryption key rewraps it like any other blob.
"""

from __future__ import annotations

import base64
import io
import json
import os
from typing import TYPE_CHECKING

from sealed_results.envelope import BlobHeader, BlobWriter, open_blob
from sealed_results.errors import IntegrityError, ResultNotFound
from sealed_results.payload import frame, unframe

if TYPE_CHECKING:
    from sealed_results.handlers.base import ResultHandler

__all__ = ["KEYSET_NAME", "KEYSET_OBJECT_ID", "add_key", "load_or_create"]

KEYSET_NAME = "keyset"
KEYSET_OBJECT_ID = b"sealed-results:k"  # 16 bytes; result object ids are random
_SERIALIZER = "json"


def _seal(handler: ResultHandler, keys: list[bytes]) -> bytes:
    document = {"token_keys": [base64.urlsafe_b64encode(k).decode("ascii") for k in keys]}
    data_key = handler._keyprovider.new_data_key(None)
    header, payload_key = BlobHeader.new(
        data_key.plaintext, KEYSET_OBJECT_ID, data_key.key_id, data_key.stanzas
    )
    sink = io.BytesIO()
    writer = BlobWriter(sink, header, payload_key)
    writer.write(frame(_SERIALIZER) + json.dumps(document).encode())
    writer.close()
    return sink.getvalue()


def _open(handler: ResultHandler, blob: bytes) -> list[bytes]:
    payload = open_blob(blob, handler._keyprovider.open_data_key, object_id=KEYSET_OBJECT_ID)
    name, data = unframe(payload)
    try:
        keys = [base64.urlsafe_b64decode(k) for k in json.loads(bytes(data))["token_keys"]]
    except (ValueError, KeyError, TypeError):
        raise IntegrityError() from None
    if name != _SERIALIZER or not keys or any(len(k) != 32 for k in keys):
        raise IntegrityError()
    return keys


def load_or_create(handler: ResultHandler) -> list[bytes]:
    """The root's token keys, creating the keyset on first use. Two processes racing on an
    empty root both try an exclusive create; the loser reads the winner's keyset."""
    try:
        return _open(handler, handler._read_bytes(KEYSET_NAME))
    except ResultNotFound:
        pass
    keys = [os.urandom(32)]
    blob = _seal(handler, keys)
    try:
        with handler._create(KEYSET_NAME) as sink:
            sink.write(blob)
    except FileExistsError:
        return _open(handler, handler._read_bytes(KEYSET_NAME))
    return keys


def add_key(handler: ResultHandler) -> list[bytes]:
    """Put a fresh token key first; keep every older one so old tokens stay readable."""
    keys = [os.urandom(32), *load_or_create(handler)]
    handler._replace(KEYSET_NAME, _seal(handler, keys))
    return keys
