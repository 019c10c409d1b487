"""Print tuples: the sink of examples and quick experiments.

Printed lines go to the task's stdout, which Ray shows in the terminal of ``rayflow run``. With
``collect: true`` the rows are also kept and listed when the run ends.
"""

from __future__ import annotations

from typing import Any

from rayflow.api.components import Bolt, Context
from rayflow.api.tuple import Tuple


class PrintBolt(Bolt):
    """Prints each tuple's values, separated by ``separator``, after an optional ``prefix``."""

    outputs: list[str] = []

    def __init__(self, prefix: str = "", separator: str = " ", collect: bool = False) -> None:
        self.prefix = prefix
        self.separator = separator
        self.collect = collect
        self.rows: list[tuple[Any, ...]] = []

    def prepare(self, context: Context) -> None:
        self.rows = []

    def process(self, tup: Tuple) -> None:
        print(self.prefix + self.separator.join(str(v) for v in tup.values), flush=True)
        if self.collect:
            self.rows.append(tuple(tup.values))

    def collected_rows(self) -> list[tuple[Any, ...]] | None:
        return self.rows if self.collect else None
