"""The task core without Ray: ordering, duplicates, credits, backpressure, user errors."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from rayflow import TaskError, Topology, testing
from rayflow.runtime.io.channels import OutputChannel
from rayflow.runtime.io.messages import DATA, END
from rayflow.runtime.task.core import TaskCore
from rayflow.runtime.task.snapshots import FINAL
from rayflow.testing import ListSink, TestingSpout
from tests.helpers import BrokenPrepare, EndlessSpout, FailingBolt, SlowBolt


def _sink_core(epoch: int = 0) -> TaskCore:
    t = Topology("t")
    t.spout("src", TestingSpout, args=([],))
    t.bolt("sink", ListSink).shuffle("src")
    return TaskCore(t.build(), "sink", 0, connect=lambda target: None, generation=epoch)  # type: ignore


def test_output_channel_queues_without_credit_and_drains_in_order() -> None:
    sent: list[tuple[int, Any]] = []
    events: list[str] = []
    channel = OutputChannel(
        ("sink", 0),
        2,
        lambda seq, kind, stream, rows, meta, on_done: sent.append((seq, on_done)),
        on_writable=lambda ch: events.append("writable"),
        on_blocked=lambda ch: events.append("blocked"),
    )
    for i in range(5):
        channel.send(DATA, "default", [[i]], None)
    assert [seq for seq, _ in sent] == [0, 1]
    assert len(channel.pending) == 3 and events == ["blocked"]
    sent[0][1](None)
    sent[1][1](None)
    assert [seq for seq, _ in sent] == [0, 1, 2, 3]
    sent[2][1](None)
    assert [seq for seq, _ in sent] == [0, 1, 2, 3, 4]
    assert events == ["blocked", "writable"] and channel.writable
    assert not channel.idle  # 3 and 4 are still in flight
    sent[3][1](None)
    sent[4][1](None)
    assert channel.idle


def test_core_releases_messages_in_sequence_and_drops_duplicates() -> None:
    async def scenario() -> None:
        core = _sink_core()
        src = ("src", 0)
        f2 = core.deliver(src, 0, 2, DATA, "default", [["c"]], None)
        f0 = core.deliver(src, 0, 0, DATA, "default", [["a"]], None)
        assert [item[3] for item in core.inbox] == [[["a"]]]  # 2 waits for 1
        f1 = core.deliver(src, 0, 1, DATA, "default", [["b"]], None)
        assert core.deliver(src, 0, 1, DATA, "default", [["b"]], None) is None  # duplicate
        assert core.deliver(src, 0, 0, DATA, "default", [["a"]], None) is None  # duplicate
        assert [item[3][0][0] for item in core.inbox] == ["a", "b", "c"]
        assert core.duplicates == 2
        assert f0 is not None and f1 is not None and f2 is not None
        assert not f0.done(), "a credit returns when the batch is dequeued, not on arrival"
        core.deliver(src, 0, 3, END, "", None, None)
        stats = await core.run()
        assert f0.done() and f1.done() and f2.done()
        assert stats["collected"] == [("a",), ("b",), ("c",)]

    asyncio.run(scenario())


def test_a_restarted_sender_starts_a_new_channel_generation() -> None:
    async def scenario() -> None:
        core = _sink_core()
        src = ("src", 0)
        assert core.deliver(src, 0, 0, DATA, "default", [["gen0"]], None) is not None
        # The sender was restarted (generation 2): its sequence starts again at 0.
        assert core.deliver(src, 2, 0, DATA, "default", [["gen2"]], None) is not None
        assert core.deliver(src, 1, 1, DATA, "default", [["stale"]], None) is None
        assert [item[3][0][0] for item in core.inbox] == ["gen0", "gen2"]

    asyncio.run(scenario())


def test_a_slow_bolt_throttles_the_spout_and_bounds_buffers() -> None:
    delay, batch, credits = 0.002, 10, 2
    t = Topology("slow", config={"batch.size": batch, "channel.credits": credits})
    t.spout("numbers", EndlessSpout)
    t.bolt("slow", SlowBolt, kwargs={"delay": delay}).shuffle("numbers")
    t.bolt("sink", ListSink).shuffle("slow")
    result = testing.run(t, duration=1.0)
    emitted = result.counter("numbers", "emitted")
    slow = result.tasks["slow"][0]
    # The slow bolt cannot take more than seconds/delay tuples; the spout may be ahead of it by
    # at most the in-flight credits plus one partly filled batch.
    assert emitted <= result.seconds / delay + (credits + 1) * batch
    assert slow["inbox_peak"] <= credits
    assert sorted(result.outputs["sink"]) == [(n,) for n in range(int(emitted))], "nothing lost"


def test_a_raising_process_fails_that_tuple_and_the_task_goes_on() -> None:
    t = Topology("failing")
    t.spout("numbers", TestingSpout, args=(list(range(100)),))
    t.bolt("maybe", FailingBolt, kwargs={"every": 10}).shuffle("numbers")
    t.bolt("sink", ListSink).shuffle("maybe")
    result = testing.run(t)
    assert sorted(result.outputs["sink"]) == [(n,) for n in range(100) if n % 10]
    assert result.counter("maybe", "failed") == 10
    errors = result.tasks["maybe"][0]["errors"]
    assert errors and "ValueError: bad tuple" in errors[-1]["error"]
    assert "raise ValueError" in errors[-1]["traceback"]
    assert errors[-1]["where"].endswith("FailingBolt.process")


def test_a_raising_prepare_stops_the_run_with_the_users_traceback() -> None:
    t = Topology("broken")
    t.spout("numbers", TestingSpout, args=([1, 2],))
    t.bolt("db", BrokenPrepare).shuffle("numbers")
    with pytest.raises(TaskError) as info:
        testing.run(t)
    assert info.value.component == "db" and info.value.task == 0
    assert "cannot connect to the database" in str(info.value)
    assert "raise RuntimeError" in info.value.traceback_text


def test_emitting_on_an_undeclared_stream_is_reported() -> None:
    from rayflow import Bolt

    class WrongStream(Bolt):
        outputs = ["n"]

        def process(self, tup: Any) -> None:
            self.emit(tup.values, stream="nope")

    t = Topology("undeclared")
    t.spout("numbers", TestingSpout, args=([1],))
    t.bolt("wrong", WrongStream).shuffle("numbers")
    result = testing.run(t)
    error = result.tasks["wrong"][0]["errors"][0]["error"]
    assert "stream 'nope'" in error and "declared: default" in error


def test_without_acking_a_spout_gets_ack_right_after_each_emit() -> None:
    from rayflow import Spout

    class AckEcho(Spout):
        outputs = {"default": ["n"], "acks": ["msg_id"]}

        def open(self, context: Any) -> None:
            self.n = 0

        def next_tuple(self) -> None:
            if self.n == 5:
                self.finish()
                return
            self.emit([self.n], msg_id=f"m{self.n}")
            self.n += 1

        def ack(self, msg_id: Any) -> None:
            self.emit([msg_id], stream="acks")

    t = Topology("acks")
    t.spout("src", AckEcho)
    t.bolt("acked", ListSink).shuffle("src", stream="acks")
    result = testing.run(t)
    assert result.outputs["acked"] == [(f"m{i}",) for i in range(5)]
    assert result.counter("src", "acked") == 5


def test_stop_ends_a_task_still_draining_and_gives_credits_back() -> None:
    from rayflow.runtime.hosts.local import build_cores

    async def scenario() -> None:
        t = Topology("stop", config={"batch.size": 2, "channel.credits": 1})
        t.spout("numbers", TestingSpout, args=(list(range(20)),))
        t.bolt("slow", SlowBolt, kwargs={"delay": 0.05}).shuffle("numbers")
        cores = build_cores(t.build())
        tasks = [asyncio.ensure_future(core.run()) for core in cores.values()]
        await asyncio.sleep(0.2)  # the spout has finished and waits for the slow bolt
        for core in cores.values():
            core.submit_control("stop")
        _done, pending = await asyncio.wait(tasks, timeout=3)
        assert not pending, "every task stopped"
        late: asyncio.Future = asyncio.get_running_loop().create_future()
        cores[("numbers", 0)].submit_control("activate", done=late)
        assert late.done(), "a command after the end is answered at once"

    asyncio.run(scenario())


def test_the_contexts_reliability_is_the_topologys_whatever_a_components_config_says() -> None:
    """Connectors decide on ``context.reliability``: a component's own config cannot turn a
    topology without acking into one that expects acks (``context.config`` still has its key)."""
    from rayflow.spec.settings import Reliability

    t = Topology("t", config={"reliability": "none"})
    t.spout("src", TestingSpout, args=([],), config={"reliability": "at_least_once"})
    t.bolt("sink", ListSink).shuffle("src")
    core = TaskCore(t.build(), "src", 0, connect=lambda target: None)  # type: ignore
    core.user.open()
    context = core.user.obj.context  # type: ignore[union-attr]
    assert context.reliability == Reliability.NONE
    assert context.config["reliability"] == "at_least_once"


def test_a_watermark_field_the_spout_lacks_is_a_topology_error_naming_it() -> None:
    """Binding the spout fails before the task runs: the error is the topology's, as it is."""
    from rayflow.errors import TopologyError

    t = Topology("t")
    t.spout("src", TestingSpout, args=([1],), config={"watermark.timestamp_field": "ts"})
    t.bolt("sink", ListSink).shuffle("src")
    with pytest.raises(TopologyError, match=r"watermark\.timestamp_field 'ts' is not a field"):
        testing.run(t)


