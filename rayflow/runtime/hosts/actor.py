"""``TaskActor``: the thin Ray shell around a :class:`TaskCore`.

Data deliveries (``push``) and the task loop (``run``) share the actor's default event loop;
``stats`` and ``control`` run in their own concurrency group (Ray gives it its own thread and
loop), so they answer even while deliveries are parked waiting for the loop to dequeue them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import glob
import logging
import os
from typing import Any

import ray

from rayflow.runtime.io.messages import Transmit
from rayflow.runtime.io.sockets import DataServer, SocketChannel
from rayflow.runtime.io.tls import TlsFiles
from rayflow.runtime.task.core import TaskCore, TaskKey
from rayflow.spec.model import TopologySpec

GC_THRESHOLD = 50_000
LOG_CHUNK = 1 << 20
RAY_MARKERS = (":actor_name:", ":job_id:", ":task_name:")  # Ray's own lines in worker logs


def tune_garbage_collector() -> None:
    """Make Python's cycle collector cheap for a data plane.

    Every tuple is a fresh list, and batches keep thousands alive at once, so with the default
    threshold (700 allocations) the collector runs every few hundred tuples and walks the worker's
    whole heap (Ray's included) each time it reaches the older generations: measured here, that
    was most of a task's CPU. Freezing what exists at start and collecting the young generation
    every 50,000 allocations keeps cycles collected at a small fraction of the cost.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


@ray.remote(concurrency_groups={"control": 4})
class TaskActor:
    """One spout or bolt task in a Ray actor (see module docstring)."""

    def __init__(
        self,
        spec: TopologySpec,
        component_id: str,
        task_index: int,
        generation: int = 0,
        secret: bytes = b"",
    ) -> None:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        self.spec = spec
        self.key: TaskKey = (component_id, task_index)
        self.generation = generation
        self.core: TaskCore | None = None
        self.handles: dict[TaskKey, Any] = {}
        self.transport = spec.settings.channel_transport
        settings = spec.settings
        self.tls = TlsFiles.from_settings(
            settings.channel_tls,
            os.environ,  # this node's: Ray's TLS variables are set per node
            settings.channel_tls_cert,
            settings.channel_tls_key,
            settings.channel_tls_ca,
        )
        self.server = (
            DataServer(secret, deliver=None, tls=self.tls) if self.transport == "socket" else None
        )
        self.secret = secret
        self.sockets: dict[TaskKey, SocketChannel] = {}
        self.addresses: dict[TaskKey, tuple[str, int] | None] = {}
        self.ended: asyncio.Future | None = None
        self.address: tuple[str, int] | None = None
        self.spouts: dict[TaskKey, Any] = {}  # an acker's spout tasks

    def __repr__(self) -> str:  # Ray prefixes the actor's log lines with this
        return f"{self.spec.name}:{self.key[0]}[{self.key[1]}]"

    async def prepare(self) -> dict[str, Any]:
        """Answers once the actor is up: its Ray node and, for socket channels, where it listens."""
        if self.server is not None and self.address is None:
            self.address = await self.server.start(ray.util.get_node_ip_address())
        return await self.where()

    @ray.method(concurrency_group="control")
    async def where(self) -> dict[str, Any]:
        """This task's Ray node and the address its data server listens on (None: Ray calls)."""
        return {"node": ray.get_runtime_context().get_node_id(), "address": self.address}

    async def connect(
        self,
        targets: dict[TaskKey, tuple[Any, tuple[str, int] | None]],
        local_tasks: list[TaskKey],
        spouts: dict[TaskKey, Any] | None = None,
    ) -> None:
        """Wire the outputs to the downstream tasks: ``targets[key] = (actor, data address)``;
        ``local_tasks`` are the tasks on this task's node."""
        self.handles = {key: handle for key, (handle, _address) in targets.items()}
        self.addresses = {key: address for key, (_handle, address) in targets.items()}
        if self.transport == "socket":
            channels = {key: SocketChannel(key) for key in targets}
            opened = await asyncio.gather(
                *(
                    channels[key].open(address, self.secret, self.key, self.generation, self.tls)  # type: ignore[arg-type]
                    for key, (_handle, address) in targets.items()
                ),
                return_exceptions=True,
            )
            for key, outcome in zip(targets, opened, strict=True):
                if isinstance(outcome, BaseException):
                    if self.generation == 0:
                        raise outcome  # at the start every task must be reachable
                    # Restarted while that neighbour is down too: its own restart rewires us.
                    channels[key].error = ConnectionError(f"{key} unreachable: {outcome}")
            self.sockets = channels
        connect = self._connect_socket if self.transport == "socket" else self._connect_ray
        feedback = None
        if spouts:  # an acker: completed trees go to the spout tasks, batched, fire and forget
            self.spouts = dict(spouts)  # rewire_spout replaces a restarted one

            def feedback(spout: TaskKey, items: tuple) -> None:
                self.spouts[spout].receive_acks.remote(items)

        self.core = TaskCore(
            self.spec,
            self.key[0],
            self.key[1],
            connect,
            self.generation,
            local_tasks,
            feedback=feedback,
            supervised=True,
        )
        self.core.loop = asyncio.get_running_loop()
        if self.server is not None:
            self.server.deliver = self.core.deliver
            self.server.ready.set()

    def _connect_socket(self, target: TaskKey) -> Transmit:
        return self.sockets[target].transmit

    def _connect_ray(self, target: TaskKey) -> Transmit:
        push = self.handles[target].push.remote
        source, generation = self.key, self.generation

        def transmit(
            seq: int, kind: int, stream: str, rows: Any, meta: Any, *, on_done: Any
        ) -> None:
            ref = push(source, generation, seq, kind, stream, rows, meta)
            loop = self.core.loop  # type: ignore[union-attr]

            def returned(fut: concurrent.futures.Future) -> None:
                loop.call_soon_threadsafe(on_done, fut.exception())

            ref.future().add_done_callback(returned)

        return transmit

    async def push(
        self,
        source: TaskKey,
        generation: int,
        seq: int,
        kind: int,
        stream: str,
        rows: Any,
        meta: Any,
    ) -> None:
        """One message from an upstream task; returns once the loop has dequeued it."""
        fut = self.core.deliver(source, generation, seq, kind, stream, rows, meta)  # type: ignore[union-attr]
        if fut is not None:
            await fut

    async def run(self) -> dict[str, Any]:
        """Run the task to its end; raises ``TaskError`` with the user's traceback on failure."""
        assert self.core is not None, "connect() must be called before run()"
        tune_garbage_collector()
        ended = self._ended()
        try:
            result = await self.core.run()
        except BaseException as exc:
            ended.set_exception(exc)
            raise
        else:
            ended.set_result(result)
            return result
        finally:
            for channel in self.sockets.values():
                channel.close()

    def _ended(self) -> asyncio.Future:
        if self.ended is None:
            self.ended = asyncio.get_running_loop().create_future()
        return self.ended

    async def outcome(self) -> dict[str, Any]:
        """What ``run`` returns (or raises), for a caller that did not start it: a job master
        that restarted finds its running tasks again and waits on this instead."""
        return await asyncio.shield(self._ended())

    @ray.method(concurrency_group="control")
    def read_log(self, offsets: dict[str, int] | None = None) -> dict[str, Any]:
        """This task's own log lines (what it printed to stdout and logged to stderr), read from
        Ray's worker log files on its node. Pass the returned ``offsets`` back to follow."""
        worker = ray.get_runtime_context().get_worker_id()
        folder = ray._private.worker.global_worker.node.get_logs_dir_path()
        offsets = dict(offsets or {})
        text = []
        for stream in ("out", "err"):
            for path in glob.glob(os.path.join(folder, f"worker-{worker}-*.{stream}")):
                with open(path, "rb") as f:
                    f.seek(offsets.get(stream, 0))
                    data = f.read(LOG_CHUNK)
                offsets[stream] = offsets.get(stream, 0) + len(data)
                lines = data.decode("utf-8", "replace").splitlines(keepends=True)
                text.extend(line for line in lines if not line.startswith(RAY_MARKERS))
        return {"text": "".join(text), "offsets": offsets}

    @ray.method(concurrency_group="control")
    async def stats(self) -> dict[str, Any]:
        stats = self.core.stats() if self.core is not None else {"state": "created"}
        return {**stats, "pid": os.getpid()}

    @ray.method(concurrency_group="control")
    def rewire_spout(self, spout: TaskKey, handle: Any) -> None:
        """An acker: the spout task ``spout`` was restarted as ``handle``; its completed trees
        go there from now on."""
        self.spouts[spout] = handle

    @ray.method(concurrency_group="control")
    async def reconnect(
        self, target: TaskKey, handle: Any, address: tuple[str, int] | None
    ) -> None:
        """``target`` was restarted as ``handle`` (listening on ``address``): send there now."""
        core = self.core
        assert core is not None and core.loop is not None
        done = asyncio.run_coroutine_threadsafe(self._reconnect(target, handle, address), core.loop)
        await asyncio.wrap_future(done)

    async def _reconnect(
        self, target: TaskKey, handle: Any, address: tuple[str, int] | None
    ) -> None:
        self.handles[target] = handle
        self.addresses[target] = address
        if self.transport == "socket":
            channel = SocketChannel(target)
            await channel.open(address, self.secret, self.key, self.generation, self.tls)  # type: ignore[arg-type]
            old = self.sockets.get(target)
            self.sockets[target] = channel
            if old is not None:
                old.close()
            transmit = channel.transmit
        else:
            transmit = self._connect_ray(target)
        self.core.reconnect_output(target, transmit)  # type: ignore[union-attr]

    @ray.method(concurrency_group="control")
    async def receive_acks(self, items: list) -> None:
        """Completed trees from an acker (at-least-once), handed to the task loop."""
        core = self.core
        assert core is not None and core.loop is not None
        core.loop.call_soon_threadsafe(core.receive_acks, items)

    def restore(self, plan: dict[str, Any]) -> None:
        """Start from a checkpoint (call after ``connect``, before ``run``): see
        :meth:`rayflow.runtime.task.snapshots.Snapshots.restore` for ``plan``."""
        assert self.core is not None, "connect() must be called before restore()"
        self.core.restore_from = (plan, self.core.read_plan(plan))  # a bad file fails here

    @ray.method(concurrency_group="control")
    async def reset(
        self,
        generation: int,
        plan: dict[str, Any] | None,
        moved: dict[TaskKey, tuple[Any, tuple[str, int] | None]],
    ) -> str:
        """Exactly-once recovery in place: back to ``plan``'s checkpoint as ``generation``,
        sending to the recreated tasks in ``moved`` (key -> (actor, data address)); the task
        stays paused until ``control("resume")``. Answers "reset", or the state of a task whose
        loop has ended (the caller recreates that one)."""
        core = self.core
        assert core is not None
        # Read (and check) the checkpoint first: a bad file fails this call, not the task.
        states = None if plan is None else await asyncio.to_thread(core.read_plan, plan)
        answer = await self.control("reset", (generation, plan, states))
        if answer != "reset":
            return answer
        self.generation = generation
        assert core.loop is not None
        targets = {key: (self.handles[key], self.addresses.get(key)) for key in core.outputs}
        targets.update(moved)
        for target, (handle, address) in targets.items():
            done = asyncio.run_coroutine_threadsafe(
                self._reconnect(target, handle, address), core.loop
            )
            try:
                await asyncio.wrap_future(done)
            except OSError as exc:  # died meanwhile: the next recovery wires its replacement
                logging.getLogger("rayflow.task").warning(
                    "%r: could not reach %s[%s] after a reset: %s", self, *target, exc
                )
        return answer

    @ray.method(concurrency_group="control")
    async def checkpoint_result(self, checkpoint_id: int) -> dict[str, Any] | None:
        """This task's record of checkpoint N once it has one (see TaskCore)."""
        core = self.core
        assert core is not None and core.loop is not None
        done = asyncio.run_coroutine_threadsafe(core.checkpoint_result(checkpoint_id), core.loop)
        return await asyncio.wrap_future(done)

    @ray.method(concurrency_group="control")
    async def control(self, name: str, arg: Any = None) -> Any:
        """Queue a command (finish, stop, activate, deactivate) for the task loop."""
        core = self.core
        assert core is not None and core.loop is not None
        done: concurrent.futures.Future = concurrent.futures.Future()
        core.loop.call_soon_threadsafe(core.submit_control, name, arg, done)
        return await asyncio.wrap_future(done)
