"""Parse human durations: ``30s``, ``100ms``, ``5m``, ``1h`` or a plain number of seconds.

>>> parse_duration("100ms"), parse_duration("5m"), parse_duration(2)
(0.1, 300.0, 2.0)
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object, default_unit: str = "s") -> float:
    """Return ``value`` in seconds; a bare number is read in ``default_unit``.

    Raises ``ValueError`` with what was expected when the value cannot be read.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s, 100ms, 5m or 1h, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return float(value) * _UNITS[default_unit]
    match = _PATTERN.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 30s, 100ms, 5m or 1h, got {value!r}")
    number, unit = match.groups()
    return float(number) * _UNITS[unit or default_unit]
