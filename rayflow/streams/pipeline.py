"""The stateless operators of one component, fused: each runs over a whole batch of items at
once (a list comprehension, not a ``Tuple`` and an ``emit`` per item) and hands its output to the
next ones, until an *exit* turns the items into the rows of an output stream.

A batch travels as three lists: the items, their timestamps (None without ``with_timestamps``)
and their keys (None but between ``key_by`` and an exit into a keyed operator).

>>> steps = [Step("flat_map", "flat_map", str.split, next=(1,)),
...          Step("key_by", "key_by", len, next=(2,)),
...          Step("exit", "to-count", params={"stream": "s", "wire": "keyed"})]
>>> out = Outputs()
>>> run = build(steps, 0, out)
>>> run(["the cow", "a moon"], None, None); out.take()
{'s': [(3, 'the'), (3, 'cow'), (1, 'a'), (4, 'moon')]}
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress, repeat
from typing import Any

from rayflow.errors import RayflowError
from rayflow.keys import encode_key
from rayflow.state.keyed import table_key

Run = Callable[[list, "list | None", "list | None"], None]
"""A fused operator chain's entry: ``run(items, timestamps, keys)``."""

_PLAIN_KEYS = frozenset({str, int, bytes})  # encode_key takes these as they are
_SELF_INDEXED = frozenset({str, int})  # keys that index a dict as themselves (table_key)


@dataclass(frozen=True)
class Step:
    """One fused operator (or an exit) of a component's program; ``next`` are the steps its
    output goes to (several: every item to each)."""

    kind: str
    name: str
    fn: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    next: tuple[int, ...] = ()


def decode(wire: str, rows: list[Any]) -> tuple[list, list | None, list | None]:
    """Items, timestamps and keys of a batch in wire format ``wire``.

    >>> decode("keyed_ts", [("a", 1, 10), ("b", 2, 20)])
    ([1, 2], [10, 20], ['a', 'b'])
    """
    if wire == "items":
        return rows, None, None
    if wire == "items_ts":
        return [r[0] for r in rows], [r[1] for r in rows], None
    if wire in ("keyed", "partial"):
        return [r[1] for r in rows], None, [r[0] for r in rows]
    if wire == "keyed_ts":
        return [r[1] for r in rows], [r[2] for r in rows], [r[0] for r in rows]
    raise ValueError(f"no wire format '{wire}'")


class Outputs:
    """The rows each exit produced for the batch being processed, sent once it is done (a raise
    part-way through leaves nothing sent twice)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {}

    def add(self, stream: str, rows: list[Any]) -> None:
        held = self.rows.get(stream)
        if held is None:
            self.rows[stream] = rows
        else:
            held.extend(rows)

    def take(self) -> dict[str, list[Any]]:
        rows, self.rows = self.rows, {}
        return rows

    def clear(self) -> None:
        self.rows = {}


class OperatorError(RayflowError):
    """A user function of a flow operator raised; chained to what it raised.

    >>> str(OperatorError.of(Step("map", "parse", int), ValueError("no")))
    "map 'parse' (builtins.int) raised ValueError: no"
    """

    @classmethod
    def of(cls, step: Step, exc: BaseException) -> OperatorError:
        fn = step.fn
        where = f" ({describe_callable(fn)})" if fn is not None else ""
        error = cls(f"{step.kind} '{step.name}'{where} raised {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error


def describe_callable(fn: Any) -> str:
    """``module:function (line N)`` of a user function, for errors.

    >>> describe_callable(len)
    'builtins.len'
    """
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    try:
        line = inspect.getsourcelines(fn)[1]
    except (OSError, TypeError):
        return f"{module}.{name}"
    return f"{module}:{name} (line {line})"


def build(
    steps: list[Step],
    index: int,
    outputs: Outputs,
    observe: Callable[[int, int], None] | None = None,
) -> Run:
    """The function that runs step ``index`` and everything fused after it. ``observe(step,
    largest timestamp)`` hears of each batch's event time (a spout's watermarks). A user
    function's raise leaves as an :class:`OperatorError` naming the operator."""
    run = _build(steps, index, outputs, observe)
    step = steps[index]
    if step.kind in ("port", "union", "rebalance", "broadcast"):
        return run

    def named(items: list, tss: list | None, keys: list | None) -> None:
        try:
            run(items, tss, keys)
        except OperatorError:
            raise
        except Exception as exc:
            raise OperatorError.of(step, exc) from exc

    return named


def _build(
    steps: list[Step],
    index: int,
    outputs: Outputs,
    observe: Callable[[int, int], None] | None,
) -> Run:
    step = steps[index]
    nexts = [build(steps, i, outputs, observe) for i in step.next]
    after = fan_out(nexts)
    kind, fn = step.kind, step.fn
    if kind in ("port", "union", "rebalance", "broadcast"):
        return after
    if kind == "map":

        def run_map(items: list, tss: list | None, keys: list | None) -> None:
            after([fn(x) for x in items], tss, None)

        return run_map
    if kind == "flat_map":
        return _flat_map(fn, after)
    if kind == "filter":

        def run_filter(items: list, tss: list | None, keys: list | None) -> None:
            if tss is None:
                after([x for x in items if fn(x)], None, None)
                return
            keep = [bool(fn(x)) for x in items]
            after(list(compress(items, keep)), list(compress(tss, keep)), None)

        return run_filter
    if kind == "key_by":

        def run_key_by(items: list, tss: list | None, keys: list | None) -> None:
            after(items, tss, [fn(x) for x in items])

        return run_key_by
    if kind == "with_timestamps":
        return _with_timestamps(fn, after, index, observe)
    if kind == "branch":
        return _branch(fn, steps, step, outputs, observe)
    if kind == "sink_fn":

        def run_sink(items: list, tss: list | None, keys: list | None) -> None:
            for x in items:
                fn(x)

        return run_sink
    if kind == "exit":
        return _exit(step.params, outputs)
    raise ValueError(f"no fused operator '{kind}'")


