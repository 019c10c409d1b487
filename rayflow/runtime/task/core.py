"""The task core: one spout or bolt instance, its mailbox loop, inputs and outputs.

Plain asyncio, no Ray: :class:`rayflow.runtime.hosts.actor.TaskActor` hosts it in a Ray actor
and :mod:`rayflow.testing` hosts many in one process. A host gives the core a ``connect(target)``
function returning a *transmit* for each downstream task, delivers incoming messages through
:meth:`TaskCore.deliver`, queues commands with :meth:`TaskCore.submit_control`, and awaits
:meth:`TaskCore.run`.

Everything that touches user code (data, end-of-stream, commands) is handled one at a time by
the loop, so user code never runs concurrently with itself. The core keeps the loop and hands the
rest to collaborators, each owning its state and its ``reset()``:

=================  =================================================================
``inputs``         :class:`~rayflow.runtime.task.inputs.Inputs`: channels in, the inbox
``collector``      :class:`~rayflow.runtime.io.collector.Collector`: routes and channels out
``user``           :class:`~rayflow.runtime.task.user.UserObject`: the spout or bolt, bound
``event_time``     :class:`~rayflow.runtime.task.timing.EventTime`: watermarks, timers, ticks
``aligner``        :class:`~rayflow.runtime.task.barriers.Aligner`: barrier alignment
``snapshots``      :class:`~rayflow.runtime.task.snapshots.Snapshots`: checkpoints, restore
``report``         :class:`~rayflow.runtime.task.report.Report`: counters, user errors, stats
=================  =================================================================

Lifecycle (``state``)::

    created --run()--> opening --(user object open, restored)--> running --+--> finished
                                                                            |
                          a raise in user code that fails the task, or     +--> failed
                          a lost output under no supervision

    running: the loop. A spout calls next_tuple in rounds; a bolt takes one message at a time.
      it ends when a spout finishes (finish(), or the "finish" command) or every input of a bolt
      has ended; then: cleanup/close, the final snapshot (exactly-once), end-of-stream downstream,
      and waiting until everything sent was dequeued (and, exactly-once, until the final
      checkpoint is complete).

Commands (:data:`rayflow.runtime.task.commands.TABLE`; answered with ``state``), in every state
of the loop:

    finish               a spout ends its stream as if next_tuple had run dry
    stop                 leave at once: inputs released, nothing more sent, close/cleanup called
    activate/deactivate  a spout's activate()/deactivate(); deactivated it calls no next_tuple
    checkpoint (N, dir)  a spout snapshots its position and sends barrier N
    abort_checkpoint N   stop aligning for N
    checkpoint_complete  notify_checkpoint_complete(N): sinks commit, sources commit positions
    final_where DIR      where the final snapshot of a bounded stream goes (None: nowhere)
    reset (gen, plan, states)
                         back to a checkpoint in place: whatever the loop is doing, it returns
                         to ``run``, which makes a fresh user object restored from ``plan`` (or
                         from nothing) with inputs and outputs of generation ``gen``; the task
                         is then *paused* until...
    resume               ...it takes input (and calls next_tuple) again
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from rayflow.api.components import Bolt, Spout
from rayflow.errors import TaskError
from rayflow.runtime.io.collector import Collector
from rayflow.runtime.io.messages import BARRIER, DATA, END, KIND_NAMES, WATERMARK, TaskKey, Transmit
from rayflow.runtime.task.barriers import Aligner
from rayflow.runtime.task.commands import Commands
from rayflow.runtime.task.downstream import Downstream
from rayflow.runtime.task.eventtime import MAX_TIME
from rayflow.runtime.task.garbage import collect_while_idle
from rayflow.runtime.task.inputs import Inputs
from rayflow.runtime.task.report import Report
from rayflow.runtime.task.snapshots import UNTOLD, Snapshots, rewindable, unrewindable
from rayflow.runtime.task.timing import EventTime
from rayflow.runtime.task.user import UserObject
from rayflow.spec.model import TopologySpec
from rayflow.spec.settings import Reliability

__all__ = ["TaskCore", "TaskKey", "wall_clock_ms"]

log = logging.getLogger("rayflow.task")

_IDLE_SPOUT_SLEEP = 0.001  # Storm's default wait strategy: 1 ms when next_tuple emitted nothing
STATE_SWEEP_INTERVAL = 1.0  # seconds between sweeps of expired keyed state nobody reads


def wall_clock_ms() -> int:
    """Processing time: milliseconds since the epoch."""
    return int(time.time() * 1000)


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class TaskCore:
    """One task: runs the user's spout or bolt between its input and output channels."""

    def __init__(
        self,
        spec: TopologySpec,
        component_id: str,
        task_index: int,
        connect: Callable[[TaskKey], Transmit],
        generation: int = 0,
        local_tasks: Iterable[TaskKey] = (),
        clock: Callable[[], int] = wall_clock_ms,
        feedback: Callable[[TaskKey, list], None] | None = None,
        supervised: bool = False,
    ) -> None:
        self._waiter: asyncio.Future | None = None  # the loop sleeps on it; wake() ends that
        self.spec = spec
        self.component = spec.component(component_id)
        self.key: TaskKey = (component_id, task_index)
        self.name = f"{component_id}[{task_index}]"
        self.generation = generation  # the restart generation: names actors, separates messages
        self.settings = settings = spec.settings
        self.is_spout = self.component.kind == "spout"
        self.exactly_once = settings.reliability == Reliability.EXACTLY_ONCE
        self.reliable = settings.reliability == Reliability.AT_LEAST_ONCE
        self.config = spec.component_config(component_id)
        self.clock = clock
        self.feedback = feedback  # ackers: sends completed trees to a spout task
        self._loop: asyncio.AbstractEventLoop | None = None

        # Channel generations are the sender's: 0 until the sender is restarted. Under
        # exactly-once every task shares one generation (a recovery moves all of them on).
        upstream = [
            (source, i)
            for source in sorted({s.source for s in spec.upstream(component_id)})
            for i in range(spec.component(source).parallelism)
        ]
        self.inputs = Inputs(self.name, upstream, generation if self.exactly_once else 0, self.wake)
        self.deliver = self.inputs.deliver  # the hosts' way in, without a call in between
        self.downstream = Downstream(
            self.key,
            [
                (target, i)
                for target in sorted({s.target for s in spec.downstream(component_id)})
                for i in range(spec.component(target).parallelism)
            ],
            settings.channel_credits,
            connect,
            self.wake,
            supervised,
        )
        self.outputs = self.downstream.channels
        self.collector = Collector(spec, component_id, self.outputs, local_tasks, task_index)
        self.report = Report(self)
        self.event_time = EventTime(self, self.config)
        self.user = UserObject(self)
        self.snapshots = Snapshots(self)
        inputs = self.inputs
        self.aligner = Aligner(inputs.channels, inputs.inbox, self._aligned, self._abandoned)
        self.commands = Commands(self)
        self.state = "created"
        self.active = True
        self.paused = False  # after a reset, until "resume"
        self.end_sent = False
        self.finishing = False  # a spout's stream ends (finish())
        self.waits_for: str | None = None  # at the end of the input: what it waits for

    # ============================================================ for the hosts
    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop or self.inputs.loop  # a delivery before run() learnt it too

    @loop.setter
    def loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = self.inputs.loop = loop

    @property
    def inbox(self) -> Any:
        return self.inputs.inbox

    @property
    def duplicates(self) -> int:
        return self.inputs.duplicates

    @property
    def restore_from(self) -> Any:
        return self.snapshots.restore_from

    @restore_from.setter
    def restore_from(self, value: Any) -> None:
        self.snapshots.restore_from = value

    def read_plan(self, plan: dict[str, Any]) -> list[dict[str, Any]]:
        """The task files of a restore plan, read and checked (call in a thread)."""
        return self.snapshots.read_plan(plan)

    async def checkpoint_result(self, checkpoint_id: int) -> dict[str, Any] | None:
        return await self.snapshots.result(checkpoint_id)

    def stats(self) -> dict[str, Any]:
        """Counters and gauges, safe to call from another thread."""
        return self.report.stats()

    def receive_acks(self, items: tuple[Any, Any]) -> None:
        """Complete roots from an acker, with the tags of their failed tuples (call on the
        loop's thread)."""
        acking = self.user.acking
        if acking is not None:
            acking.completions.append(items)
            self.wake()

    def reconnect_output(self, target: TaskKey, transmit: Transmit) -> None:
        """Send to the restarted ``target`` from now on (call on the loop's thread)."""
        self.downstream.reconnect(target, transmit, self.end_sent)

    # ================================================================ commands
    def submit_control(self, name: str, arg: Any = None, done: Any = None) -> None:
        """Queue a command for the loop (call on the loop's thread). ``done`` gets the result."""
        self.commands.submit(name, arg, done)

    def wake(self) -> None:
        """Wake the loop if it sleeps (a delivery, a credit, a command, a clock)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def finish(self) -> None:
        """End a spout's stream (the user's ``finish()``, or the ``finish`` command)."""
        self.finishing = True

    def checkpoint(self, checkpoint_id: int, where: str) -> None:
        """A spout: snapshot the position, then barrier N after everything emitted so far."""
        if not self.is_spout:
            return
        if self.end_sent or self.finishing:  # a finished source takes the final one instead
            self.snapshots.record(checkpoint_id, {"finished": True})
        elif self.aligner.spout_barrier(checkpoint_id):
            self._aligned(checkpoint_id, where, 0.0)

    def _aligned(self, checkpoint_id: int, where: str, align_seconds: float) -> None:
        """Snapshot, then barrier N downstream (a bolt: once barrier N came on every input)."""
        self.collector.flush_all()
        self.snapshots.take(checkpoint_id, where, align_seconds)
        self.collector.broadcast(BARRIER, (checkpoint_id, where))

    def _abandoned(self, checkpoint_id: int) -> None:
        self.snapshots.record(checkpoint_id, None)

    def abort_checkpoint(self, checkpoint_id: int) -> None:
        """The coordinator gave checkpoint N up: stop holding inputs for it; its waiters learn."""
        if self.aligner.abort(checkpoint_id):
            self.wake()
        self.snapshots.give_up(checkpoint_id)

    def resume(self) -> None:
        """Take input (and call next_tuple) again after a reset."""
        self.paused = False

    def set_active(self, want: bool) -> None:
        """A spout's activate()/deactivate(); deactivated, it calls no next_tuple."""
        if self.is_spout and want != self.active:
            self.active = want
            obj = self.user.obj
            hook = obj.activate if want else obj.deactivate  # type: ignore[union-attr]
            self.report.call_user(hook, "activate" if want else "deactivate")

    # ================================================================ the loop
    async def run(self) -> dict[str, Any]:
        """Open the user object, run until the end, close it; returns :meth:`stats`."""
        self.loop = asyncio.get_running_loop()
        self.state = "opening"
        try:
            self.user.open()
        except BaseException:  # leaves as it is (a TaskError names the user's call), answered
            self.state = "failed"
            self.commands.answer_pending()
            raise
        try:
            if self.exactly_once and self.is_spout and not rewindable(type(self.user.obj)):
                raise TaskError(*self.key, unrewindable(self.key[0], self.component.class_ref.path))
            if self.snapshots.restore_from is not None:
                self.snapshots.restore(*self.snapshots.restore_from)
            self.state = "running"
            while True:
                if self.is_spout:
                    await self._run_spout()
                else:
                    await self._run_bolt()
                reset = self.commands.take_reset()
                if reset is None:
                    break
                try:
                    self._reset_in_place(reset.generation, reset.plan, reset.states)
                except BaseException as exc:
                    if reset.done is not None:
                        reset.done.set_exception(exc)
                    raise
                if reset.done is not None:
                    reset.done.set_result("reset")
        except TaskError:
            self.state = "failed"
            self.commands.answer_pending()
            raise
        except Exception as exc:
            self.state = "failed"
            self.commands.answer_pending()
            raise TaskError(
                self.key[0], self.key[1], f"{type(exc).__name__}: {exc}", traceback.format_exc()
            ) from exc
        finally:
            self.user.close_state(ended=True)  # its final snapshot, if any, was taken
        self.state = "finished"
        stats = self.stats()
        collected = getattr(self.user.obj, "collected_rows", None)
        stats["collected"] = collected() if callable(collected) else None
        return stats

    async def _sleep(self, timeout: float | None = None) -> None:
        """Wait until a delivery, a credit, a command or ``timeout`` wakes the loop."""
        assert self._loop is not None
        fut = self._loop.create_future()
        self._waiter = fut
        handle = self._loop.call_later(timeout, _wake, fut) if timeout is not None else None
        try:
            await fut
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()

    async def _wait_writable(self) -> None:
        start = time.perf_counter()
        downstream = self.downstream
        while downstream.blocked and not self.commands.queue and downstream.fatal is None:
            await self._sleep()
        self.report.blocked_seconds += time.perf_counter() - start

    # ---------------------------------------------------------------- spouts
    async def _run_spout(self) -> None:
        spout = self.user.obj
        assert isinstance(spout, Spout)
        c = self.collector
        report, event_time, snapshots = self.report, self.event_time, self.snapshots
        commands, downstream = self.commands, self.downstream
        queue = commands.queue
        next_tuple = spout.next_tuple
        linger = self.settings.batch_linger
        budget = self.settings.batch_size
        last_flush = time.monotonic()
        event_time.start_spout(last_flush)
        while not commands.leaving:
            if queue:
                commands.handle()
                continue
            downstream.check()
            if self.finishing or snapshots.finished_on_restore:
                break
            if not self.active or self.paused:
                c.flush_all()
                await self._sleep()
                continue
            if downstream.blocked:
                await self._wait_writable()
                continue
            acking = self.user.acking
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
                    report.user_error("next_tuple", exc)
                    break
                if (
                    c.spout_emits == before
                    or self.finishing
                    or downstream.blocked
                    or (acking is not None and acking.full)
                ):
                    break
            if c.acks_due:
                report.ack_unreliable()
            if acking is not None and acking.fresh:  # a spout's acks: its new roots' edges
                acking.flush_acks()
            now = time.monotonic()
            event_time.after_spout_round(now, c.spout_emits != started)
            idle = c.spout_emits == started
            if idle or now - last_flush >= linger:
                c.flush_all()  # idle: nothing else is coming now, so nothing waits for more
                last_flush = now
            # Nothing emitted: back off 1 ms (Storm's wait strategy).
            await asyncio.sleep(_IDLE_SPOUT_SLEEP if idle else 0)
        if commands.reset is None:
            await self._end_of_stream(spout.close)

    # ----------------------------------------------------------------- bolts
    async def _run_bolt(self) -> None:
        bolt = self.user.obj
        assert isinstance(bolt, Bolt)
        user = self.user
        user.choose_executor()
        c = self.collector
        inputs, report, event_time = self.inputs, self.report, self.event_time
        inbox, holding, aligner = inputs.inbox, self.aligner.holding, self.aligner
        commands, downstream = self.commands, self.downstream
        queue = commands.queue
        histogram = report.execute_histogram
        linger = self.settings.batch_linger
        last_flush = time.monotonic()
        next_sweep = last_flush + STATE_SWEEP_INTERVAL
        timers, watermarks = event_time.timers, event_time.watermarks
        event_time.start_ticks()
        while not commands.leaving:
            if queue:
                commands.handle()
                continue
            downstream.check()
            if downstream.blocked:
                await self._wait_writable()
                continue
            if self.paused:
                await self._sleep()
                continue
            upcoming = timers.next_processing_time()
            if upcoming is not None and self.clock() >= upcoming:
                event_time.fire_processing_timers()
                continue
            if not inbox:
                if inputs.open == 0:
                    break
                c.flush_all()  # idle: partial batches go now (under load it seldom is)
                collect_while_idle()
                last_flush, remaining = time.monotonic(), None
                if upcoming is not None:
                    until_timer = max(0.0, (upcoming - self.clock()) / 1000)
                    remaining = until_timer if remaining is None else min(remaining, until_timer)
                if not downstream.blocked:
                    await self._sleep(remaining)
                continue
            message = inbox.popleft()
            channel, kind, stream, rows, meta, credit = message
            if holding and aligner.hold(message):
                continue  # aligning: its credit stays taken
            if not credit.done():  # type: ignore[union-attr]
                credit.set_result(None)  # type: ignore[union-attr]  # the credit goes back
            if kind == DATA:
                if watermarks.idle:
                    event_time.on_data(channel)
                source = channel.sources.get(stream) or self._source(channel, stream)
                start = time.perf_counter()
                pending = user.execute(rows, source, meta)  # type: ignore[misc]  # re-read: state swaps it
                if pending is not None:  # a batch that awaits (map_async): nothing overtakes it
                    await pending
                took, n = time.perf_counter() - start, len(rows)
                report.exec_seconds += took
                if n:
                    histogram.observe(took / n, n)
                report.executed += n
            elif kind == WATERMARK:
                event_time.on_watermark(channel, rows)
            elif kind == BARRIER:
                aligner.on_barrier(channel, rows)
            elif kind == END:
                inputs.end(channel)
                event_time.on_end(channel)
                aligner.check()
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
            if now >= next_sweep:  # not with the flush: an idle inbox flushes (and resets it)
                user.sweep_state()
                next_sweep = now + STATE_SWEEP_INTERVAL
            await asyncio.sleep(0)  # let deliveries and credit returns in
        if commands.reset is None:
            await self._end_of_stream(bolt.cleanup)

    def _source(self, channel: Any, stream: str) -> Any:
        fields = self.spec.component(channel.component).outputs.get(stream, ())
        return self.inputs.source(channel, stream, fields)

    # ------------------------------------------------------------- the end
    async def _end_of_stream(self, closer: Callable[[], None]) -> None:
        """Run the user's cleanup/close, send end-of-stream everywhere, wait until delivered."""
        report, snapshots, commands = self.report, self.snapshots, self.commands
        downstream = self.downstream
        if commands.stopping:
            self._release_inputs()
            self.collector.discard_all()
            report.call_user(closer, closer.__name__)
            self.commands.answer_pending()
            return
        # A bolt restored from a final checkpoint ran its cleanup before: not again.
        again = snapshots.finished_on_restore and not self.is_spout
        if not self.is_spout and not again:  # the end of the input is the end of time
            self.event_time.fire_all()
        if not again:
            report.call_user(closer, closer.__name__)
        acking = self.user.acking
        if acking is not None:
            acking.flush_acks()
        if self.exactly_once:
            # The coordinator says where the final snapshot goes.
            self.waits_for = "the coordinator to name its final snapshot's folder"
            await self._commands_until(lambda: snapshots.final_where is not UNTOLD)
            if commands.reset is not None:
                return
            snapshots.take_final()
        if self.is_spout:  # a bounded source that ends takes event time to the end
            self.event_time.emit_watermark(MAX_TIME)
        self.collector.broadcast(END)
        self.end_sent = True
        self.waits_for = "downstream to take its last batches"
        while not downstream.idle:
            downstream.check()
            if commands.queue:
                commands.handle()
            if commands.reset is not None:
                return
            if commands.stopping:  # told to stop while downstream still drains: stop now
                self._release_inputs()
                break
            await asyncio.sleep(0.002)
        if self.exactly_once:
            # Done, but a sink commits its last output only once every task's final snapshot is
            # written: until then a failure elsewhere replays from the last checkpoint.
            self.waits_for = "the final checkpoint (every task's final snapshot)"
            await self._commands_until(lambda: snapshots.final_committed)
            if commands.reset is not None:
                return
        self.commands.answer_pending()

    async def _commands_until(self, done: Callable[[], bool]) -> None:
        """Only handle commands until ``done()`` (or a stop or a reset)."""
        commands, downstream = self.commands, self.downstream
        queue = commands.queue
        while not done() and not commands.leaving:
            downstream.check()
            if queue:
                commands.handle()
                continue
            await self._sleep()

    # ------------------------------------------------------------ recovery
    def _release_inputs(self) -> None:
        """Give back the credits of everything still queued, so senders are not left waiting."""
        self.inputs.release(self.aligner.take_held())

    def _reset_in_place(
        self,
        generation: int,
        plan: dict[str, Any] | None,
        states: list[dict[str, Any]] | None = None,
    ) -> None:
        """Go back to a checkpoint in place: drop everything in flight, a fresh user object
        restored from ``plan`` (or from nothing), inputs and outputs of a new generation. The
        task stays paused until ``resume``."""
        self._release_inputs()
        self.aligner.reset()
        self.snapshots.reset()
        self.collector.discard_all()
        self.downstream.reset()
        self.generation = generation
        self.inputs.reset(generation)
        self.event_time.reset()  # the rewound source sets event time again as it replays
        self.end_sent = self.finishing = False
        self.waits_for = None
        old = self.user.obj
        if self.is_spout and old is not None:
            self.report.call_user(old.close, "close")  # type: ignore[union-attr]
        self.user.open()
        if plan is not None:
            self.snapshots.restore(plan, states)
        self.paused = True
        log.warning(
            "task %s: reset to %s (generation %d)",
            self.name,
            f"checkpoint {plan.get('checkpoint')}" if plan else "the start",
            generation,
        )
