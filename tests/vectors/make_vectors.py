"""Regenerate the format test vectors (only when a NEW format version is added).

    python -m tests.vectors.make_vectors

Vectors of a released version are a promise: tests check them byte for byte and they must
never change. Inputs are fixed bytes fed through the deterministic seams (explicit data key,
salt, nonce, object id).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

from sealed_results.format import Stanza, TokenCodec, seal_blob
from sealed_results.keyproviders.local import LocalKeyring

HERE = Path(__file__).parent


def pattern(n: int, seed: int) -> bytes:
    """Deterministic payload bytes that are not all alike (segment mix-ups would show)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(bytes([seed]) + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:n])


BLOB_CASES = [
    # name, payload length, segment log2
    ("empty", 0, 16),
    ("short", 37, 16),
    ("one segment minus one", (1 << 16) - 1, 16),
    ("exactly one segment", 1 << 16, 16),
    ("three segments and a bit", 3 * (1 << 16) + 5, 16),
    ("two stanzas, 1 MiB segments", 100, 20),
]


SERIALIZERS = ["bytes", "msgpack", "json"]


def blob_vectors() -> list[dict[str, object]]:
    vectors = []
    for i, (name, length, log2) in enumerate(BLOB_CASES):
        stanzas = [Stanza("local", pattern(57, 100 + i))]
        if "two stanzas" in name:
            stanzas.append(Stanza("aws-kms", pattern(180, 200 + i)))
        inputs = {
            "data_key": pattern(32, 10 + i),
            "object_id": pattern(16, 20 + i),
            "key_id": pattern(16, 30 + i),
            "salt": pattern(32, 40 + i),
        }
        payload = pattern(length, 50 + i)
        blob = seal_blob(
            payload,
            inputs["data_key"],
            tuple(stanzas),
            object_id=inputs["object_id"],
            key_id=inputs["key_id"],
            salt=inputs["salt"],
            segment_log2=log2,
            serializer=SERIALIZERS[i % len(SERIALIZERS)],
        )
        vector: dict[str, object] = {
            "name": name,
            **{k: v.hex() for k, v in inputs.items()},
            "segment_log2": log2,
            "stanzas": [{"kind": s.kind, "wrapped": s.wrapped.hex()} for s in stanzas],
            "serializer": SERIALIZERS[i % len(SERIALIZERS)],
            "payload_length": length,
            "payload_seed": 50 + i,
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "blob_length": len(blob),
            "blob_sha256": hashlib.sha256(blob).hexdigest(),
        }
        if len(blob) <= 1024:
            vector["blob"] = blob.hex()
        else:
            vector["blob_head"] = blob[:400].hex()
        vectors.append(vector)
    return vectors


def token_vectors() -> list[dict[str, object]]:
    vectors = []
    for i in range(3):
        keys = [pattern(32, 60 + i)]
        if i == 2:
            keys.append(pattern(32, 70))  # an older key: the token below is sealed with keys[0]
        object_id, commitment, nonce = pattern(16, 80 + i), pattern(32, 90 + i), pattern(12, 95 + i)
        token = TokenCodec(keys).seal(object_id, commitment, nonce=nonce)
        vectors.append(
            {
                "token_keys": [k.hex() for k in keys],
                "object_id": object_id.hex(),
                "commitment": commitment.hex(),
                "nonce": nonce.hex(),
                "token": token,
            }
        )
    return vectors


def keyring_document() -> dict[str, object]:
    import base64

    return {
        "format": "sealed-results-keyring",
        "version": 1,
        "primary": 2,
        "keys": {
            "1": {
                "key": base64.urlsafe_b64encode(pattern(32, 110)).decode(),
                "created": "2026-01-01T00:00:00Z",
                "state": "active",
            },
            "2": {
                "key": base64.urlsafe_b64encode(pattern(32, 111)).decode(),
                "created": "2026-06-01T00:00:00Z",
                "state": "active",
            },
        },
    }


def keyring_vectors() -> dict[str, object]:
    document = keyring_document()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "keys.json"
        path.write_text(json.dumps(document))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        keyring = LocalKeyring(path)
        wraps = []
        for i in range(2):
            data_key, context, nonce = (
                pattern(32, 120 + i),
                pattern(16, 130 + i),
                pattern(12, 140 + i),
            )
            wrapped = keyring._wrap(data_key, context, nonce=nonce)
            wraps.append(
                {
                    "data_key": data_key.hex(),
                    "context": context.hex(),
                    "nonce": nonce.hex(),
                    "kek_version": 2,
                    "wrapped": wrapped.hex(),
                }
            )
    return {"keyring": document, "wraps": wraps}


def main() -> None:
    (HERE / "blob_v1.json").write_text(json.dumps(blob_vectors(), indent=1) + "\n")
    (HERE / "token_v1.json").write_text(json.dumps(token_vectors(), indent=1) + "\n")
    (HERE / "local_keyring_v1.json").write_text(json.dumps(keyring_vectors(), indent=1) + "\n")


if __name__ == "__main__":
    main()