def fan_out(nexts: list[Run]) -> Run:
    """One run that gives every batch to each of ``nexts`` (fan-out)."""
    if len(nexts) == 1:
        return nexts[0]

    def fan_out(items: list, tss: list | None, keys: list | None) -> None:
        for run in nexts:
            run(items, tss, keys)

    return fan_out


def _flat_map(fn: Callable[[Any], Any], after: Run) -> Run:
    def run_flat_map(items: list, tss: list | None, keys: list | None) -> None:
        if tss is None:
            after([y for x in items for y in fn(x)], None, None)
            return
        out: list[Any] = []
        out_ts: list[int] = []
        for x, ts in zip(items, tss, strict=True):
            ys = fn(x)
            if ys.__class__ is not list:
                ys = list(ys)
            out += ys
            out_ts += repeat(ts, len(ys))
        after(out, out_ts, None)

    return run_flat_map


def _with_timestamps(
    fn: Callable[[Any], int],
    after: Run,
    index: int,
    observe: Callable[[int, int], None] | None,
) -> Run:
    def run_with_timestamps(items: list, tss: list | None, keys: list | None) -> None:
        stamped = [int(fn(x)) for x in items]
        if stamped and observe is not None:
            observe(index, max(stamped))
        after(items, stamped, keys)

    return run_with_timestamps


def _branch(
    predicate: Callable[[Any], Any],
    steps: list[Step],
    step: Step,
    outputs: Outputs,
    observe: Callable[[int, int], None] | None,
) -> Run:
    ports = [(steps[i].params["which"], build(steps, i, outputs, observe)) for i in step.next]

    def run_branch(items: list, tss: list | None, keys: list | None) -> None:
        flags = [bool(predicate(x)) for x in items]
        for which, run in ports:
            keep = flags if which else [not f for f in flags]
            run(
                list(compress(items, keep)),
                None if tss is None else list(compress(tss, keep)),
                None,
            )

    return run_branch


def check_keys(keys: list[Any]) -> set[type]:
    """Every key can be routed (``rayflow.keys``): the error names the bad one's type before
    anything of the batch is sent. Returns the keys' types (counted in C, not per key).

    >>> sorted(t.__name__ for t in check_keys(["a", 1, ("b", 2)]))
    ['int', 'str', 'tuple']
    """
    types = set(map(type, keys))
    if not types <= _PLAIN_KEYS:
        for key in keys:
            if key.__class__ not in _PLAIN_KEYS:
                encode_key(key)
    return types


def _exit(params: dict[str, Any], outputs: Outputs) -> Run:
    stream, wire = params["stream"], params["wire"]
    add = outputs.add
    combine = params.get("combine")
    if combine is not None:
        return _combiner(stream, combine, params.get("combine_fn"), add)
    if wire == "items":
        return lambda items, tss, keys: add(stream, items)
    if wire == "items_ts":
        return lambda items, tss, keys: add(stream, list(zip(items, tss, strict=True)))  # type: ignore[arg-type]
    if wire == "rows":
        return lambda items, tss, keys: add(stream, [[x] for x in items])
    if wire == "rows_ts":
        return lambda items, tss, keys: add(
            stream,
            [[x, ts] for x, ts in zip(items, tss, strict=True)],  # type: ignore[arg-type]
        )
    if wire == "keyed":

        def exit_keyed(items: list, tss: list | None, keys: list | None) -> None:
            check_keys(keys)  # type: ignore[arg-type]
            add(stream, list(zip(keys, items, strict=True)))  # type: ignore[arg-type]

        return exit_keyed
    if wire == "keyed_ts":

        def exit_keyed_ts(items: list, tss: list | None, keys: list | None) -> None:
            check_keys(keys)  # type: ignore[arg-type]
            add(stream, list(zip(keys, items, tss, strict=True)))  # type: ignore[arg-type]

        return exit_keyed_ts
    raise ValueError(f"no wire format '{wire}'")


def _combiner(stream: str, combine: str, fn: Any, add: Callable[[str, list[Any]], None]) -> Run:
    """Pre-aggregate a batch per key before a keyed exchange (aggregations whose partial results
    merge): the exchange then carries a row per key and batch, not per item."""

    def exit_combined(items: list, tss: list | None, keys: list | None) -> None:
        types = check_keys(keys)  # type: ignore[arg-type]
        partial: dict[Any, Any] = {}
        originals: dict[Any, Any] = {}
        if combine == "count" and types <= _SELF_INDEXED:
            add(stream, list(Counter(keys).items()))  # counted in C; str, int never collide
            return
        if combine == "count":
            get = partial.get
            for key in keys:  # type: ignore[union-attr]
                index = table_key(key)
                originals[index] = key
                partial[index] = get(index, 0) + 1
        else:
            for key, x in zip(keys, items, strict=True):  # type: ignore[arg-type]
                index = table_key(key)
                originals[index] = key
                partial[index] = fn(partial[index], x) if index in partial else x
        add(stream, [(originals[index], value) for index, value in partial.items()])

    return exit_combined