def test_an_abort_before_its_barrier_answers_the_waiters_and_the_barrier_holds_nothing() -> None:
    """The coordinator aborts checkpoint 3 before its barrier reaches the task: whoever waits for
    the task's record of 3 gets None at once, and the late barrier holds no input (holding it
    would stall the sender until the end of the stream)."""

    async def scenario() -> None:
        core = _sink_core()
        core.loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(core.checkpoint_result(3))
        await asyncio.sleep(0)
        assert not waiting.done()
        core.abort_checkpoint(3)
        assert await asyncio.wait_for(waiting, 1.0) is None
        core.aligner.on_barrier(core.inputs.channels[("src", 0)], (3, "/chk-3"))
        assert core.aligner.aligning is None and core.aligner.holding == {}
        assert core.aligner.last_barrier == 3 and core.snapshots.results[3] is None

    asyncio.run(scenario())


def test_the_final_record_outlives_the_trimming_of_old_records() -> None:
    """A task keeps the records of its last checkpoints only; the final one (asked for last, by
    a coordinator that may have been busy recovering) is never the one dropped."""
    core = _sink_core()
    core.snapshots.record(FINAL, {"finished": True})
    for n in range(1, 40):
        core.snapshots.record(n, None)
    assert core.snapshots.results[FINAL] == {"finished": True}
    assert min(n for n in core.snapshots.results if n != FINAL) == 40 - 16


