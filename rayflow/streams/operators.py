"""The components a flow compiles to: :class:`FlowSpout` (a source and the operators fused after
it), :class:`FlowBolt` (a keyed operator, or an exchange's receiving end, and what is fused after
it) and :class:`CollectBolt` (``collect``). Each runs a :class:`Program` the planner wrote.

A batch runs through the fused operators at once. When a user function raises part-way, the
batch runs again item by item, so only the bad item fails (counted, logged with its traceback,
replayed under at-least-once); under exactly-once the task fails and the job recovers instead.
"""

from __future__ import annotations

import itertools
import pickle
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from rayflow.api.components import Bolt, Context, Spout, Timer, rewindable, unrewindable
from rayflow.api.tuple import Batch, Tuple
from rayflow.errors import TopologyError
from rayflow.spec.durations import parse_duration
from rayflow.spec.settings import Reliability
from rayflow.streams.heads import make_head
from rayflow.streams.pipeline import Outputs, Run, Step, build, fan_out

SPOUT_ROUND = 512  # source items gathered into one fused batch at most
_first = itemgetter(0)


@dataclass(frozen=True)
class Program:
    """What one flow component runs: ``steps[0]`` is its head (a source, a keyed operator, an
    exchange's receiving end), the others the operators fused after it and the exits; ``inputs``
    maps each subscribed ``(component, stream)`` to (input number, wire format)."""

    component: str
    steps: tuple[Step, ...]
    inputs: Mapping[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    watermarks: Mapping[int, int] = field(default_factory=dict)  # with_timestamps step -> lag


class Packed:
    """A :class:`Program` as a component's argument. In this process it stays the object (a
    function sink's list is the caller's list in ``testing.run``); pickled, it becomes bytes
    made by cloudpickle (user functions travel by value), loaded only where it runs: a job
    master keeps a topology's spec without the user's code.
    """

    def __init__(self, program: Program | None, data: bytes | None = None) -> None:
        self._program = program
        self._data = data

    def __reduce__(self) -> tuple[Any, ...]:
        data = self._data
        if data is None:
            from ray import cloudpickle

            data = cloudpickle.dumps(self._program)
        return (Packed, (None, data))

    def get(self) -> Program:
        if self._program is None:
            self._program = pickle.loads(self._data)  # type: ignore[arg-type]
        return self._program


class FusedRunner:
    """Runs a fused chain over a batch, item by item after a raise (see module docstring)."""

    def __init__(self, owner: Any, outputs: Outputs, exactly_once: bool) -> None:
        self.owner = owner  # the spout or bolt, whose runtime hook fails single rows
        self.outputs = outputs
        self.exactly_once = exactly_once

    def run(
        self,
        entry: Run,
        items: list,
        tss: list | None,
        keys: list | None,
        origins: list[int | None] | range,
    ) -> list[int | None]:
        """Run ``entry`` over the batch; returns the origins (input rows) of the items that
        failed, after reporting them."""
        try:
            entry(items, tss, keys)
            return []
        except Exception:
            if self.exactly_once:
                raise  # the task fails and the job recovers from its last checkpoint
        self.outputs.clear()
        failed: list[int | None] = []
        for i in range(len(items)):
            try:
                entry(
                    items[i : i + 1],
                    None if tss is None else tss[i : i + 1],
                    None if keys is None else keys[i : i + 1],
                )
            except Exception as exc:
                failed.append(origins[i])
                self.report([origins[i]], exc)
        return failed

    def report(self, origins: list[int | None], exc: BaseException) -> None:
        fail_rows = getattr(self.owner, "_rayflow_fail_rows", None)
        if fail_rows is None:  # not in a task (a unit test calling the object): say it
            raise exc
        fail_rows([o for o in origins if o is not None], exc)


# ==================================================================== sources
class FlowSpout(Spout):
    """A flow's source (a Spout class of the user's, or a list of items) with the operators
    fused after it. The user's spout runs inside it: its emits become items."""

    _rayflow_fused = True

    def __init__(self, program: Packed) -> None:
        self.packed = program
        self.inner: Spout | None = None

    # -------------------------------------------------------------- lifecycle
    def open(self, context: Context) -> None:
        program = self.program = self.packed.get()
        head = self.head = program.steps[0]
        self.exactly_once = context.reliability == Reliability.EXACTLY_ONCE
        self.tracked_mode = context.reliability == Reliability.AT_LEAST_ONCE
        self.outputs = Outputs()
        self.runner = FusedRunner(self, self.outputs, self.exactly_once)
        self.newest: dict[int, int] = {}
        self.entry = fan_out(
            [build(list(program.steps), i, self.outputs, self._observe) for i in head.next]
        )
        self.linger = float(context.config.get("batch.linger.ms", 0.005))  # in seconds
        interval = context.config.get("watermark.interval", "200ms")
        self.watermark_every = parse_duration(interval, "ms")
        self.next_watermark = 0.0
        self.items: list[Any] = []  # taken from the source, not yet run (kept: closures hold it)
        self.msg_ids: list[tuple[int, Any]] = []  # (place in items, msg_id) of tracked ones
        self.done = False
        if head.kind == "items":
            self.position = 0  # how many of this task's share it took
            self.previous: list[tuple[int, list[int]]] = []  # deals before a rescale
            self.task, self.tasks = context.task_index, context.parallelism
            self.iterator: Any = None
            return
        params = head.params
        self.one_field = len(params["fields"]) == 1
        self.stream = params["stream"]
        inner = self.inner = params["cls"](*params["args"], **params["kwargs"])
        if self.exactly_once and not rewindable(type(inner)):
            raise TopologyError(unrewindable(head.name, params["cls"].__qualname__))
        inner.emit = self._inner_emit()  # type: ignore[method-assign]
        inner.emit_many = self._inner_emit_many  # type: ignore[method-assign]
        inner.finish = self._inner_finish  # type: ignore[method-assign]
        inner.emit_watermark = self.emit_watermark  # type: ignore[method-assign]
        inner.mark_idle = self.mark_idle  # type: ignore[method-assign]
        inner.current_processing_time = self.current_processing_time  # type: ignore[method-assign]
        inner.__dict__["_rayflow_metrics"] = self.metrics
        inner.context = context  # type: ignore[attr-defined]
        inner.open(context)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()

    def activate(self) -> None:
        if self.inner is not None:
            self.inner.activate()

    def deactivate(self) -> None:
        if self.inner is not None:
            self.inner.deactivate()

    def ack(self, msg_id: Any) -> None:
        if self.inner is not None:
            self.inner.ack(msg_id)

    def fail(self, msg_id: Any) -> None:
        if self.inner is not None:
            self.inner.fail(msg_id)

    # ------------------------------------------------------ the inner spout's
    def _inner_emit(self) -> Any:
        """The user spout's ``emit``: an item per row of the flow's stream (a closure: this runs
        once per source tuple)."""
        items, msg_ids, wanted, one_field = self.items, self.msg_ids, self.stream, self.one_field
        append, track = items.append, msg_ids.append

        def emit(values: list[Any], msg_id: Any = None, stream: str = "default") -> None:
            if stream != wanted:
                return  # another stream of the spout: not the flow's
            if msg_id is not None:
                track((len(items), msg_id))
            append(values[0] if one_field else tuple(values))

        return emit

    def _inner_emit_many(self, rows: Iterable[list[Any]], stream: str = "default") -> None:
        if stream != self.stream:
            return
        if self.one_field:
            self.items.extend(map(_first, rows))
        else:
            self.items.extend([tuple(r) for r in rows])

    def _inner_finish(self) -> None:
        self.done = True

    @property
    def _rayflow_holding(self) -> int:
        """Items taken from the source and not yet sent (``testing.ManualClock`` waits)."""
        return len(getattr(self, "items", ()))

    # ------------------------------------------------------------ next_tuple
    def next_tuple(self) -> None:
        items = self.items
        if self.inner is None:
            self._next_items()
        else:
            # As the task loop does with any spout: a slow source ends the round once the
            # linger time is up (checked every 16 calls), so commands and checkpoints wait
            # no longer than that.
            inner, ends = self.inner, time.monotonic() + self.linger
            for i in range(SPOUT_ROUND):
                before = len(items)
                inner.next_tuple()
                if len(items) == before or self.done or len(items) >= SPOUT_ROUND:
                    break
                if i & 15 == 15 and time.monotonic() > ends:
                    break
        if items:
            self._process()
        if self.done:
            self.finish()
        self._watermark()

    def _next_items(self) -> None:
        """A list source: the next items of this task's share (task i of n: i, i+n, ...)."""
        if self.iterator is None:
            start = self.task + self.position * self.tasks
            self.iterator = zip(
                itertools.count(start, self.tasks),
                itertools.islice(self.head.params["items"], start, None, self.tasks),
            )
        chunk = list(itertools.islice(self.iterator, SPOUT_ROUND))
        self.position += len(chunk)
        if len(chunk) < SPOUT_ROUND:
            self.done = True
        if self.previous:  # sent before a change of parallelism: not again
            chunk = [(i, x) for i, x in chunk if not _sent_before(i, self.previous)]
        self.items.extend([x for _i, x in chunk])

    def _process(self) -> None:
        items, msg_ids = self.items[:], dict(self.msg_ids)
        self.items.clear()
        self.msg_ids.clear()
        outputs = self.outputs
        if msg_ids and self.tracked_mode:  # each msg_id's rows, tracked as one spout tuple
            emit_tracked = self._rayflow_emit_tracked  # type: ignore[attr-defined]
            for i, item in enumerate(items):
                msg_id = msg_ids.get(i)
                if self.runner.run(self.entry, [item], None, None, [0]):
                    if msg_id is not None:
                        self.fail(msg_id)  # it never left: the spout replays it as it sees fit
                    continue
                if msg_id is None:
                    self._emit(outputs.take())
                else:
                    emit_tracked(outputs.take(), msg_id)
            return
        failed = set(self.runner.run(self.entry, items, None, None, range(len(items))))
        if not self._emit(outputs.take()):
            self._rayflow_progress(len(items))  # type: ignore[attr-defined]
        # none and exactly-once: a msg_id is acked right after its emit, as the runtime does
        for i, msg_id in msg_ids.items():
            (self.fail if i in failed else self.ack)(msg_id)

    def _emit(self, rows: dict[str, list[Any]]) -> int:
        sent = 0
        for stream, stream_rows in rows.items():
            if stream_rows:
                self.emit_many(stream_rows, stream=stream)
                sent += len(stream_rows)
        return sent

    # ------------------------------------------------------------ event time
    def _observe(self, step: int, newest: int) -> None:
        if newest > self.newest.get(step, newest - 1):
            self.newest[step] = newest

    def _watermark(self) -> None:
        if not self.newest:
            return
        now = time.monotonic()
        if now < self.next_watermark:
            return
        self.next_watermark = now + self.watermark_every
        lags = self.program.watermarks
        self.emit_watermark(min(ts - lags.get(step, 0) for step, ts in self.newest.items()) - 1)

    # -------------------------------------------------------------- snapshots
    def _snapshot_for(self, checkpoint_id: int) -> Any:
        if self.inner is None:
            return {"position": self.position, "previous": self.previous}
        return {"inner": self.inner._snapshot_for(checkpoint_id)}

    def _restore_for(self, snapshot: Any) -> None:
        if snapshot is None:
            return
        if self.inner is None:
            self.position, self.previous = snapshot["position"], snapshot["previous"]
            self.iterator = None
            return
        self.inner._restore_for(snapshot["inner"])

    def _restore_rescaled_for(self, snapshots: list[Any]) -> None:
        if self.inner is None:
            # Items are dealt by index (task i of n: i, i+n, ...). After a change of n, what
            # the old tasks sent is remembered as (n, their positions), and skipped.
            if any(snapshots):
                old = [s or {"position": 0, "previous": []} for s in snapshots]
                deal = (len(old), [s["position"] for s in old])
                self.previous = [*old[0]["previous"], deal]
            self.position, self.iterator = 0, None
            return
        self.inner._restore_rescaled_for([s and s["inner"] for s in snapshots])

    def snapshot(self) -> Any:  # the runtime calls _snapshot_for; these mark it rewindable
        return self._snapshot_for(0)

    def restore(self, snapshot: Any) -> None:
        self._restore_for(snapshot)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.inner is not None:
            self.inner.notify_checkpoint_complete(checkpoint_id)


def _sent_before(index: int, deals: list[tuple[int, list[int]]]) -> bool:
    """Whether item ``index`` was sent under an earlier deal ``(tasks, positions)``.

    >>> _sent_before(5, [(2, [3, 2])]), _sent_before(4, [(2, [2, 3])])
    (False, False)
    >>> _sent_before(3, [(2, [3, 2])])
    True
    """
    return any(index // n < positions[index % n] for n, positions in deals)


# ====================================================================== bolts
class FlowBolt(Bolt):
    """A keyed operator, or the receiving end of an exchange, and the operators fused after it
    (see :mod:`rayflow.streams.keyed` for the keyed ones)."""

    _rayflow_fused = True

    def __init__(self, program: Packed) -> None:
        self.packed = program

    def prepare(self, context: Context) -> None:
        program = self.program = self.packed.get()
        steps = list(program.steps)
        self.outputs = Outputs()
        exactly_once = context.reliability == Reliability.EXACTLY_ONCE
        self.runner = FusedRunner(self, self.outputs, exactly_once)
        self.head = make_head(steps[0], self, context)
        self.inputs = program.inputs

    def process_batch(self, batch: Batch) -> Any:
        index, wire = self.inputs[(batch.component, batch.stream)]
        pending = self.head.on_rows(index, wire, batch.values)
        if pending is not None:  # map_async: the task's loop awaits the batch
            return self._flush_after(pending)
        self.flush()
        return None

    async def _flush_after(self, pending: Any) -> None:
        await pending
        self.flush()

    def process(self, tup: Tuple) -> None:  # a batch of one (tick tuples never come here)
        self.process_batch(Batch([tup.values], tup.source))

    def on_timer(self, timer: Timer) -> None:
        self.head.on_timer(timer)
        self.flush()

    def cleanup(self) -> None:
        self.head.on_end()
        self.flush()

    def emit_items(
        self,
        items: list,
        tss: list | None,
        origins: list[int | None] | range | None = None,
    ) -> None:
        """What the head put out, through the fused operators after it."""
        if items:
            if origins is None:
                origins = [None] * len(items)
            self.runner.run(self.head.downstream, items, tss, None, origins)

    def flush(self) -> None:
        state = self.__dict__.get("_rayflow_state")
        if state is not None:
            state.settle()  # rocksdb tables: what the head changed goes to the store
        for stream, rows in self.outputs.take().items():
            if rows:
                self.emit_many(rows, stream=stream)

    def _snapshot_for(self, checkpoint_id: int) -> Any:
        return self.head.snapshot()

    def _restore_for(self, snapshot: Any) -> None:
        self.head.restore(snapshot)

    def _restore_rescaled_for(self, snapshots: list[Any]) -> None:
        self.head.restore_rescaled(snapshots)


class CollectBolt(Bolt):
    """``collect(name)``: keeps the items, as they are (``result.outputs[name]``)."""

    outputs: list[str] = []

    def __init__(self, wire: str = "items") -> None:
        self.wire = wire

    def prepare(self, context: Context) -> None:
        self.items: list[Any] = []

    def process_batch(self, batch: Batch) -> None:
        if self.wire == "items":
            self.items.extend(batch.values)
        else:
            self.items.extend(row[0] for row in batch.values)

    def process(self, tup: Tuple) -> None:
        self.process_batch(Batch([tup.values], tup.source))

    def collected_rows(self) -> list[Any]:
        return self.items
