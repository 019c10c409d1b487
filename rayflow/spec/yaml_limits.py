"""Bounds on what a topology YAML file may cost to read, so a hostile or broken file fails fast.

Three limits, each with an environment variable to raise it (the file cannot raise its own):

- ``RAYFLOW_YAML_MAX_BYTES`` (default 1 MiB): the file and all its includes together, refused
  by size before anything is parsed (``4MiB``, ``512KiB`` or a number of bytes);
- ``RAYFLOW_YAML_MAX_ALIAS_NODES`` (default 100,000): the values that ``*alias`` references add
  when they are expanded (an alias bomb of ten levels of ten aliases would add 10^10);
- ``RAYFLOW_YAML_MAX_DEPTH`` (default 100): how deeply maps and lists may nest, aliases
  expanded.

>>> limits = YamlLimits.from_environ({"RAYFLOW_YAML_MAX_BYTES": "4MiB"})
>>> limits.max_bytes, limits.max_alias_nodes, limits.max_depth
(4194304, 100000, 100)
>>> YamlLimits.from_environ({"RAYFLOW_YAML_MAX_DEPTH": "deep"})
Traceback (most recent call last):
...
rayflow.errors.ConfigError: environment variable RAYFLOW_YAML_MAX_DEPTH: expected a positive \
integer, got 'deep'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rayflow.errors import ConfigError

MAX_BYTES_ENV = "RAYFLOW_YAML_MAX_BYTES"
MAX_ALIAS_NODES_ENV = "RAYFLOW_YAML_MAX_ALIAS_NODES"
MAX_DEPTH_ENV = "RAYFLOW_YAML_MAX_DEPTH"

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """A positive number of bytes: ``1048576``, ``512KiB``, ``4MiB``, ``1GB``.

    >>> parse_size("512KiB"), parse_size("2MB"), parse_size("100")
    (524288, 2000000, 100)
    """
    match = _SIZE.match(text)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"expected a positive size such as 1048576, 512KiB or 4MiB, got {text!r}")
    return int(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]


def _positive_int(text: str) -> int:
    try:
        number = int(text.replace("_", ""))
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"expected a positive integer, got {text!r}")
    return number


def describe_size(size: int) -> str:
    """``1048576`` -> ``'1 MiB'``; ``1536`` -> ``'1.5 KiB'``; ``100`` -> ``'100 bytes'``.

    >>> describe_size(1048576), describe_size(1536), describe_size(100)
    ('1 MiB', '1.5 KiB', '100 bytes')
    """
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


@dataclass(frozen=True)
class YamlLimits:
    """The limits one load of a topology file (with its includes) runs under."""

    max_bytes: int = 1024 * 1024
    max_alias_nodes: int = 100_000
    max_depth: int = 100

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> YamlLimits:
        """The defaults, changed by the ``RAYFLOW_YAML_MAX_*`` variables in ``environ``."""
        values: dict[str, int] = {}
        for name, env, parse in (
            ("max_bytes", MAX_BYTES_ENV, parse_size),
            ("max_alias_nodes", MAX_ALIAS_NODES_ENV, _positive_int),
            ("max_depth", MAX_DEPTH_ENV, _positive_int),
        ):
            raw = environ.get(env)
            if raw is None or not raw.strip():
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                raise ConfigError(f"environment variable {env}: {exc}") from None
        return cls(**values)
