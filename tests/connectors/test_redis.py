"""The Redis stream spout and the Redis bolts against a real redis-server."""

from __future__ import annotations

import uuid

import redis

from rayflow import Bolt, Topology, Tuple
from rayflow.connectors.redis import RedisHashBolt, RedisStreamBolt, RedisStreamSpout
from rayflow.testing import ListSink, run

AT_LEAST_ONCE = {"reliability": "at_least_once", "message.timeout": "2s"}


class FailOdd(Bolt):
    """Fails every entry whose ``n`` is odd, ``times`` times in all; forwards the rest."""

    outputs = ["n"]
    auto_ack = False
    failed: dict[str, int] = {}

    def __init__(self, times: int = 1) -> None:
        self.times = times
        self.seen: dict[str, int] = {}

    def process(self, tup: Tuple) -> None:
        n = int(tup["fields"]["n"])
        tries = self.seen[tup["id"]] = self.seen.get(tup["id"], 0) + 1
        if n % 2 and tries <= self.times:
            self.fail(tup)
            return
        self.emit([n], anchors=[tup])
        self.ack(tup)


def fill(client: redis.Redis, stream: str, n: int) -> list[str]:
    return [client.xadd(stream, {"n": i}).decode() for i in range(n)]


def topology(stream: str, group: str, url: str, times: int, **spout: object) -> Topology:
    t = Topology("redis-in")
    t.spout("entries", RedisStreamSpout, kwargs=dict(
        streams=stream, group=group, url=url, bounded=True, **spout))  # fmt: skip
    t.bolt("check", FailOdd, parallelism=2, kwargs={"times": times}).fields("entries", "id")
    t.bolt("sink", ListSink).shuffle("check")
    t.bolt("errors", ListSink).shuffle("entries", stream="errors")
    return t


def test_entries_are_acked_only_once_processed_and_failures_replay(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    stream, group = f"s-{uuid.uuid4().hex[:6]}", "g"
    fill(client, stream, 40)
    result = run(topology(stream, group, redis_url, times=1), overrides=AT_LEAST_ONCE)
    assert sorted(n for (n,) in result.outputs["sink"]) == list(range(40))
    assert result.counter("entries", "failed") == 20  # the odd ones, once each, then replayed
    assert client.xpending(stream, group)["pending"] == 0  # every entry XACKed


def test_entries_that_keep_failing_go_to_errors_then_are_acked(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    stream, group = f"s-{uuid.uuid4().hex[:6]}", "g"
    ids = fill(client, stream, 10)
    t = topology(stream, group, redis_url, times=99, max_retries=2)
    result = run(t, overrides=AT_LEAST_ONCE)
    assert sorted(n for (n,) in result.outputs["sink"]) == [0, 2, 4, 6, 8]
    dead = sorted(result.outputs["errors"], key=lambda row: row[1])
    assert [(row[1], row[2]["n"], row[3]) for row in dead] == [
        (ids[i], str(i), "failed 3 times") for i in (1, 3, 5, 7, 9)
    ]
    assert client.xpending(stream, group)["pending"] == 0


def test_pending_entries_of_a_crashed_consumer_are_reclaimed(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    stream, group = f"s-{uuid.uuid4().hex[:6]}", "g"
    fill(client, stream, 30)
    client.xgroup_create(stream, group, id="0")
    # a consumer that read ten entries and crashed before acknowledging them
    taken = client.xreadgroup(group, "crashed-task", {stream: ">"}, count=10)
    assert len(taken[0][1]) == 10
    assert client.xpending(stream, group)["pending"] == 10
    t = topology(stream, group, redis_url, times=0, claim_idle_ms=50)
    result = run(t, overrides=AT_LEAST_ONCE)
    assert sorted(n for (n,) in result.outputs["sink"]) == list(range(30))
    assert result.metric("entries", "redis_claimed") == 10
    assert client.xpending(stream, group)["pending"] == 0


def test_stream_and_hash_bolts_write_every_tuple(redis_url: str) -> None:
    from rayflow.testing import TestingSpout

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    out, prefix = f"out-{uuid.uuid4().hex[:6]}", f"count-{uuid.uuid4().hex[:6]}:"

    class Words(TestingSpout):
        outputs = ["word", "count"]

    t = Topology("redis-out")
    t.spout("words", Words, args=([["a", 1], ["b", 1], ["a", 2]],))
    t.bolt("stream", RedisStreamBolt, kwargs=dict(stream=out, url=redis_url)).global_("words")
    t.bolt("hash", RedisHashBolt, kwargs=dict(
        url=redis_url, key_field="word", value_field="count", key_prefix=prefix)
    ).fields("words", "word")  # fmt: skip
    run(t, overrides={"reliability": "at_least_once"})
    assert [fields for _, fields in client.xrange(out)] == [
        {"word": "a", "count": "1"}, {"word": "b", "count": "1"}, {"word": "a", "count": "2"}
    ]  # fmt: skip
    assert client.hgetall(f"{prefix}a") == {"value": "2"}
    assert client.hgetall(f"{prefix}b") == {"value": "1"}
