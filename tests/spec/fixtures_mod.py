"""Tiny duck-typed spouts, bolts and groupings for the YAML loader tests."""

from __future__ import annotations

from typing import Any


class WordSpout:
    """A spout on the default stream with one field."""

    outputs = ["word"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def next_tuple(self) -> None:
        return None


class MultiSpout:
    """A spout with two streams."""

    outputs = {"default": ["word"], "errors": ["error", "code"]}

    def next_tuple(self) -> None:
        return None


class CountBolt:
    """A bolt that emits (word, count)."""

    outputs = ["word", "count"]

    def process(self, values: Any) -> None:
        return None


class SinkBolt:
    """A bolt without outputs."""

    def process(self, values: Any) -> None:
        return None


class StringOutputsSpout:
    """Wrong: outputs is a string, not a list."""

    outputs = "word"

    def next_tuple(self) -> None:
        return None


class NumberOutputsBolt:
    """Wrong: outputs is a number."""

    outputs = 5

    def process(self, values: Any) -> None:
        return None


class ModGrouping:
    """A custom grouping."""

    def __init__(self, modulo: int = 1) -> None:
        self.modulo = modulo

    def choose_tasks(self, values: Any, num_tasks: int) -> list[int]:
        return [hash(values[0]) % num_tasks]


class Plain:
    """Neither a spout nor a bolt nor a grouping."""


class FileSpout:
    """A spout whose constructor takes a path and an optional mode (for argument binding)."""

    outputs = ["line"]

    def __init__(self, path: str, mode: str = "r") -> None:
        self.path = path
        self.mode = mode

    def next_tuple(self) -> None:
        return None
