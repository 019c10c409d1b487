"""Read text files line by line, whole or followed as they grow (``tail -F``); write tuples
into rolling JSON-lines part files (:class:`FileSink`).

    spouts:
      - id: lines
        className: rayflow.connectors.files.FileSpout
        parallelism: 2
        kwargs: {paths: ["logs/*.log"], follow: true}

Files (the globs' matches, sorted) are spread over the spout's tasks by position; with
``follow`` new matching files are picked up every ``discover_ms``, a file that shrinks (truncated
or replaced) is read again from its start, and a last line without its newline waits for it.
Without ``follow`` the spout finishes once every file has been read (its last line emitted even
without a newline). Under ``at_least_once`` each line is tracked as ``(path, offset)`` and
replayed when its tree fails (forever, or ``max_retries`` times before it is dropped and counted).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from typing import Any

from rayflow.api.components import Context, Spout, Timer
from rayflow.api.reliable import Replays
from rayflow.api.transactional import TwoPhaseCommitBolt
from rayflow.api.tuple import Tuple
from rayflow.errors import ConfigError
from rayflow.spec.settings import Reliability

CHUNK = 64 * 1024


class _OpenFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.handle = open(path, "rb")  # noqa: SIM115 (kept open while the spout follows it)
        self.position = 0  # of the first byte not yet emitted
        self.rest = b""

    def close(self) -> None:
        self.handle.close()


class FileSpout(Spout):
    """One tuple ``[path, offset, line]`` per line (``offset``: the line's first byte)."""

    outputs = ["path", "offset", "line"]

    def __init__(
        self,
        paths: str | list[str],
        follow: bool = False,
        encoding: str = "utf-8",
        discover_ms: int = 1000,
        max_retries: int | None = None,
    ) -> None:
        self.patterns = [paths] if isinstance(paths, str) else list(paths)
        if not self.patterns:
            raise ConfigError("FileSpout needs paths (file names or globs)")
        self.follow, self.encoding = follow, encoding
        self.discover_every = discover_ms / 1000
        self.max_retries = max_retries

    def open(self, context: Context) -> None:
        self.task, self.tasks = context.task_index, context.parallelism
        self.reliable = context.reliability == Reliability.AT_LEAST_ONCE
        self.files: dict[str, _OpenFile] = {}
        self.done: set[str] = set()
        self.book = Replays(self.max_retries)  # msg_id (path, offset) -> values
        self.dropped = self.metrics.counter("file_lines_dropped")
        self.last_discovery = 0.0
        self._discover()
        if not self.files and not self.follow and self.task == 0 and not self._matches():
            raise ConfigError(f"FileSpout: no file matches {', '.join(self.patterns)}")

    def next_tuple(self) -> None:
        for msg_id, values in self.book.due(1000):
            self.emit(values, msg_id=msg_id)
        now = time.monotonic()
        if self.follow and now - self.last_discovery >= self.discover_every:
            self._discover()
        for f in list(self.files.values()):
            self._read(f)
        if not self.follow and not self.files and not self.book:
            self.finish()

    def ack(self, msg_id: Any) -> None:
        self.book.done(msg_id)

    def fail(self, msg_id: Any) -> None:
        if self.book.failed(msg_id) is not None:
            self.dropped.inc()

    def close(self) -> None:
        for f in getattr(self, "files", {}).values():
            f.close()

    def _matches(self) -> list[str]:
        found = {os.path.abspath(p) for pattern in self.patterns for p in glob.glob(pattern)}
        return sorted(p for p in found if os.path.isfile(p))

    def _discover(self) -> None:
        self.last_discovery = time.monotonic()
        for i, path in enumerate(self._matches()):
            if i % self.tasks == self.task and path not in self.files and path not in self.done:
                self.files[path] = _OpenFile(path)

    def _read(self, f: _OpenFile) -> None:
        if self.follow and self._replaced(f):
            # Rotated (renamed away) or truncated: finish what the old file still holds, then
            # read the new one from its start.
            while chunk := f.handle.read(CHUNK):
                *lines, f.rest = (f.rest + chunk).split(b"\n")
                self._emit_lines(f, lines)
            if f.rest:
                self._emit_lines(f, [f.rest])
            f.close()
            f = self.files[f.path] = _OpenFile(f.path)
        chunk = f.handle.read(CHUNK)
        if not chunk:
            if not self.follow:
                if f.rest:
                    self._emit_lines(f, [f.rest])
                f.close()
                del self.files[f.path]
                self.done.add(f.path)
            return
        *lines, f.rest = (f.rest + chunk).split(b"\n")
        self._emit_lines(f, lines)

    @staticmethod
    def _replaced(f: _OpenFile) -> bool:
        try:
            now = os.stat(f.path)
        except FileNotFoundError:
            return False  # gone for now (being rotated): keep reading what is open
        return now.st_ino != os.fstat(f.handle.fileno()).st_ino or now.st_size < f.position

    def _emit_lines(self, f: _OpenFile, lines: list[bytes]) -> None:
        rows, offset, encoding = [], f.position, self.encoding
        for raw in lines:
            values = [f.path, offset, raw.rstrip(b"\r").decode(encoding, "replace")]
            offset += len(raw) + 1
            if self.reliable:
                msg_id = (f.path, values[1])
                self.book.track(msg_id, values)
                self.emit(values, msg_id=msg_id)
            else:
                rows.append(values)
        f.position = offset
        if rows:
            self.emit_many(rows)


class FileSink(TwoPhaseCommitBolt):
    """Writes each tuple's values as one JSON list per line (``format="jsonl"``) into rolling
    part files under the folder ``path``.

    Under exactly-once it is a two-phase-commit sink: the lines of each checkpoint go to a hidden
    ``.part-<component>-<task>-<checkpoint>-<id>.jsonl.pending`` file, fsynced when the barrier
    passes and renamed to ``part-...jsonl`` once the checkpoint is complete; after a failure the
    restored checkpoint's files are committed (again) and any other staged file is deleted, so
    the visible files hold every line exactly once.

    A task writes ``.part-<component>-<task>-<n>.jsonl.inprogress`` (hidden) and makes it
    visible as ``part-<component>-<task>-<n>.jsonl`` when it rolls (``roll_bytes``,
    ``roll_seconds``) and at the end of the stream. Under at-least-once a tuple is acked once its
    line reached the file (flushed every ``flush_ms`` or ``flush_rows`` rows); a task restarted
    after a crash first makes its predecessor's in-progress files visible, cut at their last
    complete line, so nothing acked is lost (replays may repeat lines, as at-least-once allows).

        bolts:
          - id: out
            className: rayflow.connectors.files.FileSink
            kwargs: {path: out/counts}
    """

    auto_ack = False

    def __init__(
        self,
        path: str,
        format: str = "jsonl",
        roll_bytes: int = 128 * 1024 * 1024,
        roll_seconds: float = 60.0,
        flush_ms: int = 100,
        flush_rows: int = 1000,
    ) -> None:
        if format != "jsonl":
            raise ConfigError(f"FileSink format {format!r}: only 'jsonl' is supported")
        self.folder = path
        self.roll_bytes, self.roll_seconds = roll_bytes, roll_seconds
        self.flush_ms, self.flush_rows = flush_ms, flush_rows

    def prepare(self, context: Context) -> None:
        os.makedirs(self.folder, exist_ok=True)
        self.prefix = f"part-{context.component_id}-{context.task_index}-"
        self.lines = self.metrics.counter("file_lines")
        self.staged: dict[str, Any] = {}  # staged file -> open handle (exactly-once)
        if self.transactional:
            return
        self.reliable = context.reliability == Reliability.AT_LEAST_ONCE
        self.sequence = self._recover()
        self.unflushed: list[Tuple] = []
        self.handle: Any = None
        self._flush_timer()

    def process(self, tup: Tuple) -> None:
        if self.transactional:
            TwoPhaseCommitBolt.process(self, tup)
            return
        if self.handle is None:
            self._open()
        self.handle.write(json.dumps(tup.values, default=str) + "\n")
        self.lines.inc()
        if not self.reliable:
            self.ack(tup)
        else:
            self.unflushed.append(tup)
            if len(self.unflushed) >= self.flush_rows:
                self._flush()
        if self.handle.tell() >= self.roll_bytes or time.monotonic() >= self.roll_at:
            self._roll()

    def on_timer(self, timer: Timer) -> None:
        if self.transactional:
            return
        self._flush()
        if self.handle is not None and time.monotonic() >= self.roll_at:
            self._roll()
        self._flush_timer()

    def cleanup(self) -> None:
        if not self.transactional:
            self._roll()

    # ------------------------------------------------------- exactly-once: two-phase commit
    def begin(self, checkpoint_id: int) -> str:
        name = f".{self.prefix}{checkpoint_id}-{os.urandom(4).hex()}.jsonl.pending"
        staged = os.path.join(self.folder, name)
        self.staged[staged] = open(staged, "w", encoding="utf-8")  # noqa: SIM115 (kept open)
        return staged

    def write(self, transaction: str, tup: Tuple) -> None:
        self.staged[transaction].write(json.dumps(tup.values, default=str) + "\n")
        self.lines.inc()

    def pre_commit(self, transaction: str) -> None:
        handle = self.staged.pop(transaction)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()

    def commit(self, transaction: str) -> None:
        if os.path.exists(transaction):  # else committed before a crash: nothing to do
            os.replace(transaction, self._committed(transaction))

    def abort(self, transaction: str) -> None:
        handle = self.staged.pop(transaction, None)
        if handle is not None:
            handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(transaction)

    def abort_unknown(self, known: list[Any]) -> None:
        for name in os.listdir(self.folder):
            path = os.path.join(self.folder, name)
            if (
                name.startswith("." + self.prefix)
                and name.endswith(".pending")
                and path not in known
            ):
                self.abort(path)

    def _committed(self, staged: str) -> str:
        name = os.path.basename(staged)[1:].removesuffix(".pending")
        return os.path.join(self.folder, name)

    def _flush_timer(self) -> None:
        self.register_timer(self.current_processing_time() + self.flush_ms, event_time=False)

    def _open(self) -> None:
        self.sequence += 1
        self.current = os.path.join(self.folder, f".{self.prefix}{self.sequence}.jsonl.inprogress")
        self.handle = open(self.current, "w", encoding="utf-8")  # noqa: SIM115 (kept open)
        self.roll_at = time.monotonic() + self.roll_seconds

    def _flush(self) -> None:
        if self.handle is not None:
            self.handle.flush()
        for tup in self.unflushed:
            self.ack(tup)
        self.unflushed = []

    def _roll(self) -> None:
        """Make the current part visible."""
        self._flush()
        if self.handle is None:
            return
        self.handle.close()
        self.handle = None
        os.replace(self.current, self._visible(self.current))

    def _visible(self, hidden: str) -> str:
        name = os.path.basename(hidden)[1:].removesuffix(".inprogress")
        return os.path.join(self.folder, name)

    def _recover(self) -> int:
        """Make a crashed predecessor's in-progress parts visible (cut at their last complete
        line); return the highest part number of this task."""
        highest = 0
        for name in os.listdir(self.folder):
            bare = name.lstrip(".")
            if not bare.startswith(self.prefix):
                continue
            number = bare[len(self.prefix) :].split(".", 1)[0]
            highest = max(highest, int(number) if number.isdigit() else 0)
            if name.endswith(".inprogress"):
                hidden = os.path.join(self.folder, name)
                with open(hidden, "rb+") as f:
                    data = f.read()
                    f.truncate(data.rfind(b"\n") + 1)
                os.replace(hidden, self._visible(hidden))
        return highest
