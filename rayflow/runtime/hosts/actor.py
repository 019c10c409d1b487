"""``TaskActor``: the thin Ray shell around the :class:`TaskCore` of one task, or of every task
of a chain (:mod:`rayflow.runtime.chaining`).

Every method that concerns one task takes its key first: the actor hosts several when a chain
formed, each a :class:`HostedTask` with its own core, data server and outgoing channels. A
chained task's input comes from a task in the same actor by a direct call (:func:`in_process`),
not a socket; everything else is as for a task alone.

Data deliveries (``push``) and the task loops (``run``) share the actor's default event loop;
``stats`` and ``control`` run in their own concurrency group (Ray gives it its own thread and
loop), so they answer even while deliveries are parked waiting for the loop to dequeue them;
``checkpoint_result``, which waits until a task has checkpoint N, shares that group, whose slots
are many more than the waits a chain can hold, so they never take the slots commands need.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import logging
import os
from typing import Any

import ray

from rayflow.runtime.io.codec import copy_rows
from rayflow.runtime.io.handshake import HandshakeError
from rayflow.runtime.io.messages import DATA, FEEDBACK, Transmit
from rayflow.runtime.io.sockets import DataServer, SocketChannel
from rayflow.runtime.io.tls import TlsFiles
from rayflow.runtime.task import garbage
from rayflow.runtime.task.core import TaskCore, TaskKey
from rayflow.spec.model import TopologySpec

LOG_CHUNK = 1 << 20
RAY_MARKERS = (":actor_name:", ":job_id:", ":task_name:")  # Ray's own lines in worker logs


def _ignore(_error: BaseException | None) -> None:
    """Feedback is fire and forget: a lost one times its trees out, which replay."""


def in_process(target: HostedTask, source: HostedTask, copy: bool) -> Transmit:
    """A chained task's channel: a direct call into ``target``'s inputs in this process.

    What a task emitted reaches the next as a copy (a pickled round trip, as across a process),
    so a member never sees what its successor does to the values, unless ``copy`` is off
    (``tuple.reuse``, where the user promised not to keep or change them).
    """

    def transmit(seq: int, kind: int, stream: str, rows: Any, meta: Any, *, on_done: Any) -> None:
        if copy and kind == DATA:
            rows = copy_rows(rows)
        # Looked up now: the members of a chain are connected in any order.
        core, sender = target.core, source.core
        fut = core.deliver(source.key, sender.generation, seq, kind, stream, rows, meta)  # type: ignore[union-attr]
        if fut is None:
            core.loop.call_soon(on_done, None)  # type: ignore[union-attr]
        else:
            fut.add_done_callback(lambda _fut: on_done(None))

    return transmit


class HostedTask:
    """One task in a :class:`TaskActor`: its core, its data server, its outgoing channels."""

    def __init__(self, key: TaskKey, generation: int, server: DataServer | None) -> None:
        self.key = key
        self.generation = generation
        self.core: TaskCore | None = None
        self.server = server
        self.address: tuple[str, int] | None = None
        self.handles: dict[TaskKey, Any] = {}
        self.addresses: dict[TaskKey, tuple[str, int] | None] = {}
        self.sockets: dict[TaskKey, SocketChannel] = {}
        self.spouts: dict[TaskKey, Any] = {}  # an acker's spout tasks
        self.feedback: dict[TaskKey, SocketChannel] = {}  # ... and its channels to them
        self.ended: asyncio.Future | None = None

    def outcome(self) -> asyncio.Future:
        if self.ended is None:
            self.ended = asyncio.get_running_loop().create_future()
        return self.ended

    def running_core(self) -> TaskCore:
        core = self.core
        assert core is not None and core.loop is not None, "connect() must come first"
        return core


# One concurrency group besides the default, never two: Ray (2.x) starts each group's event loop
# in a thread whose target is a lambda over the loop variable, so with two groups the first
# group's thread may run the second's loop ("This event loop is already running") and every call
# of the first group then waits for ever (seen in CI: a command that never came). "control" holds
# the commands and the calls that wait long on a task (a checkpoint's record, two per hosted task
# at most), with slots enough for both.
@ray.remote(concurrency_groups={"control": 1000})
class TaskActor:
    """The tasks of one chain (often one task) in a Ray actor (see module docstring)."""

    def __init__(
        self,
        spec: TopologySpec,
        members: list[TaskKey],
        generation: int = 0,
        secret: bytes = b"",
    ) -> None:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        self.spec = spec
        self.members = members
        self.transport = spec.settings.channel_transport
        settings = spec.settings
        self.tls = TlsFiles.from_settings(
            settings.channel_tls,
            os.environ,  # this node's: Ray's TLS variables are set per node
            settings.channel_tls_cert,
            settings.channel_tls_key,
            settings.channel_tls_ca,
        )
        self.secret = secret
        self.tasks: dict[TaskKey, HostedTask] = {
            key: HostedTask(
                key,
                generation,
                DataServer(secret, deliver=None, tls=self.tls)
                if self.transport == "socket"
                else None,
            )
            for key in members
        }
        self.gc_tuned = False

    def __repr__(self) -> str:  # Ray prefixes the actor's log lines with this
        names = "+".join(f"{c}[{i}]" for c, i in self.members)
        return f"{self.spec.name}:{names}"

    async def prepare(self, key: TaskKey) -> dict[str, Any]:
        """Answers once the actor is up: its Ray node and, for socket channels, where ``key``
        listens."""
        task = self.tasks[key]
        if task.server is not None and task.address is None:
            task.address = await task.server.start(ray.util.get_node_ip_address())
        return await self.where(key)

    @ray.method(concurrency_group="control")
    async def where(self, key: TaskKey) -> dict[str, Any]:
        """This actor's Ray node and the address ``key``'s data server listens on (None: Ray
        calls)."""
        task = self.tasks[key]
        return {"node": ray.get_runtime_context().get_node_id(), "address": task.address}

    async def connect(
        self,
        key: TaskKey,
        targets: dict[TaskKey, tuple[Any, tuple[str, int] | None]],
        local_tasks: list[TaskKey],
        spouts: dict[TaskKey, tuple[Any, tuple[str, int] | None]] | None = None,
    ) -> None:
        """Wire ``key``'s outputs to its downstream tasks: ``targets[key] = (actor, data
        address)``; ``local_tasks`` are the tasks on this actor's node; an acker's ``spouts``
        (actor, data address) get its completed trees."""
        task = self.tasks[key]
        task.handles = {target: handle for target, (handle, _address) in targets.items()}
        task.addresses = {target: address for target, (_handle, address) in targets.items()}
        if self.transport == "socket":
            remote = {t: a for t, (_h, a) in targets.items() if t not in self.tasks}
            channels = {target: SocketChannel(target) for target in remote}
            opened = await asyncio.gather(
                *(
                    channels[target].open(
                        address,  # type: ignore[arg-type]
                        self.secret,
                        task.key,
                        task.generation,
                        self.tls,
                    )
                    for target, address in remote.items()
                ),
                return_exceptions=True,
            )
            for target, outcome in zip(remote, opened, strict=True):
                if isinstance(outcome, BaseException):
                    if task.generation == 0:
                        raise outcome  # at the start every task must be reachable
                    # Restarted while that neighbour is down too: its own restart rewires us.
                    channels[target].error = ConnectionError(f"{target} unreachable: {outcome}")
            task.sockets = channels
        feedback = None
        if spouts:  # an acker: completed trees go to the spout tasks, batched, fire and forget
            task.spouts = {spout: handle for spout, (handle, _address) in spouts.items()}
            for spout, (_handle, address) in spouts.items():
                await self._open_feedback(task, spout, address)

            def feedback(spout: TaskKey, items: tuple) -> None:
                self._feedback(task, spout, items)

        task.core = core = TaskCore(
            self.spec,
            task.key[0],
            task.key[1],
            lambda target: self._transmit(task, target),
            task.generation,
            local_tasks,
            feedback=feedback,
            supervised=True,
        )
        core.loop = asyncio.get_running_loop()
        if task.server is not None:
            task.server.deliver = core.deliver
            task.server.on_feedback = core.receive_acks
            task.server.ready.set()

    def _transmit(self, task: HostedTask, target: TaskKey) -> Transmit:
        """How ``task`` sends to ``target``: in process within the chain, else by socket or
        Ray call."""
        chained = self.tasks.get(target)
        if chained is not None:
            return in_process(chained, task, copy=not self.spec.settings.tuple_reuse)
        if self.transport == "socket":
            return task.sockets[target].transmit
        return self._connect_ray(task, target)

    def _connect_ray(self, task: HostedTask, target: TaskKey) -> Transmit:
        push = task.handles[target].push.remote

        def transmit(
            seq: int, kind: int, stream: str, rows: Any, meta: Any, *, on_done: Any
        ) -> None:
            ref = push(target, task.key, task.generation, seq, kind, stream, rows, meta)
            loop = task.core.loop  # type: ignore[union-attr]

            def returned(fut: concurrent.futures.Future) -> None:
                loop.call_soon_threadsafe(on_done, fut.exception())

            ref.future().add_done_callback(returned)

        return transmit

    async def push(
        self,
        target: TaskKey,
        source: TaskKey,
        generation: int,
        seq: int,
        kind: int,
        stream: str,
        rows: Any,
        meta: Any,
    ) -> None:
        """One message for ``target`` from an upstream task; returns once the loop has dequeued
        it."""
        core = self.tasks[target].core
        fut = core.deliver(source, generation, seq, kind, stream, rows, meta)  # type: ignore[union-attr]
        if fut is not None:
            await fut

    async def run(self, key: TaskKey) -> dict[str, Any]:
        """Run ``key`` to its end; raises ``TaskError`` with the user's traceback on failure."""
        task = self.tasks[key]
        assert task.core is not None, "connect() must be called before run()"
        if not self.gc_tuned:
            garbage.tune()
            self.gc_tuned = True
        ended = task.outcome()
        try:
            result = await task.core.run()
        except BaseException as exc:
            ended.set_exception(exc)
            raise
        else:
            result["pid"] = os.getpid()  # the process: a chain's tasks share one
            ended.set_result(result)
            return result
        finally:
            for channel in [*task.sockets.values(), *task.feedback.values()]:
                channel.close()

    async def outcome(self, key: TaskKey) -> dict[str, Any]:
        """What ``run`` returns (or raises), for a caller that did not start it: a job master
        that restarted finds its running tasks again and waits on this instead."""
        return await asyncio.shield(self.tasks[key].outcome())

    @ray.method(concurrency_group="control")
    async def read_log(
        self, offsets: dict[str, int] | None = None, tail: int = 0
    ) -> dict[str, Any]:
        """This actor's log lines (what its tasks printed to stdout and logged to stderr), read
        from Ray's worker log files on its node. Pass the returned ``offsets`` back to follow;
        without an offset for a stream, ``tail`` > 0 starts that many bytes before its end (at
        a line's start)."""
        worker = ray.get_runtime_context().get_worker_id()
        folder = ray._private.worker.global_worker.node.get_logs_dir_path()
        # Read in a thread: the control group's one loop also serves every command.
        return await asyncio.to_thread(_read_log, folder, worker, dict(offsets or {}), tail)

    @ray.method(concurrency_group="control")
    async def stats(self, key: TaskKey) -> dict[str, Any]:
        core = self.tasks[key].core  # type: ignore[index]
        stats = core.stats() if core is not None else {"state": "created"}
        return {**stats, "pid": os.getpid()}

    @ray.method(concurrency_group="control")
    async def rewire_spout(
        self, key: TaskKey, spout: TaskKey, handle: Any, address: tuple[str, int] | None = None
    ) -> None:
        """An acker ``key``: the spout task ``spout`` was restarted as ``handle`` (listening on
        ``address``); its completed trees go there from now on."""
        task = self.tasks[key]
        task.spouts[spout] = handle
        core = task.running_core()
        done = asyncio.run_coroutine_threadsafe(
            self._open_feedback(task, spout, address),
            core.loop,  # type: ignore[arg-type]
        )
        await asyncio.wrap_future(done)

    async def _open_feedback(
        self, task: HostedTask, spout: TaskKey, address: tuple[str, int] | None
    ) -> None:
        """An acker's way to a spout task's loop: its data server, by a FEEDBACK frame (a Ray
        call per feedback cost about a millisecond of CPU, and an acker sends one every few
        ms); a spout in this actor gets a direct call. Without either, a Ray call."""
        old = task.feedback.pop(spout, None)
        if old is not None:
            old.close()
        if spout in self.tasks or self.transport != "socket" or address is None:
            return
        channel = SocketChannel(spout)
        try:
            await channel.open(address, self.secret, task.key, task.generation, self.tls)
        except (OSError, HandshakeError) as exc:  # restarted meanwhile: rewire_spout comes
            logging.getLogger("rayflow.task").warning(
                "%r: no feedback channel to %s[%s] (%s): using Ray calls", self, *spout, exc
            )
            return
        task.feedback[spout] = channel

    def _feedback(self, task: HostedTask, spout: TaskKey, items: tuple) -> None:
        local = self.tasks.get(spout)
        if local is not None and local.core is not None:
            local.core.receive_acks(items)
            return
        channel = task.feedback.get(spout)
        if channel is not None and channel.error is None:
            channel.transmit(0, FEEDBACK, "", items, None, on_done=_ignore)
            return
        task.spouts[spout].receive_acks.remote(spout, items)

    @ray.method(concurrency_group="control")
    async def reconnect(
        self, key: TaskKey, target: TaskKey, handle: Any, address: tuple[str, int] | None
    ) -> None:
        """``target`` was restarted as ``handle`` (listening on ``address``): ``key`` sends
        there now."""
        task = self.tasks[key]
        core = task.running_core()
        done = asyncio.run_coroutine_threadsafe(
            self._reconnect(task, target, handle, address),
            core.loop,  # type: ignore[arg-type]
        )
        await asyncio.wrap_future(done)

    async def _reconnect(
        self, task: HostedTask, target: TaskKey, handle: Any, address: tuple[str, int] | None
    ) -> None:
        task.handles[target] = handle
        task.addresses[target] = address
        if self.transport == "socket" and target not in self.tasks:
            channel = SocketChannel(target)
            await channel.open(address, self.secret, task.key, task.generation, self.tls)  # type: ignore[arg-type]
            old = task.sockets.get(target)
            task.sockets[target] = channel
            if old is not None:
                old.close()
        task.core.reconnect_output(target, self._transmit(task, target))  # type: ignore[union-attr]

    @ray.method(concurrency_group="control")
    async def receive_acks(self, key: TaskKey, items: list) -> None:
        """Completed trees from an acker (at-least-once), handed to ``key``'s loop."""
        core = self.tasks[key].running_core()  # type: ignore[index]
        core.loop.call_soon_threadsafe(core.receive_acks, items)  # type: ignore[union-attr]

    def restore(self, key: TaskKey, plan: dict[str, Any]) -> None:
        """Start ``key`` from a checkpoint (call after ``connect``, before ``run``): see
        :meth:`rayflow.runtime.task.snapshots.Snapshots.restore` for ``plan``."""
        core = self.tasks[key].core  # type: ignore[index]
        assert core is not None, "connect() must be called before restore()"
        core.restore_from = (plan, core.read_plan(plan))  # a bad file fails here

    @ray.method(concurrency_group="control")
    async def reset(
        self,
        key: TaskKey,
        generation: int,
        plan: dict[str, Any] | None,
        moved: dict[TaskKey, tuple[Any, tuple[str, int] | None]],
    ) -> str:
        """Exactly-once recovery in place: ``key`` back to ``plan``'s checkpoint as
        ``generation``, sending to the recreated tasks in ``moved`` (key -> (actor, data
        address)); the task stays paused until ``control("resume")``. Answers "reset", or the
        state of a task whose loop has ended (the caller recreates that one)."""
        task = self.tasks[key]
        core = task.running_core()
        # Read (and check) the checkpoint first: a bad file fails this call, not the task.
        states = None if plan is None else await asyncio.to_thread(core.read_plan, plan)
        answer = await self.control(key, "reset", (generation, plan, states))
        if answer != "reset":
            return answer
        task.generation = generation
        targets = {t: (task.handles[t], task.addresses.get(t)) for t in core.outputs}
        targets.update(moved)
        for target, (handle, address) in targets.items():
            done = asyncio.run_coroutine_threadsafe(
                self._reconnect(task, target, handle, address),
                core.loop,  # type: ignore[arg-type]
            )
            try:
                await asyncio.wrap_future(done)
            except OSError as exc:  # died meanwhile: the next recovery wires its replacement
                logging.getLogger("rayflow.task").warning(
                    "%r: could not reach %s[%s] after a reset: %s", self, *target, exc
                )
        return answer

    @ray.method(concurrency_group="control")
    async def checkpoint_result(self, key: TaskKey, checkpoint_id: int) -> dict[str, Any] | None:
        """``key``'s record of checkpoint N once it has one (see TaskCore)."""
        core = self.tasks[key].running_core()  # type: ignore[index]
        done = asyncio.run_coroutine_threadsafe(core.checkpoint_result(checkpoint_id), core.loop)  # type: ignore[arg-type]
        return await asyncio.wrap_future(done)

    @ray.method(concurrency_group="control")
    async def control(self, key: TaskKey, name: str, arg: Any = None) -> Any:
        """Queue a command (finish, stop, activate, deactivate, ...) for ``key``'s loop."""
        core = self.tasks[key].running_core()  # type: ignore[index]
        done: concurrent.futures.Future = concurrent.futures.Future()
        core.loop.call_soon_threadsafe(core.submit_control, name, arg, done)  # type: ignore[union-attr]
        return await asyncio.wrap_future(done)


def _read_log(folder: str, worker: str, offsets: dict[str, int], tail: int) -> dict[str, Any]:
    """TaskActor.read_log's reading, off the actor's loop."""
    text = []
    for stream in ("out", "err"):
        for path in glob.glob(os.path.join(folder, f"worker-{worker}-*.{stream}")):
            with open(path, "rb") as f:
                start = offsets.get(stream)
                if start is None:
                    start = max(0, os.fstat(f.fileno()).st_size - tail) if tail > 0 else 0
                f.seek(start)
                data = f.read(LOG_CHUNK)
                if stream not in offsets and start > 0:  # begin at a whole line
                    cut = data.find(b"\n") + 1
                    data, start = data[cut:], start + cut
            offsets[stream] = start + len(data)
            lines = data.decode("utf-8", "replace").splitlines(keepends=True)
            text.extend(line for line in lines if not line.startswith(RAY_MARKERS))
    return {"text": "".join(text), "offsets": offsets}
