"""The stored formats (docs/format.md): pure bytes in, bytes out.

This package imports only ``cryptography`` and ``sealed_results.errors``; key providers,
handlers and tools import their data types (``Stanza``) from here, never the other way round.

- ``header``: the blob header (fixed part, key commitment, key section) and one-call helpers;
- ``stanza``: one wrapping of a data key in the key section;
- ``payload``: the sealed descriptor naming the payload's serializer;
- ``segments``: the one segment cipher, stream writer and stream reader;
- ``token``: the opaque token the orchestrator sees.
"""

from __future__ import annotations

from sealed_results.format.header import (
    BLOB_VERSION,
    DEFAULT_SEGMENT_LOG2,
    HEADER_SIZE,
    MAX_SEGMENT_LOG2,
    MIN_SEGMENT_LOG2,
    BlobHeader,
    open_blob,
    read_header,
    seal_blob,
)
from sealed_results.format.payload import (
    DESCRIPTOR_SIZE,
    STREAM_SERIALIZER,
    open_descriptor,
    seal_descriptor,
)
from sealed_results.format.segments import (
    TAG_SIZE,
    BlobReader,
    BlobWriter,
    SegmentCipher,
    open_segments,
    read_exact,
    seal_segments,
)
from sealed_results.format.stanza import MAX_STANZAS, Stanza, encode_stanzas
from sealed_results.format.token import TOKEN_LENGTH, TOKEN_VERSION, TokenCodec

__all__ = [
    "BLOB_VERSION",
    "DEFAULT_SEGMENT_LOG2",
    "DESCRIPTOR_SIZE",
    "HEADER_SIZE",
    "MAX_SEGMENT_LOG2",
    "MAX_STANZAS",
    "MIN_SEGMENT_LOG2",
    "STREAM_SERIALIZER",
    "TAG_SIZE",
    "TOKEN_LENGTH",
    "TOKEN_VERSION",
    "BlobHeader",
    "BlobReader",
    "BlobWriter",
    "SegmentCipher",
    "Stanza",
    "TokenCodec",
    "encode_stanzas",
    "open_blob",
    "open_descriptor",
    "open_segments",
    "read_exact",
    "read_header",
    "seal_blob",
    "seal_descriptor",
    "seal_segments",
]
