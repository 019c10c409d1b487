"""What a bolt receives: :class:`Tuple` (one row) and :class:`Batch` (many rows of one stream).

Values travel between tasks as plain lists; a ``Tuple`` wraps one of them with where it came from.

>>> src = TupleSource("default", "split", 0, ("word", "n"))
>>> t = Tuple(["cow", 2], src)
>>> t[0], t["n"], t.fields, t.stream, t.component, t.task
('cow', 2, ('word', 'n'), 'default', 'split', 0)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

TICK_STREAM = "__tick"
"""Storm's system stream for tick tuples (``tup.is_tick``)."""


class TupleSource:
    """Stream, component, task and field names shared by every tuple of one batch."""

    __slots__ = ("component", "fields", "index", "stream", "task")

    def __init__(self, stream: str, component: str, task: int, fields: Sequence[str]) -> None:
        self.stream = stream
        self.component = component
        self.task = task
        self.fields = tuple(fields)
        self.index = {name: i for i, name in enumerate(self.fields)}


class Tuple:
    """One row a bolt processes: ``values`` plus where it came from.

    ``meta`` is the runtime's own (acking ids); users never set it.
    """

    __slots__ = ("meta", "source", "values")

    def __init__(self, values: list[Any], source: TupleSource, meta: Any = None) -> None:
        self.values = values
        self.source = source
        self.meta = meta

    def __getitem__(self, key: int | str) -> Any:
        if key.__class__ is str:
            try:
                return self.values[self.source.index[key]]  # type: ignore[index]
            except KeyError:
                raise KeyError(
                    f"stream '{self.source.stream}' of '{self.source.component}' has no field "
                    f"{key!r}; its fields are {list(self.source.fields)}"
                ) from None
        return self.values[key]  # type: ignore[index]

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values)

    def get(self, name: str, default: Any = None) -> Any:
        i = self.source.index.get(name)
        return default if i is None or i >= len(self.values) else self.values[i]

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self.source.fields, self.values, strict=False))

    @property
    def stream(self) -> str:
        return self.source.stream

    @property
    def component(self) -> str:
        return self.source.component

    @property
    def task(self) -> int:
        return self.source.task

    @property
    def fields(self) -> tuple[str, ...]:
        return self.source.fields

    @property
    def is_tick(self) -> bool:
        return self.source.stream == TICK_STREAM

    def __repr__(self) -> str:
        return f"Tuple({self.values!r}, stream={self.stream!r}, from={self.component}[{self.task}])"


class Batch:
    """The rows of one stream from one upstream task, as ``process_batch`` receives them.

    >>> b = Batch([["a"], ["b"]], TupleSource("default", "split", 1, ("word",)))
    >>> len(b), b.values[1], b.component, b.task
    (2, ['b'], 'split', 1)
    """

    __slots__ = ("meta", "source", "values")

    def __init__(self, values: list[list[Any]], source: TupleSource, meta: Any = None) -> None:
        self.values = values
        self.source = source
        self.meta = meta

    def __len__(self) -> int:
        return len(self.values)

    def tuples(self) -> Iterator[Tuple]:
        """Each row as a :class:`Tuple`."""
        source, meta = self.source, self.meta
        if meta is None:
            for row in self.values:
                yield Tuple(row, source)
        else:
            for row, m in zip(self.values, meta, strict=True):
                yield Tuple(row, source, m)

    @property
    def stream(self) -> str:
        return self.source.stream

    @property
    def component(self) -> str:
        return self.source.component

    @property
    def task(self) -> int:
        return self.source.task

    @property
    def fields(self) -> tuple[str, ...]:
        return self.source.fields
