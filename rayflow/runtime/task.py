"""The task core: one spout or bolt instance, its mailbox loop, inputs and outputs.

Plain asyncio, no Ray: :class:`rayflow.runtime.actor.TaskActor` hosts it in a Ray actor and
:mod:`rayflow.testing` hosts many in one process. A host gives the core a ``connect(target)``
function returning a *transmit* for each downstream task, delivers incoming messages through
:meth:`TaskCore.deliver`, and awaits :meth:`TaskCore.run`.

Everything that touches user code (data, end-of-stream, control commands) is handled one at a
time by the loop in :meth:`run`, so user code never runs concurrently with itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from rayflow.api.components import Bolt, Spout
from rayflow.api.metrics import LATENCY_BUCKETS, Histogram
from rayflow.api.tuple import TupleSource
from rayflow.errors import TaskError, TopologyError
from rayflow.runtime.acking import Acking
from rayflow.runtime.channels import (
    BARRIER,
    DATA,
    END,
    KIND_NAMES,
    WATERMARK,
    InputChannel,
    OutputChannel,
    Transmit,
)
from rayflow.runtime.collector import Collector
from rayflow.runtime.eventtime import MAX_TIME, InputWatermarks, Timers
from rayflow.runtime.task_acking import AckingMixin
from rayflow.runtime.task_checkpoint import (
    UNTOLD,
    CheckpointMixin,
    Reset,
    rewindable,
    unrewindable,
)
from rayflow.runtime.task_recovery import RecoveryMixin
from rayflow.runtime.task_report import ReportMixin
from rayflow.runtime.task_time import TICK, EventTimeMixin, _duration_ms
from rayflow.runtime.task_user import UserObjectMixin
from rayflow.spec.model import TopologySpec

log = logging.getLogger("rayflow.task")

TaskKey = tuple[str, int]
_MAX_ERRORS_KEPT = 10
_IDLE_SPOUT_SLEEP = 0.001  # Storm's default wait strategy: 1 ms when next_tuple emitted nothing


def wall_clock_ms() -> int:
    """Processing time: milliseconds since the epoch."""
    return int(time.time() * 1000)


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class TaskCore(
    EventTimeMixin, AckingMixin, CheckpointMixin, RecoveryMixin, ReportMixin, UserObjectMixin
):
    """One task: runs the user's spout or bolt between its input and output channels."""

    def __init__(
        self,
        spec: TopologySpec,
        component_id: str,
        task_index: int,
        connect: Callable[[TaskKey], Transmit],
        epoch: int = 0,
        local_tasks: Iterable[TaskKey] = (),
        clock: Callable[[], int] = wall_clock_ms,
        feedback: Callable[[TaskKey, list], None] | None = None,
        supervised: bool = False,
    ) -> None:
        self.spec = spec
        self.component = spec.component(component_id)
        self.key: TaskKey = (component_id, task_index)
        self.epoch = epoch
        self.settings = spec.settings
        self.is_spout = self.component.kind == "spout"
        self.loop: asyncio.AbstractEventLoop | None = None

        self.inputs: dict[TaskKey, InputChannel] = {}
        # Channel epochs are the sender's generation: 0 until the sender is restarted. Under
        # exactly-once every task shares one generation (a recovery moves all of them on).
        shared = epoch if self.settings.reliability == "exactly_once" else 0
        for upstream in sorted({s.source for s in spec.upstream(component_id)}):
            for i in range(spec.component(upstream).parallelism):
                self.inputs[(upstream, i)] = InputChannel((upstream, i), shared)
        self.open_inputs = len(self.inputs)
        self.clock = clock
        self.feedback = feedback  # ackers: sends completed trees to a spout task
        self.reliable = self.settings.reliability == "at_least_once"
        self.acking: Acking | None = None
        self.watermarks = InputWatermarks(self.inputs)
        self.timers = Timers()
        self.config = spec.component_config(component_id)
        self.tick_interval = _duration_ms(self.config.get("tick.interval"), "tick.interval")
        self.watermark_interval = _duration_ms(
            self.config.get("watermark.interval", "200ms"), "watermark.interval"
        )
        self.out_of_orderness = _duration_ms(
            self.config.get("watermark.max_out_of_orderness", 0), "watermark.max_out_of_orderness"
        )
        self.idle_timeout = _duration_ms(
            self.config.get("watermark.idle_timeout"), "watermark.idle_timeout"
        )
        self.max_event_time: int | None = None  # spouts: the largest timestamp emitted

        self.outputs: dict[TaskKey, OutputChannel] = {}
        for target in sorted({s.target for s in spec.downstream(component_id)}):
            for i in range(spec.component(target).parallelism):
                self.outputs[(target, i)] = OutputChannel(
                    (target, i),
                    self.settings.channel_credits,
                    connect((target, i)),
                    on_writable=self._on_writable,
                    on_error=self._on_output_error,
                    on_blocked=self._on_blocked,
                    on_broken=self._on_output_broken if supervised else None,
                )
        self.collector = Collector(spec, component_id, self.outputs, local_tasks)

        self.end_sent = False
        self.sent_watermark = -(2**63)
        self.idle_sent = False
        self.blocked = 0  # output channels waiting for a credit: take no new input while > 0
        self.inbox: deque[tuple[Any, ...]] = deque()
        self.control: deque[tuple[str, Any, Any]] = deque()
        self._waiter: asyncio.Future | None = None
        self.state = "created"
        self.active = True
        self._finishing = False
        self._stopping = False
        self._fatal: BaseException | None = None
        self._fatal_target = ""
        self.obj: Spout | Bolt | None = None

        self.executed = 0
        self.failed = 0
        self.acked = 0
        self.exec_seconds = 0.0
        self.execute_histogram = Histogram(LATENCY_BUCKETS)  # per tuple, batch means
        self.blocked_seconds = 0.0
        self.duplicates = 0
        self.inbox_peak = 0
        self.started_at = time.time()
        self.errors: deque[dict[str, Any]] = deque(maxlen=_MAX_ERRORS_KEPT)
        self._logged_errors = 0
        self._init_checkpoints()

    # ================================================================ receiving
    def deliver(
        self,
        source: TaskKey,
        epoch: int,
        seq: int,
        kind: int,
        stream: str,
        rows: Any,
        meta: Any,
    ) -> asyncio.Future | None:
        """Accept one message; returns a future done when the loop dequeues it (the credit).

        Returns None for a duplicate or a message of an old epoch (its credit is free at once).
        """
        channel = self.inputs.get(source)
        if channel is None:
            raise TopologyError(f"task {self.name} has no input channel from {source}")
        if epoch != channel.epoch:
            if epoch < channel.epoch:
                return None  # from a generation of the sender that was replaced
            self._reset_input(channel, epoch)
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        fut = self.loop.create_future()
        if not channel.accept(seq, (channel, kind, stream, rows, meta, fut), self.inbox.append):
            self.duplicates += 1
            return None
        if len(self.inbox) > self.inbox_peak:
            self.inbox_peak = len(self.inbox)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return fut

    # ================================================================= control
    def submit_control(self, name: str, arg: Any = None, done: Any = None) -> None:
        """Queue a command for the loop (call on the loop's thread). ``done`` gets the result."""
        if self.state in ("finished", "failed"):  # no loop to answer it any more
            if done is not None:
                done.set_result(self.state)
            return
        self.control.append((name, arg, done))
        self._wake_loop()

    def _wake_loop(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _handle_control(self) -> None:
        while self.control:
            name, arg, done = self.control.popleft()
            if name == "reset":  # out of the loop, wherever it is; run() applies it
                raise Reset(*arg, done)
            try:
                result = self._command(name, arg)
            except Exception as exc:
                if done is not None:
                    done.set_exception(exc)
            else:
                if done is not None:
                    done.set_result(result)

    def _command(self, name: str, arg: Any) -> Any:
        if name == "finish":
            self._finishing = True
        elif name == "stop":
            self._stopping = True
        elif name == "checkpoint":
            if self.is_spout:
                self._trigger_checkpoint(arg)
        elif name == "checkpoint_complete":
            self._checkpoint_complete(arg)
        elif name == "abort_checkpoint":
            self.abort_checkpoint(arg)
        elif name == "resume":
            self.paused = False
        elif name == "final_where":
            self.final_where = arg
        elif name in ("activate", "deactivate"):
            want = name == "activate"
            if self.is_spout and want != self.active:
                self.active = want
                hook = self.obj.activate if want else self.obj.deactivate  # type: ignore[union-attr]
                self._call_user(hook, name)
        else:
            raise ValueError(f"unknown command {name!r}")
        return self.state

    # ================================================================ the loop
    @property
    def name(self) -> str:
        return f"{self.key[0]}[{self.key[1]}]"

    async def run(self) -> dict[str, Any]:
        """Open the user object, run until the end, close it; returns :meth:`stats`."""
        self.loop = asyncio.get_running_loop()
        self.state = "opening"
        self._open_user_object()
        try:
            if self.exactly_once and self.is_spout and not rewindable(type(self.obj)):
                raise TaskError(
                    self.key[0],
                    self.key[1],
                    unrewindable(self.key[0], self.component.class_ref.path),
                )
            if self.restore_from is not None:
                self._restore(*self.restore_from)
            self.state = "running"
            while True:
                try:
                    if self.is_spout:
                        await self._run_spout()
                    else:
                        await self._run_bolt()
                    break
                except Reset as reset:
                    try:
                        self._reset(reset.generation, reset.plan, reset.states)
                    except BaseException as exc:
                        if reset.done is not None:
                            reset.done.set_exception(exc)
                        raise
                    if reset.done is not None:
                        reset.done.set_result("reset")
        except TaskError:
            self.state = "failed"
            self._answer_pending_control()
            raise
        except Exception as exc:
            self.state = "failed"
            self._answer_pending_control()
            raise TaskError(
                self.key[0], self.key[1], f"{type(exc).__name__}: {exc}", traceback.format_exc()
            ) from exc
        self.state = "finished"
        stats = self.stats()
        collected = getattr(self.obj, "collected_rows", None)
        stats["collected"] = collected() if callable(collected) else None
        return stats

    async def _sleep(self, timeout: float | None = None) -> None:
        """Wait until a delivery, a credit, a command or ``timeout`` wakes the loop."""
        assert self.loop is not None
        fut = self.loop.create_future()
        self._waiter = fut
        handle = self.loop.call_later(timeout, _wake, fut) if timeout is not None else None
        try:
            await fut
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()

    def _on_blocked(self, _channel: OutputChannel) -> None:
        self.blocked += 1

    def _on_writable(self, _channel: OutputChannel) -> None:
        self.blocked -= 1
        if not self.blocked:
            self._wake_loop()

    def _on_output_error(self, channel: OutputChannel, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
            self._fatal_target = f"{channel.key[0]}[{channel.key[1]}]"
        self._wake_loop()

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise TaskError(
                self.key[0],
                self.key[1],
                f"sending to {self._fatal_target} failed: {self._fatal}",
            )

    async def _wait_writable(self) -> None:
        start = time.perf_counter()
        while self.blocked and not self.control and self._fatal is None:
            await self._sleep()
        self.blocked_seconds += time.perf_counter() - start

    # ---------------------------------------------------------------- spouts
    async def _run_spout(self) -> None:
        spout = self.obj
        assert isinstance(spout, Spout)
        c = self.collector
        next_tuple = spout.next_tuple
        linger = self.settings.batch_linger
        budget = self.settings.batch_size
        last_flush = time.monotonic()
        next_watermark = last_flush
        last_emit = last_flush
        while not self._stopping:
            if self.control:
                self._handle_control()
                continue
            self._check_fatal()
            if self._finishing or self.finished_on_restore:
                break
            if not self.active or self.paused:
                c.flush_all()
                await self._sleep()
                continue
            if self.blocked:
                await self._wait_writable()
                continue
            acking = self.acking
            if acking is not None:
                if acking.completions or acking.pending:
                    acking.settle()
                if acking.full:  # max.spout.pending: send what waits, then wait for trees
                    if acking.fresh:
                        acking.flush_acks()
                    c.flush_all()
                    last_flush = time.monotonic()
                    await self._sleep(0.01)
                    continue
            started = c.spout_emits
            round_ends = time.monotonic() + linger
            for i in range(budget):
                # A slow next_tuple must not hold the loop for a whole batch: every 16 calls,
                # end the round once the linger time is up (commands and rewiring wait on it).
                if i & 15 == 15 and time.monotonic() > round_ends:
                    break
                before = c.spout_emits
                try:
                    next_tuple()
                except Exception as exc:
                    self._user_error("next_tuple", exc)
                    break
                if (
                    c.spout_emits == before
                    or self._finishing
                    or self.blocked
                    or (acking is not None and acking.full)
                ):
                    break
            if c.acks_due:
                self._ack_unreliable()
            if acking is not None and acking.fresh:  # a spout's acks: its new roots' edges
                acking.flush_acks()
            now = time.monotonic()
            if c.spout_emits != started:
                last_emit = now
                self.idle_sent = False
            if self.max_event_time is not None and now >= next_watermark:
                next_watermark = now + self.watermark_interval / 1000
                self._emit_watermark(self.max_event_time - self.out_of_orderness - 1)
            if self.idle_timeout and now - last_emit >= self.idle_timeout / 1000:
                self._mark_idle()
            if now - last_flush >= linger:
                c.flush_all()
                last_flush = now
            # Nothing emitted: back off 1 ms (Storm's wait strategy); partial batches still wait
            # for the linger time, so a trickle of tuples does not become a trickle of calls.
            await asyncio.sleep(_IDLE_SPOUT_SLEEP if c.spout_emits == started else 0)
        await self._end_of_stream(spout.close)

    async def _run_bolt(self) -> None:
        bolt = self.obj
        assert isinstance(bolt, Bolt)
        self._execute = self._choose_executor(bolt)
        c = self.collector
        inbox = self.inbox
        linger = self.settings.batch_linger
        last_flush = time.monotonic()
        timers = self.timers
        if self.tick_interval:
            timers.register(self.clock() + self.tick_interval, False, TICK)
        while not self._stopping:
            if self.control:
                self._handle_control()
                continue
            self._check_fatal()
            if self.blocked:
                await self._wait_writable()
                continue
            if self.paused:
                await self._sleep()
                continue
            upcoming = timers.next_processing_time()
            if upcoming is not None and self.clock() >= upcoming:
                self._fire_processing_timers()
                continue
            if not inbox:
                if self.open_inputs == 0:
                    break
                remaining = last_flush + linger - time.monotonic()
                if remaining <= 0:
                    c.flush_all()
                    last_flush = time.monotonic()
                    remaining = None
                if upcoming is not None:
                    until_timer = max(0.0, (upcoming - self.clock()) / 1000)
                    remaining = until_timer if remaining is None else min(remaining, until_timer)
                if not self.blocked:
                    await self._sleep(remaining)
                continue
            item = inbox.popleft()
            channel, kind, stream, rows, meta, fut = item
            if self.holding and channel.key in self.holding:
                self.holding[channel.key].append(item)  # aligning: its credit stays taken
                continue
            if not fut.done():
                fut.set_result(None)  # the credit goes back on dequeue
            if kind == DATA:
                if self.watermarks.idle:
                    self.watermarks.activate(channel.key)
                    self.idle_sent = False
                source = channel.sources.get(stream) or self._source(channel, stream)
                start = time.perf_counter()
                self._execute(rows, source, meta)  # re-read: keyed state may swap it
                took, n = time.perf_counter() - start, len(rows)
                self.exec_seconds += took
                if n:
                    self.execute_histogram.observe(took / n, n)
                self.executed += n
            elif kind == WATERMARK:
                self._on_watermark(channel, rows)
            elif kind == BARRIER:
                self._on_barrier(channel, rows)
            elif kind == END:
                channel.ended = True
                self.open_inputs -= 1
                advanced = self.watermarks.end(channel.key)
                if advanced is not None:
                    self._advance_event_time(advanced)
                self._check_aligned()
            else:
                raise TaskError(
                    self.key[0],
                    self.key[1],
                    f"got a {KIND_NAMES.get(kind, kind)} message, which this version of the "
                    "runtime does not handle",
                )
            now = time.monotonic()
            if now - last_flush >= linger:
                c.flush_all()
                last_flush = now
            await asyncio.sleep(0)  # let deliveries and credit returns in
        await self._end_of_stream(bolt.cleanup)

    def _source(self, channel: InputChannel, stream: str) -> TupleSource:
        fields = self.spec.component(channel.component).outputs.get(stream, ())
        source = channel.sources[stream] = TupleSource(
            stream, channel.component, channel.task, fields
        )
        return source

    # ------------------------------------------------------------- the end
    async def _end_of_stream(self, closer: Callable[[], None]) -> None:
        """Run the user's cleanup/close, send end-of-stream everywhere, wait until delivered."""
        if self._stopping:
            self._release_inputs()
            self.collector.discard_all()
            self._call_user(closer, closer.__name__)
            self._answer_pending_control()
            return
        # A bolt restored from a final checkpoint ran its cleanup before: not again.
        again = self.finished_on_restore and not self.is_spout
        if not self.is_spout and not again:  # the end of the input is the end of time
            for timestamp, event_time, payload in self.timers.due(MAX_TIME, False):
                if payload != TICK:
                    self._fire(timestamp, event_time, payload)
        if not again:
            self._call_user(closer, closer.__name__)
        if self.acking is not None:
            self.acking.flush_acks()
        if self.exactly_once:
            await self._commands_until(lambda: self.final_where is not UNTOLD)  # it says where
            self._final_snapshot()
        if self.is_spout:  # a bounded source that ends takes event time to the end
            self._emit_watermark(MAX_TIME)
        self.collector.broadcast(END)
        self.end_sent = True
        while not all(ch.idle for ch in self.outputs.values()):
            self._check_fatal()
            if self.control:
                self._handle_control()
            if self._stopping:  # told to stop while downstream still drains: stop now
                self._release_inputs()
                break
            await asyncio.sleep(0.002)
        if self.exactly_once:
            # Done, but a sink commits its last output only once every task's final snapshot is
            # written: until then a failure elsewhere replays from the last checkpoint.
            await self._commands_until(lambda: self.final_committed)
        self._answer_pending_control()

    async def _commands_until(self, done: Callable[[], bool]) -> None:
        """Only handle commands until ``done()`` (or a stop)."""
        while not done() and not self._stopping:
            self._check_fatal()
            if self.control:
                self._handle_control()
                continue
            await self._sleep()
