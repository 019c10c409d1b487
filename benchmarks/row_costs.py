"""What one row costs on the classic API's way, piece by piece: the floor under the word count.

Each line times one step over a batch of one-word rows (Storm's sentences split, 4096 rows as
in a full batch) with the runtime's own functions, best of ``--repeat``, in ns per row:
the split's ``[word]`` list, the fields route row by row (``emit``) and per batch
(``emit_many``), pickling and unpickling the batch (``rayflow.runtime.io.codec``), the count's
dict update, and freeing the rows. Run from the repository root::

    python -m benchmarks.row_costs [--repeat 300]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

from examples.wordcount import SENTENCES
from rayflow.runtime.io import codec
from rayflow.runtime.io.channels import OutputChannel
from rayflow.runtime.io.route import RouteStats
from rayflow.runtime.io.routing import make_route

ROWS = 4096


def best_ns_per_row(step: Callable[[], Any], rows: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - began)
    return best / rows * 1e9


def free_ns_per_row(words: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        batch = [[w] for w in words]
        began = time.perf_counter()
        del batch
        best = min(best, time.perf_counter() - began)
    return best / len(words) * 1e9


def route(grouping: str) -> Any:
    """A route to 2 tasks whose channels take every batch and drop it."""
    channels = [
        OutputChannel(("count", i), 1 << 30, lambda *message, on_done: None) for i in range(2)
    ]
    return make_route(grouping, "default", channels, ROWS, RouteStats(), key_indexes=(0,))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    repeat = parser.parse_args(argv).repeat
    words = [w for i in range(ROWS) for w in SENTENCES[i % len(SENTENCES)].split()][:ROWS]
    rows = [[w] for w in words]
    fields, shuffle = route("FIELDS"), route("SHUFFLE")
    for row in rows:  # the key cache warm, as in a running task
        fields.add(row)
    data = codec.dumps(rows)

    def per_row() -> None:
        add = fields.add
        for row in rows:
            add(row)

    def count() -> None:
        counts: dict[str, int] = {}
        for (word,) in rows:
            counts[word] = counts.get(word, 0) + 1

    gc.disable()  # the task actors collect rarely (runtime.task.garbage): leave the pauses out
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("the split's [word] list (user code)", lambda: [[w] for w in words]),
        ("fields routing, row by row (emit)", per_row),
        ("fields routing, per batch (emit_many)", lambda: fields.add_many(rows)),
        ("shuffle routing, per batch (emit_many)", lambda: shuffle.add_many(rows)),
        ("pickle the batch (codec.dumps)", lambda: codec.dumps(rows)),
        ("unpickle it (codec.loads)", lambda: codec.loads(data)),
        ("the count's dict update (user code)", count),
    ]
    print(f"ns per one-word row, batches of {ROWS} rows, best of {repeat}")
    for name, step in steps:
        print(f"  {name:42s} {best_ns_per_row(step, ROWS, repeat):6.1f}")
    print(f"  {'freeing the rows (a [word] list each)':42s} {free_ns_per_row(words, repeat):6.1f}")
    gc.enable()


if __name__ == "__main__":
    main()
