"""The classes users subclass: :class:`Spout` (produces tuples) and :class:`Bolt` (processes them).

The runtime binds ``emit`` and friends on each instance before ``open``/``prepare`` runs, so a
call to ``self.emit`` goes straight to the task's router with no wrapper in between.

>>> class Words(Spout):
...     outputs = ["word"]
...     def open(self, context):
...         self.left = ["a", "b"]
...     def next_tuple(self):
...         if self.left:
...             self.emit([self.left.pop()])
...         else:
...             self.finish()
>>> class Upper(Bolt):
...     outputs = ["word"]
...     def process(self, tup):
...         self.emit([tup[0].upper()])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rayflow.api.metrics import Metrics
from rayflow.api.tuple import Batch, Tuple
from rayflow.errors import RayflowError
from rayflow.spec.settings import Reliability


@dataclass(frozen=True)
class Context:
    """What a task knows about itself, handed to ``open``/``prepare``.

    >>> Context("count", 1, 2, "wc", {"k": 1}).task_index
    1
    """

    component_id: str
    task_index: int
    parallelism: int
    topology_name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    component_parallelism: Mapping[str, int] = field(default_factory=dict)
    inputs: tuple[tuple[str, int], ...] = ()
    """The upstream tasks, as (component, task index)."""
    key_fields: tuple[str, ...] = ()
    """The fields grouping's key fields when every input is grouped by the same fields."""
    reuses_tuples: bool = False
    """``process`` gets one reused Tuple object per batch (``tuple.reuse``): copy to keep one."""
    reliability: Reliability = Reliability.NONE
    """The topology's reliability mode (a component's own config cannot change it)."""


@dataclass(frozen=True)
class Timer:
    """A timer that fired: ``on_timer(timer)`` gets it.

    ``timestamp`` is in milliseconds since the epoch; ``event_time`` says whether the watermark
    (True) or the wall clock (False) reached it; ``payload`` is what ``register_timer`` was given.
    """

    timestamp: int
    event_time: bool = True
    payload: Any = None


def _not_running(*_args: Any, **_kwargs: Any) -> None:
    raise RayflowError(
        "emit/ack/fail/finish work only while the component runs inside a topology "
        "(use rayflow.testing.run(topology) to try a component)"
    )


class Component:
    """What spouts and bolts share: declared outputs, user metrics, the runtime-bound methods."""

    outputs: ClassVar[Sequence[str] | Mapping[str, Sequence[str]] | None] = None
    """Field names of the default stream, or ``{stream: [fields]}``; read without instantiating."""

    @property
    def metrics(self) -> Metrics:
        """This task's user metrics: ``self.metrics.counter("parsed").inc()``, ``.gauge(name)
        .set(v)``, ``.histogram(name).observe(v)``; reported with the built-in counters."""
        metrics = self.__dict__.get("_rayflow_metrics")
        if metrics is None:
            metrics = self.__dict__["_rayflow_metrics"] = Metrics()
        return metrics

    def emit_direct(
        self, task_index: int, values: list[Any], stream: str = "default", **kwargs: Any
    ) -> None:
        """Send ``values`` to task ``task_index`` of each bolt subscribed with DIRECT grouping."""
        _not_running()

    # Exactly-once (``reliability: exactly_once``): operator state and checkpoint notices.
    def snapshot(self) -> Any:
        """This task's own state for a checkpoint (picklable): a spout's position in its
        source, a non-keyed bolt's buffers. Keyed state (``self.state``) is saved without it.

        >>> class Numbers(Spout):
        ...     def open(self, context): self.next = 0
        ...     def snapshot(self): return self.next
        ...     def restore(self, snapshot): self.next = snapshot
        """
        return None

    def restore(self, snapshot: Any) -> None:
        """Take back what :meth:`snapshot` returned (called after ``open``/``prepare``)."""

    def restore_rescaled(self, snapshots: list[Any]) -> None:
        """Restore after the component's parallelism changed: ``snapshots`` holds what every
        old task returned (Flink's union state); keep what this task is responsible for."""
        if any(s is not None for s in snapshots):
            raise RayflowError(
                f"{type(self).__name__} keeps its own state (snapshot()) and its parallelism "
                "changed: define restore_rescaled(snapshots) to divide it among the new tasks, "
                "or keep its parallelism"
            )

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is complete everywhere: commit what depends on it
        (offsets to a source, staged output). -1 is the final checkpoint of a bounded run."""

    # The runtime calls these; base classes with state of their own (two-phase commit) wrap
    # the user's snapshot/restore here.
    def _snapshot_for(self, checkpoint_id: int) -> Any:
        return self.snapshot()

    def _restore_for(self, snapshot: Any) -> None:
        self.restore(snapshot)

    def _restore_rescaled_for(self, snapshots: list[Any]) -> None:
        self.restore_rescaled(snapshots)


class Spout(Component):
    """A source of tuples. ``next_tuple`` is called in a loop; it may emit zero or more tuples."""

    def open(self, context: Context) -> None:
        """Called once in the task before the first ``next_tuple``."""

    def next_tuple(self) -> None:
        """Emit zero or more tuples with ``self.emit``; call ``self.finish()`` when done."""
        raise NotImplementedError(f"{type(self).__name__} must define next_tuple()")

    def ack(self, msg_id: Any) -> None:
        """The tuple emitted with ``msg_id`` was fully processed."""

    def fail(self, msg_id: Any) -> None:
        """The tuple emitted with ``msg_id`` failed or timed out; a reliable spout replays it."""

    def activate(self) -> None:
        """The topology was (re)activated; ``next_tuple`` calls resume."""

    def deactivate(self) -> None:
        """The topology was deactivated; ``next_tuple`` is not called until ``activate``."""

    def close(self) -> None:
        """Called once when the task stops."""

    # Bound by the runtime on each instance:
    def emit(self, values: list[Any], msg_id: Any = None, stream: str = "default") -> None:
        """Emit one tuple; with a ``msg_id`` it is tracked under at-least-once."""
        _not_running()

    def emit_many(self, rows: Iterable[list[Any]], stream: str = "default") -> None:
        """Emit many untracked tuples at once (no ``msg_id``): the fast path for sources that
        read in batches, when the topology does not track them."""
        for values in rows:
            self.emit(values, stream=stream)

    def finish(self) -> None:
        """A bounded source is done: no more ``next_tuple`` calls; end-of-stream follows."""
        _not_running()

    def emit_watermark(self, timestamp: int) -> None:
        """Event time at this spout has reached ``timestamp`` (ms): no earlier tuples follow.

        Usually the runtime does this: set ``watermark.timestamp_field`` (and
        ``watermark.max_out_of_orderness``) in the spout's config.
        """
        _not_running()

    def mark_idle(self) -> None:
        """This spout has nothing for now; downstream event time goes on without it."""
        _not_running()

    def current_processing_time(self) -> int:
        """The task's clock, in milliseconds since the epoch."""
        _not_running()
        return 0


