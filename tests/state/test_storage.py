"""Checkpoint storage on a real folder: integrity checks, format versions, pruning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayflow.state.storage import FORMAT_VERSION, CheckpointError, CheckpointStorage


def _checkpoint(store: CheckpointStorage, number: int, data: bytes = b"state") -> dict:
    where = store.checkpoint_path("t/run", number)
    info = store.write_task(where, ("count", 0), data)
    store.write_metadata(where, {"id": number, "tasks": {"count/0": info}})
    return info


def test_a_corrupted_or_missing_file_is_named(tmp_path: Path) -> None:
    store = CheckpointStorage(str(tmp_path))
    info = _checkpoint(store, 1)
    where = store.checkpoint_path("t/run", 1)
    (Path(where) / "count-0.state").write_bytes(b"stale")  # same size, other bytes
    with pytest.raises(CheckpointError, match=r"count-0\.state is corrupted"):
        store.read_task(where, info)
    (Path(where) / "count-0.state").unlink()
    with pytest.raises(CheckpointError, match=r"count-0\.state is missing"):
        store.read_task(where, info)


def test_only_checkpoints_with_metadata_are_complete(tmp_path: Path) -> None:
    store = CheckpointStorage(str(tmp_path))
    _checkpoint(store, 1)
    store.write_task(store.checkpoint_path("t/run", 2), ("count", 0), b"half")  # no _metadata
    assert [m["id"] for m in store.complete_checkpoints("t/run")] == [1]
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        CheckpointStorage.open_savepoint(store.checkpoint_path("t/run", 2))


def test_a_newer_format_is_refused_clearly(tmp_path: Path) -> None:
    store = CheckpointStorage(str(tmp_path))
    _checkpoint(store, 1)
    meta = Path(store.checkpoint_path("t/run", 1)) / "_metadata"
    body = json.loads(meta.read_text())
    body["format"] = FORMAT_VERSION + 1
    meta.write_text(json.dumps(body))
    with pytest.raises(CheckpointError, match="restore it with a newer rayflow"):
        store.read_metadata(store.checkpoint_path("t/run", 1))


def test_prune_keeps_the_newest_complete_checkpoints(tmp_path: Path) -> None:
    store = CheckpointStorage(str(tmp_path))
    for number in range(1, 6):
        _checkpoint(store, number)
    store.write_task(store.checkpoint_path("t/run", 2), ("x", 0), b"")  # already complete
    store.prune("t/run", keep=2)
    assert [m["id"] for m in store.complete_checkpoints("t/run")] == [4, 5]
    assert sorted(p.name for p in (tmp_path / "t" / "run").iterdir()) == ["chk-4", "chk-5"]
    _checkpoint(store, 1)  # the final checkpoint of a bounded run: its id was taken first
    store.prune("t/run", keep=2, protect=[1])
    assert sorted(p.name for p in (tmp_path / "t" / "run").iterdir()) == ["chk-1", "chk-4", "chk-5"]


def test_urls_work_as_well_as_folders(tmp_path: Path) -> None:
    """Any fsspec URL: here file://, the same code path as s3:// or hdfs://."""
    store = CheckpointStorage(f"file://{tmp_path}")
    info = _checkpoint(store, 7, b"remote")
    url = "file://" + store.checkpoint_path("t/run", 7)
    metadata = CheckpointStorage.open_savepoint(url)
    assert metadata["id"] == 7
    assert CheckpointStorage("").read_task(metadata["path"], info) == b"remote"
