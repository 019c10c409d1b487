"""The Streams API: :class:`Flow`, :class:`Stream`, :class:`KeyedStream`, :class:`WindowedStream`
(Flink's DataStream, Bytewax's operators), compiled onto an ordinary topology.

>>> from rayflow import Flow, testing
>>> flow = Flow("wordcount")
>>> counts = (flow.source(["the cow", "the moon"])
...               .flat_map(str.split)
...               .key_by(lambda w: w)
...               .count_final())
>>> counts.collect("counts")  # doctest: +ELLIPSIS
<rayflow.streams.flow.Stream ...>
>>> sorted(testing.run(flow).outputs["counts"])
[('cow', 1), ('moon', 1), ('the', 2)]

Every method adds one operator; nothing runs until :meth:`Flow.run` (or ``rayflow run``). Each
operator takes ``name=`` (its id in the UI, metrics, logs and savepoints) and ``parallelism=``
(its input's by default). See :mod:`rayflow.streams.plan` for what runs where.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rayflow.api.components import Bolt, Spout
from rayflow.errors import TopologyError
from rayflow.spec.durations import parse_duration
from rayflow.spec.model import name_problem
from rayflow.streams.nodes import (
    Node,
    check_callable,
    check_items,
    check_name,
    check_parallelism,
    parse_window,
    signed_ms,
)

if TYPE_CHECKING:
    from rayflow.api.result import RunResult
    from rayflow.api.topology import Topology


_KEYED_METHODS = frozenset(
    {
        "reduce",
        "count_final",
        "reduce_final",
        "fold_final",
        "map_state",
        "process",
        "window",
        "window_join",
        "interval_join",
    }
)


class NeedsKeyError(TopologyError, AttributeError):
    """A keyed operator called on a stream without keys."""


class Flow:
    """A dataflow of operators; ``config`` takes the same keys as a :class:`Topology`'s."""

    def __init__(self, name: str, config: Mapping[str, Any] | None = None) -> None:
        problem = name_problem(name, "flow")
        if problem:
            raise TopologyError(problem)
        self.name = name
        self.config = dict(config or {})
        self.nodes: list[Node] = []
        self._kinds: dict[str, int] = {}

    def _add(self, kind: str, inputs: Sequence[Node], **fields: Any) -> Node:
        for node in inputs:
            if node not in self.nodes:
                raise TopologyError(
                    f"{kind}: a stream of another flow was given; streams of one flow only "
                    "connect to each other"
                )
        family = "source" if kind == "items" else kind
        seen = self._kinds[family] = self._kinds.get(family, 0) + 1
        node = Node(kind, tuple(inputs), len(self.nodes), **fields)
        node.default_name = family if seen == 1 else f"{family}-{seen}"
        self.nodes.append(node)
        return node

    # ------------------------------------------------------------------ sources
    def source(
        self,
        source: type[Spout] | Iterable[Any],
        parallelism: int | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        stream: str = "default",
        name: str | None = None,
    ) -> Stream:
        """Items from a Spout class (its ``stream``: one-field rows as the value, others as a
        tuple) or from a list (or another re-iterable: task i of n takes items i, i+n, ...)."""
        what = name or "source"
        fields = dict(
            name=check_name(name, "source"),
            parallelism=check_parallelism(parallelism, what) or 1,
        )
        if isinstance(source, type):
            if not issubclass(source, Spout):
                raise TopologyError(
                    f"source: {source.__qualname__} is not a rayflow.Spout subclass; give a "
                    "Spout class or a list of items"
                )
            from rayflow.spec.model import normalize_outputs

            streams = normalize_outputs(source.outputs, f"source ({source.__qualname__})")
            if stream not in streams:
                raise TopologyError(
                    f"source: {source.__qualname__} declares no stream '{stream}' (it declares "
                    f"{', '.join(streams) or 'none'})"
                )
            params = {
                "cls": source,
                "args": tuple(args),
                "kwargs": dict(kwargs or {}),
                "resources": dict(resources or {}),
                "config": dict(config or {}),
                "stream": stream,
                "fields": streams[stream],
            }
            return Stream(self, self._add("source", (), params=params, **fields))
        check_items(source)
        params = {"items": source, "resources": dict(resources or {}), "config": dict(config or {})}
        return Stream(self, self._add("items", (), params=params, **fields))

    # ------------------------------------------------------------------ running
    def topology(self) -> Topology:
        """The compiled :class:`Topology` (submit it, run it, see it in the UI)."""
        from rayflow.streams.plan import compile_flow

        return compile_flow(self)

    def explain(self) -> str:
        """The compiled plan: which operators share a component, and what crosses tasks."""
        from rayflow.streams.plan import Plan

        return Plan(self).explain()

    def run(
        self,
        duration: float | str | None = None,
        address: str | None = None,
        progress: bool = False,
        overrides: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Compile and run, as :meth:`Topology.run` does (embedded Ray unless ``address``)."""
        return self.topology().run(
            duration, address=address, progress=progress, overrides=overrides
        )

    def __repr__(self) -> str:
        return f"Flow({self.name!r}, {len(self.nodes)} operators)"


class Stream:
    """Items flowing between operators. Every method adds an operator and returns its output."""

    def __init__(self, flow: Flow, node: Node) -> None:
        self.flow = flow
        self.node = node

    def __repr__(self) -> str:
        return f"<{__name__}.{type(self).__name__} of {self.node.label()}>"

    def __getattr__(self, name: str) -> Any:
        if name in _KEYED_METHODS:
            raise NeedsKeyError(
                f"{name}() is an operator of keyed streams: call key_by(fn) first (after "
                f"{self.node.label()}), so that each key's items meet in one task"
            )
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _then(
        self,
        kind: str,
        fn: Any = None,
        name: str | None = None,
        parallelism: int | None = None,
        inputs: Sequence[Node] | None = None,
        **params: Any,
    ) -> Node:
        node = self.node
        return self.flow._add(
            kind,
            inputs if inputs is not None else (node,),
            fn=fn,
            params=params,
            name=check_name(name, kind),
            parallelism=check_parallelism(parallelism, name or kind),
            timestamped=node.timestamped,
        )

    # ----------------------------------------------------- one item at a time
    def map(
        self, fn: Callable[[Any], Any], name: str | None = None, parallelism: int | None = None
    ) -> Stream:
        """``fn(item)`` for every item."""
        return Stream(self.flow, self._then("map", check_callable(fn, "map"), name, parallelism))

    def flat_map(
        self,
        fn: Callable[[Any], Iterable[Any]],
        name: str | None = None,
        parallelism: int | None = None,
    ) -> Stream:
        """Every item of ``fn(item)`` (a list, or any iterable) for every item."""
        fn = check_callable(fn, "flat_map")
        return Stream(self.flow, self._then("flat_map", fn, name, parallelism))

    def filter(
        self, fn: Callable[[Any], Any], name: str | None = None, parallelism: int | None = None
    ) -> Stream:
        """The items for which ``fn(item)`` is true."""
        fn = check_callable(fn, "filter")
        return Stream(self.flow, self._then("filter", fn, name, parallelism))

    def map_async(
        self,
        coro_fn: Callable[[Any], Awaitable[Any]],
        concurrency: int = 100,
        ordered: bool = True,
        timeout: float | str | None = None,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> Stream:
        """Flink's async I/O for coroutines: ``await coro_fn(item)`` for each item, up to
        ``concurrency`` at once on the task's loop; results in input order (``ordered``) or as
        they complete. A batch is done when all its items are (or fail, or pass ``timeout``),
        before anything that followed it, so no result overtakes a barrier or a watermark, and
        under at-least-once its inputs are acked only then."""
        check_callable(coro_fn, "map_async", "coro_fn")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise TopologyError(
                f"map_async: concurrency must be a positive int, got {concurrency!r}"
            )
        seconds = None
        if timeout is not None:
            try:
                seconds = parse_duration(timeout)
            except ValueError as exc:
                raise TopologyError(f"map_async(timeout=...): {exc}") from None
        node = self._then(
            "map_async",
            coro_fn,
            name,
            parallelism,
            concurrency=concurrency,
            ordered=bool(ordered),
            timeout=seconds,
        )
        return Stream(self.flow, node)

    def key_by(
        self, fn: Callable[[Any], Any], name: str | None = None, parallelism: int | None = None
    ) -> KeyedStream:
        """The same items, each with the key ``fn(item)`` (str, int, float, bool, bytes, None or
        a tuple of those): keyed operators after it see each key in one task."""
        node = self._then("key_by", check_callable(fn, "key_by"), name, parallelism)
        node.keyed = True
        return KeyedStream(self.flow, node)

    def with_timestamps(
        self,
        fn: Callable[[Any], int],
        max_out_of_orderness: float | str = "0s",
        name: str | None = None,
        parallelism: int | None = None,
    ) -> Stream:
        """Event time: ``fn(item)`` is the item's time in ms since the epoch; watermarks follow
        the largest one minus ``max_out_of_orderness`` (every ``watermark.interval``, 200 ms by
        default). Timestamps travel with the items across exchanges."""
        fn = check_callable(fn, "with_timestamps")
        try:
            lag = int(parse_duration(max_out_of_orderness) * 1000)
        except ValueError as exc:
            raise TopologyError(f"with_timestamps(max_out_of_orderness=...): {exc}") from None
        node = self._then("with_timestamps", fn, name, parallelism, max_out_of_orderness=lag)
        node.timestamped = True
        return Stream(self.flow, node)

    def branch(
        self,
        predicate: Callable[[Any], Any],
        name: str | None = None,
        parallelism: int | None = None,
    ) -> tuple[Stream, Stream]:
        """``(matching, rest)``: the items for which ``predicate(item)`` is true, and the others."""
        node = self._then("branch", check_callable(predicate, "branch"), name, parallelism)
        ports = []
        for which in (True, False):
            port = self.flow._add(
                "port", (node,), params={"which": which}, timestamped=node.timestamped
            )
            ports.append(Stream(self.flow, port))
        return ports[0], ports[1]

    # -------------------------------------------------------------- exchanges
    def union(
        self, *others: Stream, name: str | None = None, parallelism: int | None = None
    ) -> Stream:
        """The items of this stream and of ``others``, as they come."""
        streams = [self, *others]
        if any(s.flow is not self.flow for s in streams):
            raise TopologyError("union: every stream must belong to the same flow")
        node = self._then("union", None, name, parallelism, inputs=[s.node for s in streams])
        timed = {s.node.timestamped for s in streams}
        if len(timed) > 1:
            raise TopologyError(
                "union: some streams carry timestamps (with_timestamps) and others do not; "
                "give them all timestamps, or none"
            )
        return Stream(self.flow, node)

    def rebalance(self, name: str | None = None, parallelism: int | None = None) -> Stream:
        """The same items, spread evenly over the next operator's tasks."""
        return Stream(self.flow, self._then("rebalance", None, name, parallelism))

    def broadcast(self, name: str | None = None, parallelism: int | None = None) -> Stream:
        """Every item to every task of the next operator."""
        return Stream(self.flow, self._then("broadcast", None, name, parallelism))

    # ------------------------------------------------------------------ sinks
    def sink(
        self,
        target: type[Bolt] | Callable[[Any], Any],
        parallelism: int | None = None,
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """Items into a Bolt class (its ``tup[0]`` is the item) or a function called once per
        item (its return ignored)."""
        if isinstance(target, type):
            if not issubclass(target, Bolt):
                raise TopologyError(
                    f"sink: {target.__qualname__} is not a rayflow.Bolt subclass; give a Bolt "
                    "class or a function"
                )
            params = {
                "cls": target,
                "args": tuple(args),
                "kwargs": dict(kwargs or {}),
                "resources": dict(resources or {}),
                "config": dict(config or {}),
            }
            self._then("sink", None, name, parallelism, **params)
            return
        if isinstance(target, Bolt):
            raise TopologyError(
                f"sink: give the Bolt class ({type(target).__qualname__}), not an instance; its "
                "arguments go in args= and kwargs="
            )
        self._then("sink_fn", check_callable(target, "sink", "target"), name, parallelism)

    def collect(self, name: str | None = None, parallelism: int | None = None) -> Stream:
        """Keep the items, as they are, in ``result.outputs[name]`` (``name`` defaults to the
        operator's default name: ``collect``, ``collect-2``, ...)."""
        self._then("collect", None, name, parallelism)
        return self


class KeyedStream(Stream):
    """A stream whose items have keys (:meth:`Stream.key_by`). Keyed operators put out
    ``(key, result)`` items; their state is kept per key and moves with it on a rescale.

    Stateless operators (map, filter, ...) on a keyed stream give a plain stream."""

    def _keyed(
        self, kind: str, fn: Any, name: str | None, parallelism: int | None, **params: Any
    ) -> Node:
        return self._then(kind, fn, name, parallelism, **params)

    # -------------------------------------------------------- rolling and final
    def reduce(
        self, fn: Callable[[Any, Any], Any], name: str | None = None, parallelism: int | None = None
    ) -> Stream:
        """Rolling: ``(key, accumulated)`` after every item, ``fn(accumulated, item)``."""
        fn = check_callable(fn, "reduce")
        return Stream(self.flow, self._keyed("reduce", fn, name, parallelism))

    def count_final(self, name: str | None = None, parallelism: int | None = None) -> Stream:
        """``(key, count)`` per key, once the input ends (or at a graceful stop)."""
        return Stream(self.flow, _final(self._keyed("count_final", None, name, parallelism)))

    def reduce_final(
        self, fn: Callable[[Any, Any], Any], name: str | None = None, parallelism: int | None = None
    ) -> Stream:
        """``(key, fn(...fn(fn(first, second), third)...))`` per key, once the input ends;
        ``fn`` must be associative (batches are reduced before the exchange)."""
        fn = check_callable(fn, "reduce_final")
        return Stream(self.flow, _final(self._keyed("reduce_final", fn, name, parallelism)))

    def fold_final(
        self,
        init_fn: Callable[[], Any],
        fn: Callable[[Any, Any], Any],
        name: str | None = None,
        parallelism: int | None = None,
    ) -> Stream:
        """``(key, fn(...fn(init_fn(), first)..., last))`` per key, once the input ends."""
        init_fn = check_callable(init_fn, "fold_final", "init_fn")
        fn = check_callable(fn, "fold_final")
        node = self._keyed("fold_final", fn, name, parallelism, init=init_fn)
        return Stream(self.flow, _final(node))

    def map_state(
        self,
        fn: Callable[[Any, Any], tuple[Any, Any]],
        name: str | None = None,
        parallelism: int | None = None,
    ) -> Stream:
        """``state, out = fn(state, item)`` per item (the first state is None; a state of None
        deletes it; an ``out`` of None emits nothing, else ``(key, out)``)."""
        fn = check_callable(fn, "map_state")
        return Stream(self.flow, self._keyed("map_state", fn, name, parallelism))

    def process(
        self,
        fn: Callable[[Any, Any], None],
        on_timer: Callable[[Any, int], None] | None = None,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> Stream:
        """Flink's KeyedProcessFunction: ``fn(ctx, item)`` with ``ctx.key``, ``ctx.state``
        (value/map/list, per key), ``ctx.timestamp``, ``ctx.emit(x)`` (``(key, x)`` out) and
        ``ctx.register_timer(ts)``; ``on_timer(ctx, ts)`` when a timer fires."""
        fn = check_callable(fn, "process")
        if on_timer is not None:
            check_callable(on_timer, "process", "on_timer")
        node = self._keyed("process", fn, name, parallelism, on_timer=on_timer)
        return Stream(self.flow, node)

    # ----------------------------------------------------------------- windows
    def window(
        self, spec: Mapping[str, Any], name: str | None = None, parallelism: int | None = None
    ) -> WindowedStream:
        """Windows per key (``type``: tumbling, sliding, session; ``size``, ``slide``, ``gap``,
        ``allowed_lateness``; ``time``: event when ``with_timestamps`` is upstream, else
        processing); aggregate them with the returned stream's methods."""
        window = parse_window(spec, self.node.timestamped, "window")
        node = self._keyed("window", None, name, parallelism, window=window, agg=None)
        return WindowedStream(self.flow, node)

    # ------------------------------------------------------------------- joins
    def window_join(
        self,
        other: KeyedStream,
        window: Mapping[str, Any],
        fn: Callable[[Any, Any], Any],
        name: str | None = None,
        parallelism: int | None = None,
    ) -> Stream:
        """``fn(left, right)`` for every pair of items of equal key in the same window."""
        self._check_other(other, "window_join")
        spec = parse_window(window, self.node.timestamped, "window_join")
        fn = check_callable(fn, "window_join")
        inputs = (self.node, other.node)
        node = self._then("window_join", fn, name, parallelism, inputs=inputs, window=spec)
        return Stream(self.flow, node)

    def interval_join(
        self,
        other: KeyedStream,
        lower: int | str,
        upper: int | str,
        fn: Callable[[Any, Any], Any],
        name: str | None = None,
        parallelism: int | None = None,
    ) -> Stream:
        """``fn(left, right)`` for every right item of equal key whose timestamp lies in
        ``[left.ts + lower, left.ts + upper]`` (both included; ms or durations such as
        ``"-2s"``). Both streams need timestamps (``with_timestamps``)."""
        self._check_other(other, "interval_join")
        if not (self.node.timestamped and other.node.timestamped):
            raise TopologyError(
                "interval_join: both streams need timestamps; add with_timestamps(...) before "
                "their key_by"
            )
        low, high = signed_ms(lower, "lower"), signed_ms(upper, "upper")
        if low > high:
            raise TopologyError(f"interval_join: lower ({lower!r}) is after upper ({upper!r})")
        fn = check_callable(fn, "interval_join")
        inputs = (self.node, other.node)
        node = self._then(
            "interval_join", fn, name, parallelism, inputs=inputs, lower=low, upper=high
        )
        return Stream(self.flow, node)

    def _check_other(self, other: Any, what: str) -> None:
        if not isinstance(other, KeyedStream):
            raise TopologyError(
                f"{what}: both sides must be keyed (key_by) so that equal keys meet in one task; "
                f"the other side is a {type(other).__name__}"
            )
        if other.flow is not self.flow:
            raise TopologyError(f"{what}: both streams must belong to the same flow")


def _final(node: Node) -> Node:
    node.timestamped = False  # one result per key at the end: no event time of its own
    return node


class WindowedStream:
    """A keyed stream cut into windows (:meth:`KeyedStream.window`): aggregate it once with
    :meth:`count`, :meth:`reduce`, :meth:`aggregate` or :meth:`process`; its items are
    ``(key, window, result)`` with ``window.start`` and ``window.end`` in ms."""

    def __init__(self, flow: Flow, node: Node) -> None:
        self.flow = flow
        self.node = node

    def _aggregate(
        self, agg: str, name: str | None, parallelism: int | None, **params: Any
    ) -> Stream:
        node = self.node
        if node.params["agg"] is not None:
            raise TopologyError(
                f"window: it is aggregated already ({node.params['agg']}); call window() "
                "again for another aggregation"
            )
        node.params.update(agg=agg, **params)
        node.name = check_name(name, "window") or node.name  # the window's own name= otherwise
        node.parallelism = check_parallelism(parallelism, agg) or node.parallelism
        return Stream(self.flow, node)

    def count(self, name: str | None = None, parallelism: int | None = None) -> Stream:
        """How many items each window holds."""
        return self._aggregate("count", name, parallelism)

    def reduce(
        self,
        fn: Callable[[Any, Any], Any],
        name: str | None = None,
        parallelism: int | None = None,
    ) -> Stream:
        """``fn(accumulated, item)`` over each window's items."""
        fn = check_callable(fn, "window(...).reduce")
        return self._aggregate("reduce", name, parallelism, fn=fn)

    def aggregate(
        self,
        init_fn: Callable[[], Any],
        add_fn: Callable[[Any, Any], Any],
        merge_fn: Callable[[Any, Any], Any] | None = None,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> Stream:
        """``add_fn(acc, item)`` from ``init_fn()``; ``merge_fn(acc, acc)`` when sessions merge."""
        what = "window(...).aggregate"
        if merge_fn is not None:
            check_callable(merge_fn, what, "merge_fn")
        elif self.node.params["window"]["type"] == "session":
            raise TopologyError(
                f"{what}: session windows merge, so they need merge_fn(acc, acc) as well"
            )
        return self._aggregate(
            "aggregate",
            name,
            parallelism,
            init=check_callable(init_fn, what, "init_fn"),
            fn=check_callable(add_fn, what, "add_fn"),
            merge=merge_fn,
        )

    def process(
        self,
        fn: Callable[[Any, Any, list[Any]], Any],
        name: str | None = None,
        parallelism: int | None = None,
    ) -> Stream:
        """``fn(key, window, items)`` once a window closes; what it returns is the result
        (None: nothing)."""
        fn = check_callable(fn, "window(...).process")
        return self._aggregate("process", name, parallelism, fn=fn)

    def late(self) -> Stream:
        """The items that came after their window closed (and its allowed lateness); without
        this they are dropped and counted (``late_dropped``)."""
        for node in self.flow.nodes:
            if node.kind == "port" and node.inputs == (self.node,):
                return Stream(self.flow, node)
        port = self.flow._add(
            "port", (self.node,), params={"which": "late"}, timestamped=self.node.timestamped
        )
        return Stream(self.flow, port)