class Bolt(Component):
    """Processes tuples and may emit new ones."""

    auto_ack: ClassVar[bool] = True
    """Storm's basic bolt: emits anchored to the input, input acked on return, failed on raise."""

    def prepare(self, context: Context) -> None:
        """Called once in the task before the first tuple."""

    def process(self, tup: Tuple) -> None:
        """Handle one tuple."""
        raise NotImplementedError(f"{type(self).__name__} must define process(tup)")

    @property
    def state(self) -> Any:
        """Keyed state, scoped to the key of the tuple being processed (the fields the bolt's
        inputs are grouped by): ``self.state.value(name, default=None, ttl=None)`` (``.get()``,
        ``.set(v)``, ``.clear()``), ``self.state.map(name)`` (a dict), ``self.state.list(name)``
        (``.append(v)``, iteration, ``.clear()``). Organised by key group, so it can move when
        the parallelism changes. Values must be picklable.

        >>> class Count(Bolt):
        ...     outputs = ["word", "count"]
        ...     def prepare(self, context):
        ...         self.count = self.state.value("count", default=0)
        ...     def process(self, tup):
        ...         self.count.set(self.count.get() + 1)
        ...         self.emit([tup["word"], self.count.get()])
        """
        state = self.__dict__.get("_rayflow_state")
        if state is None:
            _not_running()
        return state

    def process_batch(self, batch: Batch) -> None:
        """Handle the rows of one stream from one upstream task (default: ``process`` per row).

        Override it (with ``emit_many``) for speed; the runtime calls it instead of ``process``.
        """
        for tup in batch.tuples():
            self.process(tup)

    def cleanup(self) -> None:
        """Called once at the end; after a bounded input ends it may still emit (final counts)."""

    # Bound by the runtime on each instance:
    def emit(
        self,
        values: list[Any],
        stream: str = "default",
        anchors: Iterable[Tuple] | None = None,
    ) -> None:
        """Emit one tuple, anchored to the input under ``auto_ack`` (or to ``anchors``)."""
        _not_running()

    def emit_many(self, rows: Iterable[list[Any]], stream: str = "default") -> None:
        """Emit many tuples at once (the fast path for ``process_batch``)."""
        _not_running()

    def on_timer(self, timer: Timer) -> None:
        """A timer registered with ``register_timer`` fired (in the task loop, like ``process``)."""

    def register_timer(self, timestamp: int, event_time: bool = True, payload: Any = None) -> None:
        """Call ``on_timer`` once event time (the watermark) or, with ``event_time=False``, the
        wall clock reaches ``timestamp`` (ms). One timer per (time, payload)."""
        _not_running()

    def current_watermark(self) -> int:
        """This task's event time: the smallest watermark over its active inputs (ms)."""
        _not_running()
        return 0

    def current_processing_time(self) -> int:
        """The task's clock, in milliseconds since the epoch."""
        _not_running()
        return 0

    def ack(self, tup: Tuple) -> None:
        """Mark ``tup`` as processed (needed only with ``auto_ack = False``)."""
        _not_running()

    def fail(self, tup: Tuple) -> None:
        """Mark ``tup`` as failed; under at-least-once its spout replays it."""
        _not_running()


def rewindable(cls: type) -> bool:
    """True when a spout class can go back to a snapshot: it defines snapshot and restore (what
    exactly-once asks of every spout)."""
    return cls.snapshot is not Component.snapshot and cls.restore is not Component.restore


def unrewindable(component: str, path: str) -> str:
    """Why a spout that cannot rewind is refused under exactly-once, and what to do."""
    return (
        f"spout '{component}' ({path}) cannot rewind, and reliability exactly_once needs every "
        "spout to: define snapshot() (its position) and restore(snapshot), use a source that can "
        "replay (Kafka, files), or run with reliability at_least_once"
    )
