"""Keys to key groups to tasks. FROZEN: savepoints and fields grouping depend on every byte here.

A key (the values of the grouping fields) is encoded to canonical bytes, so ``1``, ``1.0`` and
``True`` are different keys and ``"a"`` is the same key in every process (Python's ``hash()`` is
salted per process and must never be used). The bytes are hashed with CRC-32 and mixed with
MurmurHash3's 32-bit finalizer; the hash modulo ``max_parallelism`` is the key group, and a task
owns a contiguous range of key groups (Flink's assignment), which is what lets state move on
rescale.

>>> encode_key("a"), encode_key(1), encode_key(1.0), encode_key(True)
(b'sa', b'i1', b'f?\\xf0\\x00\\x00\\x00\\x00\\x00\\x00', b'T')
>>> key_group_of(encode_key("the"), 128)
37
>>> [task_for_key_group(g, 128, 3) for g in (0, 42, 43, 127)]
[0, 0, 1, 2]
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from rayflow.errors import TopologyError

_pack_double = struct.Struct(">d").pack


def encode_key(value: Any) -> bytes:
    """Canonical bytes of one key value (str, bytes, int, float, bool, None, tuple or list)."""
    kind = type(value)
    if kind is str:
        return b"s" + value.encode("utf-8", "surrogatepass")
    if kind is bool:
        return b"T" if value else b"F"
    if kind is int:
        return b"i" + str(value).encode("ascii")
    if kind is float:
        if value != value:  # every NaN is one key
            return b"fNaN"
        return b"f" + _pack_double(value + 0.0)  # -0.0 + 0.0 == 0.0
    if kind is bytes:
        return b"b" + value
    if value is None:
        return b"n"
    if kind is tuple or kind is list:
        return encode_compound(value)
    if isinstance(value, str | int | float | bytes):  # subclasses: as their base type
        for base in (bool, int, float, str, bytes):
            if isinstance(value, base):
                return encode_key(base(value))
    raise TopologyError(
        f"a grouping key of type {kind.__name__} cannot be hashed stably across processes; "
        "use str, int, float, bool, bytes, None or a tuple of those"
    )


def encode_compound(values: Any) -> bytes:
    """Several key values (multi-field keys, tuples) as one length-prefixed byte string."""
    parts = [b"t", str(len(values)).encode("ascii")]
    for item in values:
        encoded = encode_key(item)
        parts.append(b":" + str(len(encoded)).encode("ascii") + b":" + encoded)
    return b"".join(parts)


def encode_fields(values: Any) -> bytes:
    """The key of a tuple's key-field values: one value on its own, several as a compound (what
    fields grouping routes by, and so what keyed state and windows are kept by).

    >>> encode_fields(("cow",)) == encode_key("cow")
    True
    >>> encode_fields(("a", 1)) == encode_compound(("a", 1))
    True
    """
    return encode_key(values[0]) if len(values) == 1 else encode_compound(values)


def hash_key(encoded: bytes) -> int:
    """A 32-bit hash of encoded key bytes: CRC-32, then MurmurHash3's fmix32."""
    h = zlib.crc32(encoded)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def key_group_of(encoded: bytes, max_parallelism: int) -> int:
    """The key group (0 .. max_parallelism-1) of an encoded key."""
    return hash_key(encoded) % max_parallelism


def task_for_key_group(key_group: int, max_parallelism: int, parallelism: int) -> int:
    """The task index owning ``key_group`` (contiguous ranges, as Flink assigns them)."""
    return key_group * parallelism // max_parallelism


def key_groups_of_task(task: int, max_parallelism: int, parallelism: int) -> range:
    """The key groups task ``task`` owns.

    >>> key_groups_of_task(1, 128, 3)
    range(43, 86)
    """
    start = (task * max_parallelism + parallelism - 1) // parallelism
    end = ((task + 1) * max_parallelism + parallelism - 1) // parallelism
    return range(start, end)
