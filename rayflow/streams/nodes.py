"""The operator graph a :class:`~rayflow.streams.flow.Flow` builds: one :class:`Node` per operator.

Nodes only describe; :mod:`rayflow.streams.plan` decides which of them share a component (fusion)
and what crosses tasks. Each node's kind says which family it belongs to:

================  ==========================================================================
``SOURCES``       a Spout class or a list of items: where items come from
``STATELESS``     map, flat_map, filter, key_by, with_timestamps, branch and its ports:
                  they run in their input's task, batch at a time (fused)
``KEYED``         reduce, the ``*_final`` aggregations, map_state, process, windows, joins:
                  a keyed exchange before them, keyed state in them
``EXCHANGES``     rebalance, broadcast: a shuffle or every item to every task
``SINKS``         a Bolt class, a function, collect
``ASYNC``         map_async: coroutines on the task's loop, a batch at a time
================  ==========================================================================

>>> node = Node("map", (), 0, fn=str.upper)
>>> node.kind in STATELESS, node.label()
(True, 'map')
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rayflow.errors import TopologyError
from rayflow.spec.durations import parse_duration
from rayflow.spec.model import name_problem

MAX_ITEMS_BYTES = 4 * 1024 * 1024
"""A list given to :meth:`Flow.source` travels inside the topology; past this, write a spout."""
_WINDOW_KEYS = ("type", "size", "slide", "gap", "allowed_lateness", "time")

SOURCES = frozenset({"source", "items"})
STATELESS = frozenset({"map", "flat_map", "filter", "key_by", "with_timestamps", "branch", "port"})
FINALS = frozenset({"count_final", "reduce_final", "fold_final"})
KEYED = frozenset(
    {"reduce", "map_state", "process", "window", "window_join", "interval_join", *FINALS}
)
EXCHANGES = frozenset({"rebalance", "broadcast"})
SINKS = frozenset({"sink", "sink_fn", "collect"})
ASYNC = frozenset({"map_async"})
"""Operators that await: the head of a component of their own (chained to their input)."""
COMBINABLE = frozenset({"count_final", "reduce_final"})
"""Aggregations whose partial results merge, so a batch is pre-aggregated before the exchange."""


@dataclass(eq=False)
class Node:
    """One operator. ``inputs`` are the nodes whose items it takes; ``fn`` and ``params`` say
    what it does; ``keyed`` and ``timestamped`` describe the items it puts out."""

    kind: str
    inputs: tuple[Node, ...]
    index: int  # creation order in its flow: default names and plans follow it
    fn: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None  # given with name=
    parallelism: int | None = None  # given with parallelism=
    keyed: bool = False  # its items come with a key (a KeyedStream)
    timestamped: bool = False  # its items come with a timestamp (with_timestamps upstream)
    default_name: str = ""  # set by the flow: the kind and its place among nodes of that kind

    def label(self) -> str:
        """The operator's name: the one given, else its default."""
        return self.name or self.default_name or self.kind

    @property
    def stateless(self) -> bool:
        return self.kind in STATELESS


def check_name(name: str | None, what: str) -> str | None:
    """A ``name=`` given to an operator, checked like a component id.

    >>> check_name("counts", "count_final"), check_name(None, "map")
    ('counts', None)
    """
    if name is None:
        return None
    problem = name_problem(name, f"{what} operator")
    if problem:
        raise TopologyError(problem)
    return name


def check_parallelism(parallelism: int | None, what: str) -> int | None:
    """A ``parallelism=`` given to an operator: a positive int (or None, its input's)."""
    if parallelism is None:
        return None
    if isinstance(parallelism, bool) or not isinstance(parallelism, int) or parallelism < 1:
        raise TopologyError(f"{what}: parallelism must be a positive integer, got {parallelism!r}")
    return parallelism


def check_callable(fn: Any, what: str, argument: str = "fn") -> Any:
    """A user function given to an operator (said before anything runs when it is not one)."""
    if not callable(fn):
        raise TopologyError(f"{what}({argument}=...) needs a function, got {fn!r}")
    return fn


def check_items(items: Any) -> None:
    """A list given to ``flow.source``: re-iterable, picklable, not too large."""
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise TopologyError(
            f"source: give a Spout class or a list of items, got {type(items).__name__}"
        )
    if iter(items) is items:
        raise TopologyError(
            "source: a generator or iterator cannot rewind (a restart would lose its items); "
            "give a list, or write a Spout that can snapshot its position"
        )
    try:
        size = len(pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        raise TopologyError(f"source: the items cannot be pickled ({exc})") from None
    if size > MAX_ITEMS_BYTES:
        raise TopologyError(
            f"source: the items take {size / 2**20:.1f} MiB pickled, and they travel inside the "
            f"topology (at most {MAX_ITEMS_BYTES // 2**20} MiB); read them in a Spout instead "
            "(see rayflow.connectors.files for files)"
        )


def parse_window(spec: Mapping[str, Any], timestamped: bool, what: str) -> dict[str, Any]:
    """A flow window, checked: ``{type, size|gap, slide, allowed_lateness (ms), time}``.

    >>> parse_window({"type": "tumbling", "size": "10s"}, True, "window")["time"]
    'event'
    >>> parse_window({"type": "session", "gap": "500ms"}, False, "window")["gap"]
    500
    """
    from rayflow.spec.windows import WindowError, WindowSpec

    if not isinstance(spec, Mapping):
        raise TopologyError(
            f"{what}: expected a dict such as {{'type': 'tumbling', 'size': '10s'}}"
        )
    unknown = sorted(set(spec) - set(_WINDOW_KEYS))
    if unknown:
        raise TopologyError(
            f"{what}: unknown key {unknown[0]!r}; a window takes {', '.join(_WINDOW_KEYS)}"
        )
    time = str(spec.get("time", "event" if timestamped else "processing")).lower()
    if time == "event" and not timestamped:
        raise TopologyError(
            f"{what}: event-time windows need timestamps; add with_timestamps(...) upstream, "
            "or set time: processing"
        )
    raw = dict(spec, time=time)
    if time == "event":
        raw["timestamp_field"] = "ts"
    try:
        parsed = WindowSpec.parse(raw)
    except WindowError as exc:
        raise TopologyError(f"{what}: {exc}") from None
    if parsed.count:
        raise TopologyError(
            f"{what}: size {spec.get('size')!r} is a count; flow windows are time windows "
            "(give a duration such as '10s')"
        )
    return {
        "type": parsed.type,
        "size": parsed.size,
        "slide": parsed.slide or parsed.size,
        "gap": parsed.gap,
        "allowed_lateness": parsed.allowed_lateness,
        "time": parsed.time,
    }


def signed_ms(value: int | str, what: str) -> int:
    """Milliseconds from an int or a duration that may be negative.

    >>> signed_ms("-2s", "lower"), signed_ms(500, "upper")
    (-2000, 500)
    """
    if isinstance(value, bool):
        raise TopologyError(f"interval_join({what}=...): expected ms or a duration, got {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    sign = -1 if text.startswith("-") else 1
    try:
        return sign * round(parse_duration(text.lstrip("+-")) * 1000)
    except ValueError as exc:
        raise TopologyError(f"interval_join({what}=...): {exc}") from None
