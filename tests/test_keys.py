"""Key encoding and key groups are frozen: savepoints depend on these exact values."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from rayflow.errors import TopologyError
from rayflow.keys import (
    encode_key,
    hash_key,
    key_group_of,
    key_groups_of_task,
    task_for_key_group,
)

# Pinned values: if one changes, every savepoint written before is read wrongly.
FROZEN = [
    ("the", 128, 37),
    ("cow", 128, 100),
    (1, 128, 2),
    (1.0, 128, 12),
    (True, 128, 107),
    ((1, "a"), 128, 33),
    ("the", 32768, 9509),
]


@pytest.mark.parametrize(("key", "max_parallelism", "group"), FROZEN)
def test_key_groups_are_frozen(key: object, max_parallelism: int, group: int) -> None:
    assert key_group_of(encode_key(key), max_parallelism) == group


def test_equal_looking_keys_of_different_types_do_not_collide() -> None:
    keys = [1, 1.0, True, "1", b"1", None, (1,), [1]]
    encoded = [encode_key(k) for k in keys]
    assert len(set(encoded[:-1])) == len(keys) - 1
    assert encode_key((1,)) == encode_key([1])  # a list key is the same key as the tuple


def test_hash_is_the_same_in_another_process() -> None:
    code = "from rayflow.keys import *; print(hash_key(encode_key('rayflow')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == hash_key(encode_key("rayflow"))


def test_negative_zero_and_nan_are_one_key_each() -> None:
    assert encode_key(-0.0) == encode_key(0.0)
    assert encode_key(float("nan")) == encode_key(float("nan"))


def test_unhashable_key_type_is_a_clear_error() -> None:
    with pytest.raises(TopologyError, match="cannot be hashed stably"):
        encode_key({"a": 1})


@pytest.mark.parametrize("parallelism", [1, 2, 3, 7, 128])
def test_every_key_group_has_exactly_one_task_with_contiguous_ranges(parallelism: int) -> None:
    owners = [task_for_key_group(g, 128, parallelism) for g in range(128)]
    assert owners == sorted(owners)
    for task in range(parallelism):
        assert list(key_groups_of_task(task, 128, parallelism)) == [
            g for g in range(128) if owners[g] == task
        ]


def test_key_groups_spread_words_evenly() -> None:
    groups = Counter(key_group_of(encode_key(f"word{i}"), 128) for i in range(12800))
    assert len(groups) == 128
    assert max(groups.values()) < 2.0 * 100
