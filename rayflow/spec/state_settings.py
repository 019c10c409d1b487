"""Which state backend a component uses (``state.backend``, ``state.rocksdb.dir``,
``state.rocksdb.memory``): parsed and checked where the topology is, used by the task's store
(:mod:`rayflow.state.stores`).

>>> StoreSettings.from_config({"state.backend": "rocksdb", "state.rocksdb.memory": "32MiB"})
StoreSettings(backend='rocksdb', directory='', memory=33554432)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rayflow.spec.yaml_limits import parse_size

BACKENDS = ("memory", "rocksdb")
STORE_KEYS = ("state.backend", "state.rocksdb.dir", "state.rocksdb.memory")
DEFAULT_ROCKSDB_MEMORY = 64 * 1024 * 1024


def parse_backend(value: Any) -> str:
    """``memory`` or ``rocksdb`` (any case)."""
    text = str(value).strip().lower()
    if text not in BACKENDS:
        raise ValueError(f"expected one of {', '.join(BACKENDS)}, got {value!r}")
    return text


def parse_memory(value: Any) -> int:
    """A budget in bytes: an integer or ``64MiB``, at least 4 MiB (RocksDB's write buffers
    need some)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 64MiB, got {value!r}")
    size = parse_size(str(value))
    if size < 4 * 1024 * 1024:
        raise ValueError(f"expected at least 4MiB, got {value!r}")
    return size


@dataclass(frozen=True)
class StoreSettings:
    """The state backend of one component (its config merged over the topology's)."""

    backend: str = "memory"
    directory: str = ""  # '' = a folder under the system's temporary directory
    memory: int = DEFAULT_ROCKSDB_MEMORY

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StoreSettings:
        """Read ``state.backend``, ``state.rocksdb.dir`` and ``state.rocksdb.memory``; a bad
        value raises ``ValueError`` naming its key."""
        values: dict[str, Any] = {}
        for key, name, parse in (
            ("state.backend", "backend", parse_backend),
            ("state.rocksdb.dir", "directory", str),
            ("state.rocksdb.memory", "memory", parse_memory),
        ):
            if config.get(key) is not None:
                try:
                    values[name] = parse(config[key])
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
        return cls(**values)
