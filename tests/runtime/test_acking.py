"""At-least-once on the in-process host: nothing lost, timeouts, max pending, poison messages."""

from __future__ import annotations

from collections import Counter

from rayflow import Bolt, Topology, Tuple, testing
from rayflow.runtime.acking.acker import FAILED, TAG_BITS, AckerCore
from rayflow.runtime.acking.tracker import pieces_of, tags_of
from rayflow.testing import ListSink
from tests.reliability import (
    DoubleBatch,
    FewRetries,
    NeverAcks,
    Numbers,
    PairUp,
    TaggingValues,
    pipeline,
    timeout_topology,
)


def test_acker_completes_a_tree_whatever_order_the_xors_arrive_in() -> None:
    acker, root = AckerCore(), 1 << TAG_BITS
    acker.update(root, 0b0110, spout=-1)  # a bolt's ack before the spout's init
    assert acker.completions == {}
    acker.update(root, 0b0011, spout=-1)
    acker.update(root, 0b0101, spout=3)
    assert acker.completions == {3: ([root], [])} and not acker.pending


def test_acker_reports_failed_tuples_with_their_complete_root() -> None:
    acker, root = AckerCore(), 9 << TAG_BITS
    acker.update(root | 4, 0, spout=FAILED)  # the tag of the root's fifth tuple
    acker.update(root, 0b1, spout=0)
    assert acker.completions == {}, "the rest of the tree is still on its way"
    acker.update(root, 0b1, spout=-1)
    assert acker.completions == {0: ([root], [root | 4])}


def test_nothing_is_lost_when_bolts_fail_and_raise() -> None:
    n = 500
    result = testing.run(pipeline(n))
    acked = Counter(msg for (msg,) in result.outputs["numbers"])
    assert acked == Counter(range(n)), "every message acked exactly once at its spout"
    seen = {n for (n,) in result.outputs["sink"]}
    assert seen == set(range(n)), "the sink saw every message at least once"
    assert result.counter("numbers", "failed") > 0, "some trees failed and were replayed"
    failed_in_bolts = result.counter("fail", "failed") + result.counter("raise", "failed")
    assert result.counter("numbers", "failed") == failed_in_bolts, (
        "a failing tuple fails its own message only, not the others of its spout round"
    )
    assert result.outputs["dead"] == []


def test_a_tuple_slower_than_the_message_timeout_is_failed_and_replayed() -> None:
    t = timeout_topology()
    result = testing.run(t)
    assert sorted(msg for (msg,) in result.outputs["numbers"]) == list(range(8))
    assert result.counter("numbers", "failed") >= 1
    assert Counter(n for (n,) in result.outputs["sink"])[3] == 2, "3 was replayed once"


def test_max_spout_pending_bounds_the_trees_in_flight() -> None:
    result = testing.run(pipeline(300, {"max.spout.pending": 5}, fail_rate=0, raise_rate=0))
    assert sorted(msg for (msg,) in result.outputs["numbers"]) == list(range(300))
    assert max(task["pending_peak"] for task in result.tasks["numbers"]) <= 5


def test_a_poison_message_reaches_the_dead_letter_stream_and_the_rest_flows_on() -> None:
    result = testing.run(pipeline(100, poison=42, fail_rate=0, raise_rate=0, spout=FewRetries))
    assert result.outputs["dead"] == [(42, [42], 3)]  # first try + max_retries (2) replays
    assert sorted(n for (n,) in result.outputs["sink"]) == [n for n in range(100) if n != 42]
    assert sorted(msg for (msg,) in result.outputs["numbers"]) == [n for n in range(100) if n != 42]


def test_several_ackers_share_the_trees() -> None:
    n = 400
    # A root holds a spout round's messages (up to 4096): with few rounds, few roots, and an
    # acker may draw none of them. At most 8 pending messages makes at least 50 roots, so each
    # of 3 ackers is left out with a chance of (2/3)^50 (1e-9).
    result = testing.run(pipeline(n, {"ackers": 3, "max.spout.pending": 8}))
    assert Counter(msg for (msg,) in result.outputs["numbers"]) == Counter(range(n))
    assert {n for (n,) in result.outputs["sink"]} == set(range(n))
    assert result.counter("numbers", "failed") > 0
    assert all(task["counters"]["executed"] > 0 for task in result.tasks["__acker"])


def pairs_topology(n: int, fail_every: int = 0) -> Topology:
    t = Topology("pairs", config={"reliability": "at_least_once", "batch.size": 16})
    t.spout("numbers", Numbers, kwargs={"items": list(range(n)), "collect_acks": True})
    t.bolt("pair", PairUp, kwargs={"fail_every": fail_every}).shuffle("numbers")
    t.bolt("sink", ListSink).shuffle("pair")
    return t


def test_a_tuple_anchored_to_two_trees_completes_both() -> None:
    n = 200
    result = testing.run(pairs_topology(n))
    assert sorted(msg for (msg,) in result.outputs["numbers"]) == list(range(n))
    assert sum(s for (s,) in result.outputs["sink"]) == sum(range(n))
    assert result.counter("numbers", "failed") == 0


