"""The emitting side of a task: routes per declared stream, and the ``emit`` functions bound on
the user's spout or bolt (no wrapper between ``self.emit`` and the route).

>>> from rayflow.runtime.io.channels import OutputChannel
>>> from rayflow.spec.model import ClassRef, ComponentSpec, Grouping, StreamSpec, TopologySpec
>>> a = ComponentSpec("a", "spout", ClassRef.of(object), outputs={"default": ("x",)})
>>> b = ComponentSpec("b", "bolt", ClassRef.of(object))
>>> spec = TopologySpec("t", (a, b), (StreamSpec("a", "b", Grouping("SHUFFLE")),))
>>> sent = []
>>> out = {("b", 0): OutputChannel(("b", 0), 4, lambda *m, on_done: sent.append(m))}
>>> c = Collector(spec, "a", out)
>>> c.emit([1]); c.emit([2]); c.flush_all()
>>> sent[0][3], c.stats.emitted
([[1], [2]], 2)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rayflow.errors import TopologyError
from rayflow.runtime.io.channels import OutputChannel
from rayflow.runtime.io.routing import DropRoute, Route, RouteStats, make_route
from rayflow.spec.model import TopologySpec


class Collector:
    """Routes every emit of one task to the buffers of its downstream tasks."""

    def __init__(
        self,
        spec: TopologySpec,
        component_id: str,
        channels: Mapping[tuple[str, int], OutputChannel],
        local_tasks: Iterable[tuple[str, int]] = (),
        task_index: int = 0,
    ) -> None:
        self.component_id = component_id
        self.channels = dict(channels)
        self.stats = RouteStats()
        self.spout_emits = 0
        self.acks_due: list[Any] = []
        settings = spec.settings
        component = spec.component(component_id)
        local = set(local_tasks)
        self.routes: dict[str, tuple[Route, ...]] = {}
        for stream, fields in component.outputs.items():
            routes: list[Route] = []
            for sub in spec.downstream(component_id):
                if sub.stream != stream:
                    continue
                n = spec.component(sub.target).parallelism
                route = make_route(
                    sub.grouping.type,
                    stream,
                    [self.channels[(sub.target, i)] for i in range(n)],
                    settings.batch_size,
                    self.stats,
                    key_indexes=[fields.index(f) for f in sub.grouping.fields_],
                    max_parallelism=settings.max_parallelism,
                    custom=sub.grouping.make_custom() if sub.grouping.type == "CUSTOM" else None,
                    local_targets=[i for i in range(n) if (sub.target, i) in local],
                    own_task=task_index,
                )
                route.counts_emits = not routes
                routes.append(route)
            self.routes[stream] = tuple(routes) or (DropRoute(stream, self.stats),)
        self.all_routes = [r for rs in self.routes.values() for r in rs]
        self._single = {s: rs[0].add for s, rs in self.routes.items() if len(rs) == 1}
        self.emit = self._make_emit()
        self.spout_emit = self._make_spout_emit()

    # ----------------------------------------------------------------- emits
    def _make_emit(self) -> Any:
        single = self._single
        multi = self._emit_multi
        fast = "default" if "default" in single else next(iter(single), None)
        if fast is not None:
            # The stream most emits go to gets a closure specialised for its route.
            return self.routes[fast][0].make_emit(fast, self._emit_slow)

        def emit(values: list[Any], stream: str = "default", anchors: Any = None) -> None:
            try:
                add = single[stream]
            except KeyError:
                multi(values, stream)
                return
            add(values)

        return emit

    def _emit_slow(self, values: list[Any], stream: str) -> None:
        add = self._single.get(stream)
        if add is None:
            self._emit_multi(values, stream)
        else:
            add(values)

    def _emit_multi(self, values: list[Any], stream: str) -> None:
        for route in self._routes_of(stream):
            route.add(values)

    def _routes_of(self, stream: str) -> tuple[Route, ...]:
        try:
            return self.routes[stream]
        except KeyError:
            declared = ", ".join(sorted(self.routes)) or "none"
            raise TopologyError(
                f"'{self.component_id}' emitted on stream '{stream}', which its class does not "
                f"declare in outputs (declared: {declared})"
            ) from None

    def _make_spout_emit(self) -> Any:
        """``Spout.emit``: counts the emit (the spout loop uses it) and remembers ``msg_id``."""
        emit = self.emit
        acks_due = self.acks_due
        collector = self

        def spout_emit(values: list[Any], msg_id: Any = None, stream: str = "default") -> None:
            collector.spout_emits += 1
            emit(values, stream)
            if msg_id is not None:
                acks_due.append(msg_id)

        return spout_emit

    def progress(self, items: int) -> None:
        """A spout did work that emitted nothing (a fused source whose items were all filtered
        out): its loop goes on at once instead of backing off as from an idle source."""
        self.spout_emits += items

    def spout_emit_many(self, rows: Iterable[list[Any]], stream: str = "default") -> None:
        """``Spout.emit_many`` (untracked): counted like as many ``emit`` calls."""
        if not isinstance(rows, list):
            rows = list(rows)
        self.spout_emits += len(rows)
        self.emit_many(rows, stream)

    def emit_many(self, rows: Iterable[list[Any]], stream: str = "default") -> None:
        routes = self._routes_of(stream)
        if len(routes) > 1 and not isinstance(rows, list):
            rows = list(rows)
        for route in routes:
            route.add_many(rows)

    def emit_direct(
        self, task_index: int, values: list[Any], stream: str = "default", **_: Any
    ) -> None:
        for route in self._routes_of(stream):
            route.add_direct(task_index, values)

    # --------------------------------------------------------------- flushing
    def flush_all(self) -> None:
        """Send every partly filled batch now."""
        for route in self.all_routes:
            route.flush_all()

    def broadcast(self, kind: int, payload: Any = None) -> None:
        """Flush, then send a marker (end-of-stream, barrier, watermark) on every channel."""
        self.flush_all()
        for channel in self.channels.values():
            channel.send(kind, "", payload, None)

    def discard_all(self) -> None:
        """Drop buffered rows (a task being stopped without draining)."""
        for route in self.all_routes:
            route.discard()
