"""msgpack extension codes and the tables both directions share (part of the stored format:
a code never changes meaning)."""

from __future__ import annotations

import os
import struct
from pathlib import PosixPath, PurePath, PurePosixPath, PureWindowsPath, WindowsPath

BIGINT, TUPLE, SET, FROZENSET, BYTEARRAY, COMPLEX = 1, 2, 3, 4, 5, 6
DATETIME, DATE, TIME, TIMEDELTA, DECIMAL, UUID, PATH = 7, 8, 9, 10, 11, 12, 13

INT_MIN, INT_MAX = -(2**63), 2**64 - 1
COMPLEX_STRUCT = struct.Struct("<dd")
PathTypes = tuple[type[PurePath], ...]
PATH_KINDS: PathTypes = (PurePosixPath, PureWindowsPath, PosixPath, WindowsPath)
# A concrete path of the other OS cannot be instantiated here; its pure twin keeps the text.
PATH_DECODE: PathTypes = (PurePosixPath, PureWindowsPath, PosixPath, PureWindowsPath)
if os.name == "nt":
    PATH_DECODE = (PurePosixPath, PureWindowsPath, PurePosixPath, WindowsPath)

# Types the packer takes as they are, exactly as _to_native would leave them, and the only
# leaves the unpacker makes: a list or dict holding only these needs no rebuilt copy and no
# depth walk. (An int out of range reaches _backstop, which makes the same extension value
# _to_native would.) Checked with map(type, ...) at C speed.
NATIVE_LEAVES = frozenset({str, float, bool, bytes, int, type(None)})
