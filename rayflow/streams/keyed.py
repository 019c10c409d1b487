"""The heads of flow bolts: what a :class:`~rayflow.streams.operators.FlowBolt` does with each
batch before the operators fused after it. A keyed head keeps its state in its bolt's keyed
state (``self.state``), mostly as *tables* (a dict of one value per key: a dict operation per
item), saved and moved by key group like any keyed state.

>>> from rayflow import Flow, testing
>>> flow = Flow("rolling")
>>> sums = flow.source([("a", 1), ("b", 2), ("a", 3)]).key_by(lambda p: p[0])
>>> _ = sums.reduce(lambda acc, p: (acc[0], acc[1] + p[1])).collect("sums")
>>> testing.run(flow).outputs["sums"]
[('a', ('a', 1)), ('b', ('b', 2)), ('a', ('a', 4))]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rayflow.api.components import Context, Timer
from rayflow.errors import TopologyError
from rayflow.keys import key_groups_of_task
from rayflow.state.keyed import table_key
from rayflow.streams.pipeline import Run, Step, decode

if TYPE_CHECKING:
    from rayflow.streams.operators import FlowBolt


class Head:
    """A head that hands every item on as it is (an exchange's receiving end, or a stateless
    operator that a change of parallelism put behind one)."""

    def __init__(self, step: Step, bolt: FlowBolt, context: Context) -> None:
        self.step = step
        self.bolt = bolt
        self.context = context
        self.downstream: Run = _nothing
        self.late: Run | None = None  # a window's late() stream, when it has one

    def on_rows(self, index: int, wire: str, rows: list[Any]) -> None:
        items, tss, _keys = decode(wire, rows)
        self.bolt.runner.run(self.downstream, items, tss, None, range(len(items)))

    def on_timer(self, timer: Timer) -> None:
        pass

    def on_end(self) -> None:
        pass

    def snapshot(self) -> Any:
        return None

    def restore(self, snapshot: Any) -> None:
        self.resume_timers()

    def restore_rescaled(self, snapshots: list[Any]) -> None:
        self.resume_timers()

    def resume_timers(self) -> None:
        """After a restore: register again the timers of what this task's keyed state holds
        now (after a rescale the runtime keeps only old task 0's timers)."""

    def failed(self, origin: int, exc: BaseException) -> None:
        """A user function raised on input row ``origin``: that item fails (see operators)."""
        self.bolt.runner.report([origin], exc)


def _nothing(items: list, tss: list | None, keys: list | None) -> None:
    pass


class KeyedHead(Head):
    """A keyed operator: items arrive with their keys (``(key, item[, ts])`` rows)."""

    timestamped = False

    def __init__(self, step: Step, bolt: FlowBolt, context: Context) -> None:
        super().__init__(step, bolt, context)
        self.state = bolt.state
        self.fn = step.fn
        self.out: list[Any] = []
        self.out_ts: list[Any] | None = None
        self.origins: list[int | None] = []

    def owned_groups(self) -> range:
        """The key groups this task owns (where its keys' state is)."""
        context = self.context
        return key_groups_of_task(
            context.task_index, self.state.max_parallelism, context.parallelism
        )

    def index(self, key: Any) -> Any:
        """The key's index in a table (``rayflow.state.keyed.table_key``)."""
        cls = key.__class__
        if cls is str or cls is int:  # table_key's common case, without the call
            return key
        index = table_key(key)
        self.state.keep_original(index, key)
        return index

    def on_rows(self, index: int, wire: str, rows: list[Any]) -> None:
        items, tss, keys = decode(wire, rows)
        self.out, self.origins = [], []
        self.out_ts = None if tss is None else []
        self.take(items, tss, keys, wire)  # type: ignore[arg-type]
        self.send()

    def take(self, items: list, tss: list | None, keys: list, wire: str) -> None:
        raise NotImplementedError

    def put(self, item: Any, ts: Any, origin: int | None) -> None:
        self.out.append(item)
        if self.out_ts is not None:
            self.out_ts.append(ts)
        self.origins.append(origin)

    def send(self) -> None:
        out, self.out = self.out, []
        if out:
            self.bolt.emit_items(out, self.out_ts, self.origins)


class ReduceHead(KeyedHead):
    """``reduce(fn)``: rolling, ``(key, accumulated)`` after every item."""

    def __init__(self, step: Step, bolt: FlowBolt, context: Context) -> None:
        super().__init__(step, bolt, context)
        self.table = self.state.table("reduce")

    def take(self, items: list, tss: list | None, keys: list, wire: str) -> None:
        table, fn, index, put = self.table, self.fn, self.index, self.put
        for i, (key, item) in enumerate(zip(keys, items, strict=True)):
            at = index(key)
            try:
                acc = fn(table[at], item) if at in table else item
            except Exception as exc:
                self.failed(i, exc)
                continue
            table[at] = acc
            put((key, acc), None if tss is None else tss[i], i)


class FinalHead(KeyedHead):
    """``count_final``, ``reduce_final``, ``fold_final``: one ``(key, result)`` per key when
    the input ends (or at a graceful stop). Batches may come pre-aggregated (``partial`` wire)."""

    def __init__(self, step: Step, bolt: FlowBolt, context: Context) -> None:
        super().__init__(step, bolt, context)
        self.table = self.state.table(step.kind)
        self.init = step.params.get("init")

    def take(self, items: list, tss: list | None, keys: list, wire: str) -> None:
        kind, table, fn, index = self.step.kind, self.table, self.fn, self.index
        if kind == "count_final":
            get = table.get
            if wire == "partial":
                for key, n in zip(keys, items, strict=True):
                    at = index(key)
                    table[at] = get(at, 0) + n
            else:
                for key in keys:
                    at = index(key)
                    table[at] = get(at, 0) + 1
            return
        init = self.init
        for i, (key, item) in enumerate(zip(keys, items, strict=True)):
            at = index(key)
            try:
                if at in table:
                    table[at] = fn(table[at], item)
                else:
                    table[at] = fn(init(), item) if kind == "fold_final" else item
            except Exception as exc:
                self.failed(i, exc)

    def on_end(self) -> None:
        self.out, self.origins, self.out_ts = [], [], None
        for key, result in self.state.keyed_items(self.table):
            self.put((key, result), None, None)
        self.send()


class MapStateHead(KeyedHead):
    """``map_state(fn)``: ``state, out = fn(state, item)`` per item."""

    def __init__(self, step: Step, bolt: FlowBolt, context: Context) -> None:
        super().__init__(step, bolt, context)
        self.table = self.state.table("map_state")

    def take(self, items: list, tss: list | None, keys: list, wire: str) -> None:
        table, fn, index = self.table, self.fn, self.index
        for i, (key, item) in enumerate(zip(keys, items, strict=True)):
            at = index(key)
            try:
                result = fn(table.get(at), item)
                state, out = result
            except Exception as exc:
                if not isinstance(exc, TypeError | ValueError) or "unpack" not in str(exc):
                    self.failed(i, exc)
                    continue
                self.failed(
                    i,
                    TopologyError(
                        f"map_state '{self.step.name}': fn(state, item) must return a pair "
                        f"(new state, output), got {result!r}"
                    ),
                )
                continue
            if state is None:
                table.pop(at, None)
            else:
                table[at] = state
            if out is not None:
                self.put((key, out), None if tss is None else tss[i], i)


class ProcessContext:
    """What ``process(fn)`` gets with each item: ``key``, ``state`` (value/map/list, scoped to
    the key), ``timestamp`` (event time, or None), ``emit(x)`` and ``register_timer(ts)``."""

    __slots__ = ("_head", "key", "timestamp")

    def __init__(self, head: ProcessHead) -> None:
        self._head = head
        self.key: Any = None
        self.timestamp: int | None = None

    @property
    def state(self) -> Any:
        return self._head.state

    def emit(self, value: Any) -> None:
        """``(key, value)`` out of the operator."""
        self._head.put((self.key, value), self.timestamp, self._head.origin)

    def register_timer(self, timestamp: int) -> None:
        """``on_timer(ctx, timestamp)`` once event time (with timestamps upstream) or the clock
        reaches ``timestamp`` (ms); one timer per key and time."""
        self._head.register(self.key, int(timestamp))

    def current_watermark(self) -> int:
        return self._head.bolt.current_watermark()

    def current_processing_time(self) -> int:
        return self._head.bolt.current_processing_time()


PROCESS_TIMERS = ("process_at", "process")  # one per timestamp; one per key (earlier versions)


class ProcessHead(KeyedHead):
    """``process(fn, on_timer=None)``: Flink's KeyedProcessFunction."""

    def __init__(self, step: Step, bolt: FlowBolt, context: Context) -> None:
        super().__init__(step, bolt, context)
        self.on_timer_fn = step.params.get("on_timer")
        self.event_time = bool(step.params.get("timestamped"))
        self.timers = self.state.table("process.timers")  # key index -> timestamps pending
        # timestamp -> key indexes with a timer then (one runtime timer per timestamp)
        self.due = self.state.due("process.timers", self.owned_groups(), self.timer_at)
        self.ctx = ProcessContext(self)
        self.origin: int | None = None

    def take(self, items: list, tss: list | None, keys: list, wire: str) -> None:
        ctx, fn, set_key = self.ctx, self.fn, self.state.set_key
        for i, (key, item) in enumerate(zip(keys, items, strict=True)):
            ctx.key, ctx.timestamp, self.origin = key, None if tss is None else tss[i], i
            set_key((key,))
            try:
                fn(ctx, item)
            except Exception as exc:
                self.failed(i, exc)
        set_key(None)
        self.origin = None

    def register(self, key: Any, timestamp: int) -> None:
        at = self.index(key)
        pending = self.timers.get(at)
        if pending is None:
            pending = self.timers[at] = []
        if timestamp not in pending:
            pending.append(timestamp)
            self.due.add(at, timestamp)

    def timer_at(self, timestamp: int) -> None:
        """The first key with a timer at ``timestamp``: the runtime's timer for all of them."""
        self.bolt.register_timer(timestamp, self.event_time, ("process_at", timestamp))

    def on_timer(self, timer: Timer) -> None:
        payload = timer.payload
        if not (isinstance(payload, tuple) and payload and payload[0] in PROCESS_TIMERS):
            return
        if payload[0] == "process":  # one key's timer, from a checkpoint of an earlier version
            self.fire(payload[1], timer.timestamp)
            return
        keys = list(self.due.keys(timer.timestamp))
        self.due.drop(timer.timestamp)  # before firing: on_timer may set this time again
        for at in keys:
            self.fire(at, timer.timestamp)
            self.state.settle_some()

    def fire(self, at: Any, timestamp: int) -> None:
        """The timer of one key at ``timestamp``, unless it fired already or its key moved to
        another task on a rescale."""
        pending = self.timers.get(at)
        if not pending or timestamp not in pending:
            return
        key = self.state.original(at)  # before the entry (which may keep the key) goes
        pending.remove(timestamp)
        if not pending:
            del self.timers[at]
        if self.on_timer_fn is None:
            return
        ctx = self.ctx
        ctx.key, ctx.timestamp, self.origin = key, timestamp, None
        self.out, self.origins = [], []
        self.out_ts = [] if self.event_time else None
        self.state.set_key((key,))
        try:
            self.on_timer_fn(ctx, timestamp)
        except Exception as exc:
            self.bolt.runner.report([], exc)
        finally:
            self.state.set_key(None)
        self.send()

    def resume_timers(self) -> None:
        # Task 0 of a rescaled job also gets the old timers of keys it lost: fire() ignores
        # those (their key is not in its table).
        self.due.resume(
            (at, timestamp) for at, pending in self.timers.items() for timestamp in pending
        )
