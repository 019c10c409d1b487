"""The ``window:`` of a windowed bolt, validated: what kind of window, over what time.

``size`` as a duration (``5s``) makes a time window, as a bare number (``100``) a count window.
``time: event`` reads each tuple's event time (ms since the epoch) from ``timestamp_field``.

>>> w = WindowSpec.parse({"type": "sliding", "size": "10s", "slide": "5s", "time": "event",
...                       "timestamp_field": "ts", "allowed_lateness": "1s", "late_stream": "late"})
>>> w.size, w.slide, w.count, w.time, w.allowed_lateness, w.late_stream
(10000, 5000, False, 'event', 1000, 'late')
>>> WindowSpec.parse({"type": "tumbling", "size": 100}).count
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rayflow.spec.durations import parse_duration

WINDOW_TYPES = ("tumbling", "sliding", "session")
WINDOW_KEYS = (
    "type",
    "size",
    "slide",
    "gap",
    "time",
    "timestamp_field",
    "max_out_of_orderness",
    "allowed_lateness",
    "late_stream",
    "key",
)


class WindowError(ValueError):
    """A bad ``window`` value; ``key`` names the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"window.{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class WindowSpec:
    """A validated window definition (times in ms)."""

    type: str
    size: int = 0
    slide: int = 0
    gap: int = 0
    count: bool = False
    time: str = "processing"
    timestamp_field: str | None = None
    max_out_of_orderness: int | None = None
    allowed_lateness: int = 0
    late_stream: str | None = None
    key: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> WindowSpec:
        if not isinstance(data, Mapping):
            raise WindowError(
                "type", f"expected a map such as {{type: tumbling, size: 5s}}, got {data!r}"
            )
        unknown = sorted(set(data) - set(WINDOW_KEYS))
        if unknown:
            raise WindowError(unknown[0], f"unknown key; expected one of {', '.join(WINDOW_KEYS)}")
        kind = str(data.get("type", "")).lower()
        if kind not in WINDOW_TYPES:
            raise WindowError(
                "type", f"expected one of {', '.join(WINDOW_TYPES)}, got {data.get('type')!r}"
            )
        count = False
        size = slide = gap = 0
        if kind == "session":
            gap = _ms(data, "gap", required=True)
        else:
            raw = data.get("size")
            if raw is None:
                raise WindowError("size", "required: a duration (5s) or a number of tuples (100)")
            count = isinstance(raw, int) and not isinstance(raw, bool)
            size = int(raw) if count else _ms(data, "size", required=True)
            if size <= 0:
                raise WindowError("size", f"must be positive, got {raw!r}")
            if kind == "sliding":
                raw_slide = data.get("slide")
                if raw_slide is None:
                    raise WindowError("slide", "required for a sliding window")
                slide = int(raw_slide) if count else _ms(data, "slide", required=True)
                if count and not isinstance(raw_slide, int):
                    raise WindowError("slide", "a count window slides by a number of tuples")
                if not 0 < slide <= size:
                    raise WindowError(
                        "slide", f"must be positive and at most size, got {raw_slide!r}"
                    )
        field = data.get("timestamp_field")
        time = str(data.get("time", "event" if field else "processing")).lower()
        if time not in ("processing", "event"):
            raise WindowError("time", f"expected processing or event, got {data.get('time')!r}")
        if time == "event" and not field:
            raise WindowError(
                "timestamp_field",
                "event time needs the field holding each tuple's timestamp (ms since the epoch)",
            )
        if count and kind == "session":
            raise WindowError("type", "session windows are time windows")
        key = data.get("key")
        if key is not None:
            key = (key,) if isinstance(key, str) else tuple(str(k) for k in key)
        ooo = data.get("max_out_of_orderness")
        late = data.get("late_stream")
        return cls(
            kind,
            size,
            slide,
            gap,
            count,
            time,
            str(field) if field else None,
            None if ooo is None else _ms(data, "max_out_of_orderness"),
            _ms(data, "allowed_lateness") if data.get("allowed_lateness") else 0,
            str(late) if late else None,
            key,
        )


def _ms(data: Mapping[str, Any], key: str, required: bool = False) -> int:
    value = data.get(key)
    if value is None:
        if required:
            raise WindowError(key, "required: a duration such as 5s or 200ms")
        return 0
    try:
        return round(parse_duration(value, "ms") * 1000)
    except ValueError as exc:
        raise WindowError(key, str(exc)) from None