def test_a_failed_join_fails_both_of_its_trees_and_both_are_replayed() -> None:
    n = 200
    result = testing.run(pairs_topology(n, fail_every=7))
    assert Counter(msg for (msg,) in result.outputs["numbers"]) == Counter(range(n))
    assert result.counter("numbers", "failed") >= 2 * (n // 2 // 7)


def test_process_batch_takes_the_batch_as_one_unit() -> None:
    n = 300
    t = Topology("batches", config={"reliability": "at_least_once", "batch.size": 32})
    t.spout("numbers", Numbers, kwargs={"items": list(range(n)), "collect_acks": True})
    t.bolt("double", DoubleBatch, kwargs={"poison_once": 7}).shuffle("numbers")
    t.bolt("sink", ListSink).shuffle("double")
    result = testing.run(t)
    assert sorted(msg for (msg,) in result.outputs["numbers"]) == list(range(n))
    seen = Counter(x for (x,) in result.outputs["sink"])
    assert set(seen) == {2 * i for i in range(n)}
    failed = result.counter("numbers", "failed")
    assert 1 < failed <= 32, "the batch that raised failed as a whole, and only it"
    assert failed == result.counter("double", "failed")


def test_a_tuple_that_keeps_timing_out_fails_alone_after_its_first_round() -> None:
    t = Topology("stuck", config={"reliability": "at_least_once", "message.timeout": "1s"})
    t.spout("numbers", FewRetries, kwargs={"items": list(range(20)), "collect_acks": True})
    t.bolt("hold", NeverAcks, kwargs={"stuck": 5}).shuffle("numbers")
    t.bolt("sink", ListSink).shuffle("hold")
    t.bolt("dead", ListSink).shuffle("numbers", stream="dead")
    result = testing.run(t)
    assert result.outputs["dead"] == [(5, [5], 3)]
    assert sorted(msg for (msg,) in result.outputs["numbers"]) == [n for n in range(20) if n != 5]
    # 5's round timed out as a whole (up to 20 failures: all 20 are emitted in one round unless
    # the machine stalls); then 5 alone, twice more. No other message failed twice.
    assert 3 <= result.counter("numbers", "failed") <= 20 + 2


def test_a_batch_bolts_emit_many_into_a_fields_grouping_keeps_every_tree() -> None:
    """``emit_many`` under at-least-once into a fields grouping (the keyed route's own loop,
    runs kept per target task): every tree completes, the failed batch is replayed, each row
    reaches the task of its key, with deliveries reordered and duplicated."""
    n = 300
    t = Topology("batches-keyed", config={"reliability": "at_least_once", "batch.size": 32})
    t.spout("numbers", Numbers, kwargs={"items": list(range(n)), "collect_acks": True})
    t.bolt("double", DoubleBatch, kwargs={"poison_once": 7}).shuffle("numbers")
    t.bolt("tag", TaggingValues, parallelism=3).fields("double", "n")
    t.bolt("sink", ListSink).shuffle("tag")
    result = testing.run(t, chaos=5)
    assert sorted(msg for (msg,) in result.outputs["numbers"]) == list(range(n))
    seen = Counter(x for (x, _task) in result.outputs["sink"])
    assert set(seen) == {2 * i for i in range(n)}
    tasks_of: dict[int, set[int]] = {}
    for x, task in result.outputs["sink"]:
        tasks_of.setdefault(x, set()).add(task)
    assert all(len(tasks) == 1 for tasks in tasks_of.values())
    assert len({task for tasks in tasks_of.values() for task in tasks}) == 3
    assert 1 < result.counter("numbers", "failed") <= 32


class MarkSizes(Bolt):
    """Forwards each number with how many pieces (tags or ranges of tags) its mark holds."""

    outputs = ["n", "pieces", "tags"]

    def process(self, tup: Tuple) -> None:
        self.emit([tup[0], len(pieces_of(tup.meta)), len(tags_of(tup.meta))])


def test_what_a_batch_bolt_emits_carries_a_range_of_tags_not_one_tag_per_input() -> None:
    """A ``process_batch`` anchors its rows to every tuple of its batch: the mark that travels
    with them is a range of consecutive tags, whatever the batch's size, and every message of
    the batch is still acked on its own."""
    n, size = 256, 64
    t = Topology("ranges", config={"reliability": "at_least_once", "batch.size": size})
    t.spout("numbers", Numbers, kwargs={"items": list(range(n)), "collect_acks": True})
    t.bolt("double", DoubleBatch).shuffle("numbers")
    t.bolt("sizes", MarkSizes).shuffle("double")
    t.bolt("sink", ListSink).shuffle("sizes")
    result = testing.run(t)
    assert sorted(msg for (msg,) in result.outputs["numbers"]) == list(range(n))
    rows = result.outputs["sink"]
    assert sorted(x for x, _p, _t in rows) == [2 * i for i in range(n)]
    assert max(tags for _x, _p, tags in rows) > 1, "rows are anchored to whole batches"
    assert max(pieces for _x, pieces, _t in rows) <= 2, "a batch of one round is one range"
