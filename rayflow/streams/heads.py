"""Which head a flow bolt's first step gets (see :mod:`rayflow.streams.keyed`,
:mod:`rayflow.streams.windows` and :mod:`rayflow.streams.joins`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rayflow.api.components import Context
from rayflow.streams.async_map import AsyncHead
from rayflow.streams.joins import IntervalJoinHead
from rayflow.streams.keyed import FinalHead, Head, MapStateHead, ProcessHead, ReduceHead
from rayflow.streams.nodes import ASYNC, KEYED
from rayflow.streams.pipeline import Step, build, fan_out
from rayflow.streams.windows import WindowHead, WindowJoinHead

if TYPE_CHECKING:
    from rayflow.streams.operators import FlowBolt

HEADS: dict[str, type[Head]] = {
    "reduce": ReduceHead,
    "count_final": FinalHead,
    "reduce_final": FinalHead,
    "fold_final": FinalHead,
    "map_state": MapStateHead,
    "process": ProcessHead,
    "window": WindowHead,
    "window_join": WindowJoinHead,
    "interval_join": IntervalJoinHead,
    "map_async": AsyncHead,
}
assert set(HEADS) == KEYED | ASYNC


def make_head(step: Step, bolt: FlowBolt, context: Context) -> Head:
    """The head for a component's first step, wired to what is fused after it (a window's
    ``late()`` port apart)."""
    steps = list(bolt.program.steps)
    if step.kind not in HEADS:  # it runs its own step, and what is fused after it
        head = Head(step, bolt, context)
        head.downstream = build(steps, 0, bolt.outputs)
        return head
    head = HEADS[step.kind](step, bolt, context)
    late = [i for i in step.next if steps[i].params.get("which") == "late"]
    main = [i for i in step.next if i not in late]
    head.downstream = fan_out([build(steps, i, bolt.outputs) for i in main])
    if late:
        head.late = fan_out([build(steps, i, bolt.outputs) for i in late])
    return head
