"""Which head a flow bolt's first step gets (see :mod:`rayflow.streams.keyed`,
:mod:`rayflow.streams.windows` and :mod:`rayflow.streams.joins`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rayflow.api.components import Context
from rayflow.streams.async_map import AsyncHead
from rayflow.streams.joins import IntervalJoinHead
from rayflow.streams.keyed import FinalHead, Head, MapStateHead, ProcessHead, ReduceHead
from rayflow.streams.nodes import ASYNC, KEYED
from rayflow.streams.pipeline import Step, build
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
    """The head for a component's first step (its ``next`` steps are fused after it)."""
    if step.kind not in HEADS:  # it runs its own step, and what is fused after it
        head = Head(step, bolt, context)
        head.downstream = build(list(bolt.program.steps), 0, bolt.outputs)
        return head
    return HEADS[step.kind](step, bolt, context)
