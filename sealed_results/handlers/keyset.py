"""The token keyset: token keys stored under the root, sealed by the key provider.

Every machine with the profile (the store plus the key provider) can open every token, and
nothing else can: the keyset is an ordinary blob at the fixed name ``keyset``, with a fixed
object id, whose payload is JSON ``{"token_keys": [base64url, ...]}``, newest first. Rotating
the key-encryption key rewraps it like any other blob.

Changes are compare-and-swaps (``Store.swap``): two processes rotating at once both keep their
keys, since the loser reads the winner's keyset and adds its key to that. A keyset is created
only in a root that holds no results: in any other root a missing keyset means it was lost
(deleted, expired by a lifecycle rule, an unmounted path), and a new one would silently leave
every issued token unreadable, so ``KeysetMissing`` says to restore it instead.
"""

from __future__ import annotations

import base64
import json
import os

from sealed_results.errors import IntegrityError, KeysetMissing, ResultNotFound, StoreConflict
from sealed_results.format import open_blob, seal_blob
from sealed_results.keyproviders.materials import KeyMaterials
from sealed_results.stores.base import Store

__all__ = ["KEYSET_NAME", "KEYSET_OBJECT_ID", "Keyset"]

KEYSET_NAME = "keyset"
KEYSET_OBJECT_ID = b"sealed-results:k"  # 16 bytes; result object ids are random
_SERIALIZER = "json"
# A keyset of thousands of token keys is well under this; anything larger is not ours, and is
# refused before it is read whole.
MAX_KEYSET_SIZE = 1 << 20
_SWAP_ATTEMPTS = 50  # concurrent rotations each retry after losing a swap


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

    def _get(self) -> tuple[list[bytes], str]:
        blob, version = self._store.get_versioned(KEYSET_NAME, max_size=MAX_KEYSET_SIZE)
        return self._open(blob), version

    def load(self) -> list[bytes]:
        """The root's token keys as stored now (ResultNotFound if there is no keyset)."""
        return self._get()[0]

    def load_or_create(self) -> list[bytes]:
        """The root's token keys, creating the keyset on first use of an empty root. Two
        processes racing on an empty root both try an exclusive create; the loser reads the
        winner's keyset."""
        try:
            return self.load()
        except ResultNotFound:
            pass
        if any(name != KEYSET_NAME and not name.startswith(".") for name in self._store.list()):
            raise KeysetMissing()
        keys = [os.urandom(32)]
        try:
            self._store.swap(KEYSET_NAME, self._seal(keys), None)
        except StoreConflict:
            return self.load()
        return keys

    def add_key(self) -> list[bytes]:
        """Put a fresh token key first and keep every older one, so old tokens stay readable;
        a compare-and-swap, retried when another process changed the keyset meanwhile."""
        new = os.urandom(32)
        for _ in range(_SWAP_ATTEMPTS):
            try:
                keys, version = self._get()
            except ResultNotFound:
                self.load_or_create()
                continue
            keys = [new, *keys]
            try:
                self._store.swap(KEYSET_NAME, self._seal(keys), version)
            except StoreConflict:
                continue
            return keys
        raise StoreConflict("the keyset kept changing under this rotation; run it again")
