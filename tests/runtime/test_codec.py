"""The batch codec (memo-free pickling across processes and chains) round-trips every value a
row may hold."""

from __future__ import annotations

import datetime
import decimal
import fractions
import math
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from rayflow.runtime.io.codec import copy_rows, dumps, loads


@dataclass
class Point:
    x: int
    y: float


def test_every_value_type_round_trips() -> None:
    shared = [1, 2]
    cyclic: list = ["me"]
    cyclic.append(cyclic)
    rows = [
        ["word", 1, -(2**70), 1.5, float("inf"), True, False, None, b"\x00\xff", bytearray(b"x")],
        [(1, "a"), [1, [2, [3]]], {"k": {"n": [1]}}, {1, 2}, frozenset({"a"}), OrderedDict(a=1)],
        [datetime.datetime(2026, 12, 4, 17, 0, tzinfo=datetime.UTC), datetime.date(2026, 1, 1)],
        [decimal.Decimal("1.10"), fractions.Fraction(1, 3), complex(1, 2), uuid.UUID(int=7)],
        [Point(1, 2.5), range(3), "é😀\ud800"[:2], shared, shared],
    ]
    back = loads(dumps(rows))
    assert back == rows
    nan = loads(dumps([[float("nan")]]))[0][0]
    assert math.isnan(nan)
    again = loads(dumps([cyclic]))[0]
    assert again[0] == "me" and again[1] is again, "a cyclic row is written with the memo"


def test_a_copy_shares_nothing_with_the_rows_it_copied() -> None:
    rows = [[{"n": [1]}], [Point(1, 2.0)]]
    copied = copy_rows(rows)
    copied[0][0]["n"].append(2)
    copied[1][0].x = 9
    assert rows == [[{"n": [1]}], [Point(1, 2.0)]]
