"""Format vectors (tests/vectors) checked byte for byte, and decoded by an independent reader
written from docs/format.md, so the page and the code cannot drift apart."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealed_results.format import Stanza, TokenCodec, open_blob, seal_blob
from sealed_results.keyproviders.local import LocalKeyring
from tests.vectors.make_vectors import pattern

VECTORS = Path(__file__).parent / "vectors"
BLOBS = json.loads((VECTORS / "blob_v1.json").read_text())
TOKENS = json.loads((VECTORS / "token_v1.json").read_text())
KEYRING = json.loads((VECTORS / "local_keyring_v1.json").read_text())


def _blob_from(vector: dict) -> bytes:  # type: ignore[type-arg]
    return seal_blob(
        pattern(vector["payload_length"], vector["payload_seed"]),
        bytes.fromhex(vector["data_key"]),
        tuple(Stanza(s["kind"], bytes.fromhex(s["wrapped"])) for s in vector["stanzas"]),
        object_id=bytes.fromhex(vector["object_id"]),
        key_id=bytes.fromhex(vector["key_id"]),
        salt=bytes.fromhex(vector["salt"]),
        segment_log2=vector["segment_log2"],
        serializer=vector["serializer"],
    )


@pytest.mark.parametrize("vector", BLOBS, ids=[v["name"] for v in BLOBS])
def test_blob_vector_byte_for_byte(vector: dict) -> None:  # type: ignore[type-arg]
    blob = _blob_from(vector)
    assert len(blob) == vector["blob_length"]
    assert hashlib.sha256(blob).hexdigest() == vector["blob_sha256"]
    if "blob" in vector:
        assert blob.hex() == vector["blob"]
    else:
        assert blob[:400].hex() == vector["blob_head"]


@pytest.mark.parametrize("vector", BLOBS, ids=[v["name"] for v in BLOBS])
def test_blob_vector_opens(vector: dict) -> None:  # type: ignore[type-arg]
    blob = _blob_from(vector)
    serializer, payload = open_blob(
        blob,
        lambda key_id, stanzas: bytes.fromhex(vector["data_key"]),
        object_id=bytes.fromhex(vector["object_id"]),
    )
    assert serializer == vector["serializer"]
    assert hashlib.sha256(payload).hexdigest() == vector["payload_sha256"]


def spec_reader(blob: bytes, data_key: bytes) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """docs/format.md, section "Blob format v1", implemented from the page alone."""
    magic, version, suite, log2, reserved = struct.unpack_from(">4sBBBB", blob)
    assert (magic, version, suite, reserved) == (b"\xf0SRB", 1, 1, 0)
    fixed, commitment = blob[:72], blob[72:104]
    okm = HKDF(hashes.SHA256(), 64, salt=fixed[40:72], info=b"sealed-results blob v1" + fixed)
    keys = okm.derive(data_key)
    assert keys[32:] == commitment
    pos, stanzas = 105, []
    for _ in range(blob[104]):
        kind_len = blob[pos]
        kind = blob[pos + 1 : pos + 1 + kind_len].decode("ascii")
        (wrapped_len,) = struct.unpack_from(">H", blob, pos + 1 + kind_len)
        start = pos + 3 + kind_len
        stanzas.append((kind, blob[start : start + wrapped_len]))
        pos = start + wrapped_len
    aead = AESGCM(keys[:32])
    descriptor = aead.decrypt(bytes(11) + b"\x02", blob[pos : pos + 81], blob[:104])
    name = descriptor[1 : 1 + descriptor[0]].decode("ascii")
    assert len(descriptor) == 65 and not any(descriptor[1 + descriptor[0] :])
    pos += 81
    size, plain, index = 1 << log2, b"", 0
    while True:
        chunk = blob[pos : pos + size + 16]
        final = len(chunk) < size + 16
        nonce = index.to_bytes(11, "big") + bytes([final])
        plain += aead.decrypt(nonce, chunk, blob[:104])
        pos, index = pos + len(chunk), index + 1
        if final:
            assert pos == len(blob)
            return name, plain, stanzas


@pytest.mark.parametrize("vector", BLOBS, ids=[v["name"] for v in BLOBS])
def test_blob_vector_matches_the_page(vector: dict) -> None:  # type: ignore[type-arg]
    name, plain, stanzas = spec_reader(_blob_from(vector), bytes.fromhex(vector["data_key"]))
    assert name == vector["serializer"]
    assert plain == pattern(vector["payload_length"], vector["payload_seed"])
    assert [(k, w.hex()) for k, w in stanzas] == [
        (s["kind"], s["wrapped"]) for s in vector["stanzas"]
    ]


@pytest.mark.parametrize("vector", TOKENS)
def test_token_vector(vector: dict) -> None:  # type: ignore[type-arg]
    codec = TokenCodec([bytes.fromhex(k) for k in vector["token_keys"]])
    object_id, commitment = bytes.fromhex(vector["object_id"]), bytes.fromhex(vector["commitment"])
    token = codec.seal(object_id, commitment, nonce=bytes.fromhex(vector["nonce"]))
    assert token == vector["token"]
    assert codec.open(token) == (object_id, commitment)
    # The page: base64url(version || nonce || AES-256-GCM(64-byte plaintext)).
    import base64

    raw = base64.urlsafe_b64decode(token)
    plain = AESGCM(bytes.fromhex(vector["token_keys"][0])).decrypt(
        raw[1:13], raw[13:], b"sealed-results token v1" + raw[:1]
    )
    assert raw[0] == 1 and plain == b"\x01" + object_id + commitment + bytes(15)


def test_rotated_token_keys_still_open_vector_tokens() -> None:
    vector = TOKENS[0]
    newer = TokenCodec([os.urandom(32), bytes.fromhex(vector["token_keys"][0])])
    assert newer.open(vector["token"])[0] == bytes.fromhex(vector["object_id"])


def test_local_keyring_vectors(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(KEYRING["keyring"]))
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    keyring = LocalKeyring(path)
    for wrap in KEYRING["wraps"]:
        data_key, context = bytes.fromhex(wrap["data_key"]), bytes.fromhex(wrap["context"])
        wrapped = keyring._wrap(data_key, context, nonce=bytes.fromhex(wrap["nonce"]))
        assert wrapped.hex() == wrap["wrapped"]
        assert keyring.unwrap_data_key(wrapped, context) == data_key
        # The page: 0x01 || KEK version || nonce || GCM(DK), aad = label || 5 bytes || context.
        kek = __import__("base64").urlsafe_b64decode(KEYRING["keyring"]["keys"]["2"]["key"])
        assert (
            AESGCM(kek).decrypt(
                wrapped[5:17],
                wrapped[17:],
                b"sealed-results/local-keyring/v1" + wrapped[:5] + context,
            )
            == data_key
        )
