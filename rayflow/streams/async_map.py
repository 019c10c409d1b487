"""``stream.map_async(coro_fn, concurrency=100, ordered=True, timeout=None)``: Flink's async
I/O for Python coroutines. A batch's items are awaited on the task's own event loop, up to
``concurrency`` at once (coroutines interleave only at their awaits, so user code still never
runs in two threads); the batch is done when every item is, and the task's loop takes its next
message only then: no result overtakes a barrier or a watermark that came after its input, a
checkpoint never holds a request in flight, and under at-least-once the inputs are acked once
their results are out. An item that raises, or outlasts ``timeout``, fails alone.

>>> import asyncio
>>> from rayflow import Flow, testing
>>> async def slow_double(n):
...     await asyncio.sleep(0.01 * (5 - n))  # the later ones finish first
...     return 2 * n
>>> flow = Flow("async")
>>> _ = flow.source(list(range(5))).map_async(slow_double).collect("doubled")
>>> testing.run(flow).outputs["doubled"]
[0, 2, 4, 6, 8]
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from rayflow.api.components import Context
from rayflow.streams.keyed import Head
from rayflow.streams.pipeline import OperatorError, Step, decode

if TYPE_CHECKING:
    from rayflow.streams.operators import FlowBolt


class AsyncHead(Head):
    """See the module docstring."""

    def __init__(self, step: Step, bolt: FlowBolt, context: Context) -> None:
        super().__init__(step, bolt, context)
        self.fn = step.fn
        self.concurrency = step.params["concurrency"]
        self.ordered = step.params["ordered"]
        self.timeout = step.params["timeout"]

    def on_rows(self, index: int, wire: str, rows: list[Any]) -> Any:
        items, tss, _keys = decode(wire, rows)
        return self.run(items, tss)

    async def run(self, items: list[Any], tss: list[Any] | None) -> None:
        gate = asyncio.Semaphore(self.concurrency)
        fn, timeout, step = self.fn, self.timeout, self.step

        async def one(i: int) -> tuple[int, Any]:
            async with gate:
                try:
                    if timeout is None:
                        return i, await fn(items[i])
                    return i, await asyncio.wait_for(fn(items[i]), timeout)
                except Exception as exc:
                    return i, OperatorError.of(step, exc)

        tasks = [asyncio.ensure_future(one(i)) for i in range(len(items))]
        done: list[tuple[int, Any]] = []
        try:
            if self.ordered:
                done = list(await asyncio.gather(*tasks))
            else:
                for finished in asyncio.as_completed(tasks):
                    done.append(await finished)
        finally:
            for task in tasks:
                task.cancel()  # those left when this one is cancelled (a stop, a reset)
        out, out_ts, origins = [], [] if tss is not None else None, []
        for i, result in done:
            if isinstance(result, OperatorError):
                self.failed(i, result)  # under exactly-once this raises: the job recovers
                continue
            out.append(result)
            if out_ts is not None:
                out_ts.append(tss[i])  # type: ignore[index]
            origins.append(i)
        if out:
            self.bolt.emit_items(out, out_ts, origins)
