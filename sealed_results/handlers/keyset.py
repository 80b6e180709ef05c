"""The token keyset: token keys stored under the root, sealed by the key provider.

Every machine with the profile (the store plus the key provider) can open every token, and
nothing else can: the keyset is an ordinary blob at the fixed name ``keyset``, with a fixed
object id, whose payload is JSON ``{"token_keys": [base64url, ...]}``, newest first. Rotating
the key-encryption key rewraps it like any other blob.
"""

from __future__ import annotations

import base64
import json
import os

from sealed_results.errors import IntegrityError, ResultNotFound
from sealed_results.format import open_blob, seal_blob
from sealed_results.keyproviders.materials import KeyMaterials
from sealed_results.stores.base import Store

__all__ = ["KEYSET_NAME", "KEYSET_OBJECT_ID", "Keyset"]

KEYSET_NAME = "keyset"
KEYSET_OBJECT_ID = b"sealed-results:k"  # 16 bytes; result object ids are random
_SERIALIZER = "json"


class Keyset:
    """The token keys of one root, read and written through public store methods only."""

    def __init__(self, store: Store, materials: KeyMaterials) -> None:
        self._store = store
        self._materials = materials

    def _seal(self, keys: list[bytes]) -> bytes:
        document = {"token_keys": [base64.urlsafe_b64encode(k).decode("ascii") for k in keys]}
        data_key = self._materials.new_data_key(None)
        return seal_blob(
            json.dumps(document).encode(),
            data_key.plaintext,
            data_key.stanzas,
            object_id=KEYSET_OBJECT_ID,
            key_id=data_key.key_id,
            serializer=_SERIALIZER,
        )

    def _open(self, blob: bytes) -> list[bytes]:
        name, payload = open_blob(blob, self._materials.open_data_key, object_id=KEYSET_OBJECT_ID)
        try:
            keys = [base64.urlsafe_b64decode(k) for k in json.loads(payload)["token_keys"]]
        except (ValueError, KeyError, TypeError):
            raise IntegrityError() from None
        if name != _SERIALIZER or not keys or any(len(k) != 32 for k in keys):
            raise IntegrityError()
        return keys

    def exists(self) -> bool:
        return self._store.exists(KEYSET_NAME)

    def load_or_create(self) -> list[bytes]:
        """The root's token keys, creating the keyset on first use. Two processes racing on an
        empty root both try an exclusive create; the loser reads the winner's keyset."""
        try:
            return self._open(self._store.get(KEYSET_NAME))
        except ResultNotFound:
            pass
        keys = [os.urandom(32)]
        try:
            self._store.put(KEYSET_NAME, self._seal(keys))
        except FileExistsError:
            return self._open(self._store.get(KEYSET_NAME))
        return keys

    def add_key(self) -> list[bytes]:
        """Put a fresh token key first; keep every older one so old tokens stay readable."""
        keys = [os.urandom(32), *self.load_or_create()]
        self._store.replace(KEYSET_NAME, self._seal(keys))
        return keys
