"""``left.interval_join(right, lower, upper, fn)``: ``fn(l, r)`` for every right item of equal key
whose timestamp lies in ``[l.ts + lower, l.ts + upper]`` (Flink's ``between``, both ends
included), emitted as soon as both are there, at the later of the two timestamps. Each side keeps
its items (in keyed state) only as long as an item of the other side could still match: a left
until event time passes ``ts + upper``, a right until it passes ``ts - lower``. Items behind the
watermark (at or before it) are dropped and counted (``late_dropped``).

>>> from rayflow import Flow, testing
>>> flow = Flow("joins")
>>> clicks = flow.source([("u1", 1_000), ("u2", 5_000)]).with_timestamps(lambda c: c[1])
>>> views = flow.source([("u1", 1_500), ("u1", 9_000)]).with_timestamps(lambda v: v[1])
>>> joined = clicks.key_by(lambda c: c[0]).interval_join(
...     views.key_by(lambda v: v[0]), 0, "2s", lambda c, v: (c[0], v[1] - c[1]))
>>> _ = joined.collect("joined")
>>> testing.run(flow).outputs["joined"]
[('u1', 500)]
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rayflow.api.components import Context, Timer
from rayflow.streams.keyed import KeyedHead
from rayflow.streams.pipeline import Step

if TYPE_CHECKING:
    from rayflow.streams.operators import FlowBolt


class IntervalJoinHead(KeyedHead):
    """See the module docstring. Input 0 is the left stream, input 1 the right one."""

    def __init__(self, step: Step, bolt: FlowBolt, context: Context) -> None:
        super().__init__(step, bolt, context)
        self.lower, self.upper = step.params["lower"], step.params["upper"]
        # key index -> [(left timestamps, left items), (right ...)], each sorted by time
        self.table = self.state.table("interval_join")
        # when -> key indexes with items expiring then (one timer per time)
        self.expiring = self.state.due("interval_join", self.owned_groups(), self.timer_at)
        self.side = 0

    def on_rows(self, index: int, wire: str, rows: list[Any]) -> None:
        self.side = index
        super().on_rows(index, wire, rows)

    def take(self, items: list, tss: list | None, keys: list, wire: str) -> None:
        watermark = self.bolt.current_watermark()
        left = self.side == 0
        lower, upper, fn, put = self.lower, self.upper, self.fn, self.put
        dropped = 0
        for i, (key, item) in enumerate(zip(keys, items, strict=True)):
            ts = tss[i]  # type: ignore[index]
            if ts <= watermark:  # no item at or before the watermark follows it
                dropped += 1
                continue
            at = self.index(key)
            sides = self.table.get(at)
            if sides is None:
                sides = self.table[at] = [([], []), ([], [])]
            if left:
                low, high, (other_tss, others) = ts + lower, ts + upper, sides[1]
            else:
                low, high, (other_tss, others) = ts - upper, ts - lower, sides[0]
            # Each side's items are kept sorted by time: the matches are one slice of them.
            for j in range(bisect_left(other_tss, low), bisect_right(other_tss, high)):
                other_ts, other = other_tss[j], others[j]
                try:
                    joined = fn(item, other) if left else fn(other, item)
                except Exception as exc:
                    self.failed(i, exc)
                    continue
                put(joined, max(ts, other_ts), i)
            own_tss, own = sides[0 if left else 1]
            place = bisect_right(own_tss, ts)
            own_tss.insert(place, ts)
            own.insert(place, item)
            self.expire_at(at, ts + upper if left else ts - lower)
        if dropped:
            self.bolt.metrics.counter("late_dropped").inc(dropped)

    def expire_at(self, at: Any, when: int) -> None:
        self.expiring.add(at, when)

    def timer_at(self, when: int) -> None:
        self.bolt.register_timer(when, True, ("interval_join", when))

    def on_timer(self, timer: Timer) -> None:
        payload = timer.payload
        if not (isinstance(payload, tuple) and payload and payload[0] == "interval_join"):
            return
        when = payload[1]
        for at in self.expiring.keys(when):
            sides = self.table.get(at)
            if sides is None:
                continue
            # A left item matters until time passes ts + upper, a right one until ts - lower.
            for (tss, items), keep_after in ((sides[0], when - self.upper),
                                             (sides[1], when + self.lower)):  # fmt: skip
                gone = bisect_right(tss, keep_after)
                del tss[:gone], items[:gone]
            if not sides[0][0] and not sides[1][0]:
                del self.table[at]
            self.state.settle_some()
        self.expiring.drop(when)

    def resume_timers(self) -> None:
        def pairs() -> Iterator[tuple[Any, int]]:
            for at, ((left_tss, _), (right_tss, _)) in self.table.items():
                yield from ((at, ts + self.upper) for ts in left_tss)
                yield from ((at, ts - self.lower) for ts in right_tss)

        self.expiring.resume(pairs())