def test_the_task_actor_has_one_concurrency_group_besides_the_default() -> None:
    """Ray starts each named group's loop in a thread over the loop variable of a for loop: with
    two groups the first may run the second's loop, and its calls then wait for ever."""
    from rayflow.runtime.hosts.actor import TaskActor

    groups = TaskActor.__ray_metadata__.concurrency_groups  # type: ignore[attr-defined]
    assert list(groups) == ["control"] and groups["control"] >= 100


class StampThenIdle(TestingSpout):
    """Emits three rows stamped with the time they left, then nothing (never finishes)."""

    outputs = ["sent"]

    def next_tuple(self) -> None:
        import time

        if not getattr(self, "stamped", False):
            self.stamped = True
            for _ in range(3):
                self.emit([time.monotonic()])


class Delays(ListSink):
    """Collects how long each row took from the spout."""

    def process(self, tup: Any) -> None:
        import time

        self.rows.append((time.monotonic() - tup[0],))


class PassOn(ListSink):
    outputs = ["sent"]

    def process(self, tup: Any) -> None:
        self.emit(list(tup.values))


def test_an_idle_task_sends_its_partly_filled_batches_without_waiting_for_the_linger() -> None:
    # A linger far beyond the run: only an idle flush (the spout's, then the bolt's in between)
    # gets the rows through while the run lasts.
    t = Topology("quiet", config={"batch.size": 1000, "batch.linger.ms": "1h"})
    t.spout("src", StampThenIdle)
    t.bolt("middle", PassOn).shuffle("src")
    t.bolt("sink", Delays).shuffle("middle")
    result = testing.run(t, duration=3.0)
    delays = [d for (d,) in result.outputs["sink"]]
    assert len(delays) == 3 and max(delays) < 1.0, delays


