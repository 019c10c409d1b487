"""Every flow in these tests runs on both state backends: the keyed operators' tables are
dicts on ``memory`` and entries in the task's RocksDB on ``rocksdb``, and must give the same
results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rayflow.streams.flow import Flow


@pytest.fixture(autouse=True, params=["memory", "rocksdb"])
def state_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    backend = request.param
    if backend == "rocksdb":
        init = Flow.__init__

        def with_backend(self: Flow, name: str, config: Any = None) -> None:
            config = {"state.backend": "rocksdb", "state.rocksdb.dir": str(tmp_path / "state"),
                      **(config or {})}  # fmt: skip
            init(self, name, config)

        monkeypatch.setattr(Flow, "__init__", with_backend)
    yield backend
