"""Checkpoint storage: task snapshots and checkpoint metadata in a folder or any fsspec URL.

Layout under ``<storage>/<topology>/``::

    chk-7/_metadata              JSON, written last: its presence marks checkpoint 7 complete
    chk-7/count-1.state          one pickled snapshot per task
    shared/count-1-3fa2...-000012.sst
                                 files checkpoints share (the rocksdb backend's SST files:
                                 uploaded once, referenced by every checkpoint that holds them)
    savepoint-20261125-101500/   the same layout, kept until the user deletes it (self-contained:
                                 a savepoint never references shared files)

``_metadata`` names every task file with its size and SHA-256, so a truncated or corrupted file
is found (and named) before its contents are trusted; a task's entry lists the shared files it
references (``shared``), and a shared file's size and digest are in the task file that names it.
Pruning deletes a shared file once no kept checkpoint references it.

>>> import tempfile
>>> store = CheckpointStorage(tempfile.mkdtemp())
>>> where = store.checkpoint_path("wc", 1)
>>> info = store.write_task(where, ("count", 0), b"state")
>>> info["bytes"], info["file"]
(5, 'count-0.state')
>>> store.write_metadata(where, {"id": 1, "tasks": {"count/0": info}})
>>> [m["id"] for m in store.complete_checkpoints("wc")]
[1]
>>> store.read_task(where, info)
b'state'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable
from typing import Any

import fsspec

from rayflow.errors import RayflowError

FORMAT_VERSION = 2
"""The savepoint/checkpoint format this rayflow writes; it reads this one and older (2: a task
file may hold a RocksDB checkpoint referencing shared files instead of its keyed state)."""
SHARED = "shared"
METADATA = "_metadata"
DEFAULT_STORAGE = os.path.join("~", ".rayflow", "checkpoints")
STORAGE_ENV = "RAYFLOW_CHECKPOINT_STORAGE"


class CheckpointError(RayflowError):
    """A checkpoint or savepoint that cannot be used (missing, corrupted, or too new)."""


def resolve_storage(url: str) -> str:
    """The storage URL to use: the configured one, else ``$RAYFLOW_CHECKPOINT_STORAGE``, else
    ``~/.rayflow/checkpoints``; local paths become absolute.

    >>> resolve_storage("s3://bucket/ckpt")
    's3://bucket/ckpt'
    """
    url = url or os.environ.get(STORAGE_ENV, "") or DEFAULT_STORAGE
    if "://" in url:
        return url.rstrip("/")
    return os.path.abspath(os.path.expanduser(url))


def _join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts)


def task_file(key: tuple[str, int]) -> str:
    return f"{key[0]}-{key[1]}.state"


def check(url: str, what: str, size: int, sha256: str, entry: dict[str, Any]) -> None:
    """A CheckpointError naming the file when its size or digest is not what ``entry`` says."""
    if size != entry["bytes"] or sha256 != entry["sha256"]:
        raise CheckpointError(
            f"{what} {url} is corrupted ({size} bytes, {entry['bytes']} recorded, "
            "or a different checksum)"
        )


def parent_of(where: str) -> str:
    """The topology folder a checkpoint folder (or URL) is in: shared files' paths are relative
    to it.

    >>> parent_of("s3://b/ckpt/wc/chk-7"), parent_of("/data/wc/chk-7/")
    ('s3://b/ckpt/wc', '/data/wc')
    """
    return where.rstrip("/").rsplit("/", 1)[0]


def is_savepoint(where: str) -> bool:
    """Whether a snapshot goes to a savepoint folder (self-contained: no shared files).

    >>> is_savepoint("/d/wc/savepoint-20261125-101500-a1b2c3"), is_savepoint("/d/wc/chk-3")
    (True, False)
    """
    return where.rstrip("/").rsplit("/", 1)[-1].startswith("savepoint-")


def digest_file(fs: Any, path: str) -> tuple[int, str]:
    """(size, SHA-256) of a file, read in chunks."""
    sha, size = hashlib.sha256(), 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


class CheckpointStorage:
    """Reads and writes checkpoints under one base URL (see module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = resolve_storage(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def topology_path(self, topology: str) -> str:
        return _join(self.root, topology)

    def checkpoint_path(self, topology: str, checkpoint_id: int) -> str:
        return _join(self.root, topology, f"chk-{checkpoint_id}")

    def savepoint_path(self, topology: str) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        return _join(self.root, topology, f"savepoint-{stamp}-{os.urandom(3).hex()}")

    def url_of(self, path: str) -> str:
        """A path of this storage as a URL the CLI can print and read back."""
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return path if protocol in ("file", "local") else self.fs.unstrip_protocol(path)

    # ------------------------------------------------------------------ tasks
    def write_task(self, where: str, key: tuple[str, int], data: bytes) -> dict[str, Any]:
        """Write one task's snapshot; returns what ``_metadata`` records about it."""
        self.fs.makedirs(where, exist_ok=True)
        name = task_file(key)
        with self.fs.open(_join(where, name), "wb") as f:
            f.write(data)
        return {"file": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def read_task(self, where: str, info: dict[str, Any]) -> bytes:
        """One task's snapshot, checked against its recorded size and digest (``where`` may be
        a URL of another storage: a savepoint)."""
        fs, where = fsspec.core.url_to_fs(where) if "://" in where else (self.fs, where)
        return self._read_checked(fs, _join(where, info["file"]), info, "checkpoint file")

    def _read_checked(self, fs: Any, path: str, entry: dict[str, Any], what: str) -> bytes:
        """A file's bytes, checked against the size and SHA-256 its ``entry`` records."""
        try:
            with fs.open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise CheckpointError(f"{what} {self.url_of(path)} is missing") from None
        check(self.url_of(path), what, len(data), hashlib.sha256(data).hexdigest(), entry)
        return data

    # ------------------------------------------------------------ shared files
    def upload_shared(self, where: str, local_path: str, name: str) -> dict[str, Any]:
        """Copy a local file into the shared folder next to checkpoint folder ``where``;
        returns its entry (``path`` relative to the topology folder, ``bytes``, ``sha256``)."""
        relative = f"{SHARED}/{name}"
        target = _join(parent_of(where), relative)
        self.fs.makedirs(parent_of(target), exist_ok=True)
        self.fs.put_file(local_path, target)
        size, sha = digest_file(fsspec.filesystem("file"), local_path)
        return {"path": relative, "bytes": size, "sha256": sha}

    def write_shared(self, where: str, entry: dict[str, Any], data: bytes) -> None:
        """Write ``data`` as the shared file ``entry`` names (next to checkpoint ``where``)."""
        target = _join(parent_of(where), entry["path"])
        self.fs.makedirs(parent_of(target), exist_ok=True)
        with self.fs.open(target, "wb") as f:
            f.write(data)

    def read_shared(self, where: str, entry: dict[str, Any]) -> bytes:
        """A shared file that checkpoint ``where`` references, checked against its entry."""
        fs, base = fsspec.core.url_to_fs(where) if "://" in where else (self.fs, where)
        return self._read_checked(fs, _join(parent_of(base), entry["path"]), entry, "shared file")

    def fetch_shared(self, where: str, entry: dict[str, Any], local_path: str) -> None:
        """Copy a shared file that checkpoint ``where`` references to ``local_path``, checked
        against its recorded size and digest (a clear CheckpointError when it is not right)."""
        fs, base = fsspec.core.url_to_fs(where) if "://" in where else (self.fs, where)
        source = _join(parent_of(base), entry["path"])
        try:
            fs.get_file(source, local_path)
        except FileNotFoundError:
            raise CheckpointError(f"shared file {self.url_of(source)} is missing") from None
        size, sha = digest_file(fsspec.filesystem("file"), local_path)
        check(self.url_of(source), "shared file", size, sha, entry)

    # --------------------------------------------------------------- metadata
    def write_metadata(self, where: str, metadata: dict[str, Any]) -> None:
        """Mark a checkpoint complete: ``_metadata`` is written last, in one piece."""
        self.fs.makedirs(where, exist_ok=True)
        body = json.dumps({"format": FORMAT_VERSION, **metadata}, indent=1, sort_keys=True)
        tmp = _join(where, f".{METADATA}.tmp")
        with self.fs.open(tmp, "w") as f:
            f.write(body)
        self.fs.mv(tmp, _join(where, METADATA))

    def read_metadata(self, where: str) -> dict[str, Any]:
        """A checkpoint's or savepoint's metadata; a clear error when it is not one."""
        path = _join(where, METADATA)
        try:
            with self.fs.open(path, "r") as f:
                metadata = json.load(f)
        except FileNotFoundError:
            raise CheckpointError(
                f"{self.url_of(where)} is not a complete checkpoint or savepoint "
                f"(no {METADATA} file in it)"
            ) from None
        except ValueError as exc:
            raise CheckpointError(f"{self.url_of(path)} is corrupted: {exc}") from None
        version = metadata.get("format")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"{self.url_of(where)} was written in format {version!r}; this rayflow reads "
                f"format {FORMAT_VERSION} and older: restore it with a newer rayflow"
            )
        metadata["path"] = where
        return metadata

    @staticmethod
    def open_savepoint(url: str) -> dict[str, Any]:
        """The metadata of the savepoint (or checkpoint) at ``url``, with ``path`` as a URL the
        tasks can read it from."""
        storage = CheckpointStorage(url)
        metadata = storage.read_metadata(storage.root)
        metadata["path"] = storage.url
        return metadata

    def complete_checkpoints(self, topology: str) -> list[dict[str, Any]]:
        """The complete checkpoints of ``topology`` (not savepoints), oldest first."""
        base = self.topology_path(topology)
        found = []
        for path in self._children(base):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if name.startswith("chk-") and name[4:].isdigit():
                try:
                    found.append(self.read_metadata(path))
                except CheckpointError:
                    continue  # incomplete (no _metadata yet) or unreadable: not a candidate
        return sorted(found, key=lambda m: m["id"])

    def _children(self, path: str) -> list[str]:
        try:
            return [p for p in self.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []

    def remove(self, where: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(where, recursive=True)

    def prune(self, topology: str, keep: int, protect: Iterable[int] = ()) -> None:
        """Delete every checkpoint folder of ``topology`` but the newest ``keep`` complete ones
        and those in ``protect`` (the final checkpoint, whose id is older), including folders of
        aborted checkpoints older than the newest ``keep``, and the shared files only deleted
        checkpoints referenced."""
        complete = self.complete_checkpoints(topology)
        newest = {m["id"] for m in complete[-keep:]}
        kept = newest | set(protect)
        oldest_kept = min(newest) if newest else None
        referenced = {m["id"]: shared_files(m) for m in complete}
        still = set().union(*(referenced.get(n, set()) for n in kept))
        for path in self._children(self.topology_path(topology)):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if not (name.startswith("chk-") and name[4:].isdigit()):
                continue
            number = int(name[4:])
            if number in kept or oldest_kept is None or number > oldest_kept:
                continue
            self.remove(path)
            for relative in referenced.get(number, set()) - still:
                self.remove(_join(self.topology_path(topology), relative))


def shared_files(metadata: dict[str, Any]) -> set[str]:
    """The shared files (paths relative to the topology folder) a checkpoint references."""
    return {path for info in metadata.get("tasks", {}).values() for path in info.get("shared", ())}