class Trickle(TestingSpout):
    """``k0`` .. ``k49`` at once, then a ``live`` row every other call for 2.5 s: each round
    of the spout ends idle, so each row goes on its own, a millisecond or two apart."""

    outputs = ["key"]

    def next_tuple(self) -> None:
        import time

        if not hasattr(self, "until"):
            self.until, self.calls = time.monotonic() + 2.5, 0
            self.emit_many([[f"k{i}"] for i in range(50)])
        elif time.monotonic() < self.until:
            self.calls += 1
            if self.calls % 2:
                self.emit(["live"])
        else:
            self.finish()


class ShortLived(ListSink):
    """Keeps each key's last sight in state for 100 ms; reports the entries its store holds."""

    def process(self, tup: Any) -> None:
        self.state.value("seen", ttl=0.1).set(True)

    def collected_rows(self) -> list[tuple[Any, ...]]:
        store = self.__dict__["_rayflow_state"].store
        return [(len(entries),) for _, states in store.grouped(None) for entries in states.values()]


def test_expired_state_is_swept_while_rows_trickle_in_with_idle_gaps() -> None:
    # The inbox empties between rows (each flushes at once, so the linger is never reached:
    # set beyond the run here), and the sweep still runs.
    t = Topology("trickle", config={"batch.size": 1000, "batch.linger.ms": "1h"})
    t.spout("src", Trickle)
    t.bolt("keep", ShortLived).fields("src", "key")
    held = sum(n for (n,) in testing.run(t).outputs["keep"])
    assert held == 1, "only the live key's state is left"


class NothingToRead(TestingSpout):
    """An unbounded source with no data now: ``next_tuple`` returns without emitting."""

    def next_tuple(self) -> None:
        pass


ENTERED, RELEASE = threading.Event(), threading.Event()


class BlocksInNextTuple(TestingSpout):
    """Stuck in user code (a read that never returns) until the test releases it."""

    def next_tuple(self) -> None:
        ENTERED.set()
        RELEASE.wait(10)
        self.finish()


def running_in_a_thread(spout: type) -> tuple[dict, asyncio.AbstractEventLoop, threading.Thread]:
    """spout -> sink, their cores run on a loop in another thread (stats are read from here,
    as the task actor's control thread reads them)."""
    from rayflow.runtime.hosts.local import build_cores

    t = Topology("rounds")
    t.spout("src", spout, args=([],))
    t.bolt("sink", ListSink).shuffle("src")
    cores = build_cores(t.build())
    loop = asyncio.new_event_loop()

    async def run_all() -> None:
        await asyncio.gather(*(core.run() for core in cores.values()))

    thread = threading.Thread(target=loop.run_until_complete, args=(run_all(),), daemon=True)
    thread.start()
    return cores, loop, thread


def test_a_spouts_round_age_tells_a_source_with_nothing_to_read_from_one_stuck() -> None:
    import time

    cores, loop, thread = running_in_a_thread(NothingToRead)
    spout, sink = cores[("src", 0)], cores[("sink", 0)]
    deadline = time.monotonic() + 10
    while spout.state != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    ages = []
    for _ in range(50):  # half a second of its idle rounds (1 ms apart)
        ages.append(spout.stats()["round_age"])
        time.sleep(0.01)
    assert max(ages) < 0.25, ages
    assert sink.stats()["round_age"] is None  # bolts have no rounds
    for core in cores.values():
        loop.call_soon_threadsafe(core.submit_control, "stop")
    thread.join(10)
    assert not thread.is_alive()

    cores, loop, thread = running_in_a_thread(BlocksInNextTuple)
    assert ENTERED.wait(10)
    deadline = time.monotonic() + 10
    while cores[("src", 0)].stats()["round_age"] < 0.5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cores[("src", 0)].stats()["round_age"] >= 0.5  # the watchdog names this one
    RELEASE.set()
    thread.join(10)
    assert not thread.is_alive()
