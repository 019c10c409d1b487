"""Redis streams as a source (consumer groups, XACK on ack) and Redis as a sink (streams, hashes):
``pip install 'rayflow[redis]'``.

    spouts:
      - id: events
        className: rayflow.connectors.redis.RedisStreamSpout
        parallelism: 2
        kwargs: {url: "redis://127.0.0.1:6379/0", streams: [events], group: counters}
    bolts:
      - id: store
        className: rayflow.connectors.redis.RedisHashBolt
        kwargs: {url: "redis://127.0.0.1:6379/0", key_field: word, field_field: day,
                 value_field: count}

Every spout task is one consumer of the group (named ``<topology>-<component>-<task>``, so a
restarted task is the same consumer): it first re-reads the entries it had been given and not
acknowledged, then new ones (``>``). Under ``at_least_once`` an entry is XACKed only when its tree
completes, a failed one is replayed (forever, or ``max_retries`` times and then to the
``errors`` stream and XACKed), and entries another consumer left pending longer than
``claim_idle_ms`` (a crashed task, or one that is gone after a rescale) are claimed with
XAUTOCLAIM and processed here. Under ``none`` entries are read with NOACK.
"""

from __future__ import annotations

import time
from typing import Any

from rayflow.api.components import Bolt, Context, Spout
from rayflow.api.reliable import Replays
from rayflow.api.tuple import Batch, Tuple
from rayflow.errors import ConfigError, RayflowError
from rayflow.extras import require
from rayflow.spec.settings import Reliability

ENTRY_FIELDS = ["stream", "id", "fields"]
ERROR_FIELDS = ["stream", "id", "fields", "error"]


def _redis(url: str, decode: bool) -> Any:
    redis = require("redis", "redis", "the Redis connector")
    client = redis.Redis.from_url(url, decode_responses=decode)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RayflowError(f"cannot reach Redis at {url}: {exc}") from exc
    return client


class RedisStreamSpout(Spout):
    """Entries of Redis streams as ``[stream, id, fields]`` (``fields`` a dict), read by a
    consumer group.

    ``start`` is where a new group begins: ``0`` (the whole stream) or ``$`` (new entries only).
    ``bounded=True`` finishes once the streams have nothing more and the group has nothing
    unacknowledged.
    """

    outputs = {"default": ENTRY_FIELDS, "errors": ERROR_FIELDS}

    def __init__(
        self,
        streams: str | list[str],
        group: str,
        url: str = "redis://127.0.0.1:6379/0",
        start: str = "0",
        count: int = 500,
        claim_idle_ms: int = 30000,
        max_retries: int | None = None,
        decode: bool = True,
        bounded: bool = False,
    ) -> None:
        self.streams = [streams] if isinstance(streams, str) else list(streams)
        if not self.streams:
            raise ConfigError("RedisStreamSpout needs at least one stream")
        self.group, self.url, self.start = group, url, start
        self.count, self.claim_idle_ms = count, claim_idle_ms
        self.max_retries, self.decode, self.bounded = max_retries, decode, bounded

    def open(self, context: Context) -> None:
        redis = require("redis", "redis", "the Redis connector")
        self.client = _redis(self.url, self.decode)
        self.consumer = f"{context.topology_name}-{context.component_id}-{context.task_index}"
        self.reliable = context.reliability == Reliability.AT_LEAST_ONCE
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, self.group, id=self.start, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        # Entries this consumer was given before a restart come first ("0"), then new ones.
        self.cursor = dict.fromkeys(self.streams, "0")
        self.book = Replays(self.max_retries)  # msg_id (stream, entry id) -> values
        self.to_ack: dict[str, list[str]] = {}
        self.claim_every = max(self.claim_idle_ms / 1000 / 2, 0.1)
        self.last_claim = 0.0
        self.entries = self.metrics.counter("redis_entries")
        self.claimed = self.metrics.counter("redis_claimed")

    def next_tuple(self) -> None:
        self._flush_acks()
        for msg_id, values in self.book.due(self.count):
            self.emit(values, msg_id=msg_id)
        now = time.monotonic()
        claimed = 0
        if now - self.last_claim >= self.claim_every:
            self.last_claim = now
            claimed = self._claim()
        reading_new = all(c == ">" for c in self.cursor.values())
        read = self.client.xreadgroup(
            self.group, self.consumer, self.cursor, count=self.count, noack=not self.reliable
        )
        got = 0
        for stream, entries in read or ():
            name = stream if isinstance(stream, str) else stream.decode()
            if self.cursor[name] != ">":
                # Reading this consumer's own older entries: go on after the last one, then,
                # once there are none left, read new entries.
                self.cursor[name] = entries[-1][0] if entries else ">"
            got += self._emit_entries(name, entries)
        if self.bounded and reading_new and not got and not claimed and not self.book:
            self._flush_acks()
            # Done when the group holds nothing unacknowledged either (a crashed consumer's
            # entries are claimed here once they have been idle for claim_idle_ms).
            if all(self.client.xpending(s, self.group)["pending"] == 0 for s in self.streams):
                self.finish()

    def ack(self, msg_id: Any) -> None:
        if self.book.done(msg_id):
            self.to_ack.setdefault(msg_id[0], []).append(msg_id[1])

    def fail(self, msg_id: Any) -> None:
        given_up = self.book.failed(msg_id)
        if given_up is None:
            return
        (stream, entry_id, fields), fails = given_up
        self.emit([stream, entry_id, fields, f"failed {fails} times"], stream="errors")
        self.to_ack.setdefault(stream, []).append(entry_id)

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            self._flush_acks()
            self.client.close()

    def _emit_entries(self, stream: str, entries: list[Any]) -> int:
        emitted = 0
        for entry_id, fields in entries:
            if fields is None:  # deleted from the stream while pending: nothing to process
                self.to_ack.setdefault(stream, []).append(entry_id)
                continue
            values = [stream, entry_id, fields]
            if self.reliable:
                msg_id = (stream, entry_id)
                if msg_id in self.book:
                    continue  # already in flight here
                self.book.track(msg_id, values)
                self.emit(values, msg_id=msg_id)
            else:
                self.emit(values)
            emitted += 1
        self.entries.inc(emitted)
        return emitted

    def _claim(self) -> int:
        """Take over entries other consumers left pending too long."""
        claimed = 0
        for stream in self.streams:
            start = "0-0"
            while True:
                answer = self.client.xautoclaim(
                    stream, self.group, self.consumer, self.claim_idle_ms, start, count=self.count
                )
                start, entries = answer[0], answer[1]
                claimed += self._emit_entries(stream, entries)
                if start in ("0-0", b"0-0") or not entries:
                    break
        self.claimed.inc(claimed)
        return claimed

    def _flush_acks(self) -> None:
        if self.to_ack:
            pipe = self.client.pipeline(transaction=False)
            for stream, ids in self.to_ack.items():
                pipe.xack(stream, self.group, *ids)
            pipe.execute()
            self.to_ack = {}


class _RedisBolt(Bolt):
    """Writes each input batch in one pipeline; acks its tuples once Redis answered."""

    def __init__(self, url: str) -> None:
        self.url = url

    def prepare(self, context: Context) -> None:
        self.client = _redis(self.url, decode=False)
        self.written = self.metrics.counter("redis_written")

    def process(self, tup: Tuple) -> None:
        pipe = self.client.pipeline(transaction=False)
        self.write(pipe, tup.as_dict())
        pipe.execute()
        self.written.inc()

    def process_batch(self, batch: Batch) -> None:
        pipe = self.client.pipeline(transaction=False)
        fields = batch.fields
        for row in batch.values:
            self.write(pipe, dict(zip(fields, row, strict=True)))
        pipe.execute()  # raises on failure: under at-least-once the batch's tuples fail
        self.written.inc(len(batch.values))

    def write(self, pipe: Any, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        self.client.close()


class RedisStreamBolt(_RedisBolt):
    """XADD each tuple to ``stream`` (its fields, or only ``fields``), capped at ``maxlen``."""

    def __init__(
        self,
        stream: str,
        url: str = "redis://127.0.0.1:6379/0",
        fields: list[str] | None = None,
        maxlen: int | None = None,
    ) -> None:
        super().__init__(url)
        self.stream, self.fields, self.maxlen = stream, fields, maxlen

    def write(self, pipe: Any, row: dict[str, Any]) -> None:
        entry = {k: row[k] for k in self.fields} if self.fields else row
        pipe.xadd(self.stream, {k: _scalar(v) for k, v in entry.items()}, maxlen=self.maxlen,
                  approximate=True)  # fmt: skip


class RedisHashBolt(_RedisBolt):
    """HSET ``key_prefix + tuple[key_field]`` field ``tuple[field_field]`` (or the constant
    ``field``) to ``tuple[value_field]``: e.g. running counts by word."""

    def __init__(
        self,
        key_field: str,
        value_field: str,
        url: str = "redis://127.0.0.1:6379/0",
        field_field: str | None = None,
        field: str = "value",
        key_prefix: str = "",
    ) -> None:
        super().__init__(url)
        self.key_field, self.value_field = key_field, value_field
        self.field_field, self.field, self.key_prefix = field_field, field, key_prefix

    def write(self, pipe: Any, row: dict[str, Any]) -> None:
        name = row[self.field_field] if self.field_field else self.field
        pipe.hset(
            f"{self.key_prefix}{row[self.key_field]}", _scalar(name), _scalar(row[self.value_field])
        )


def _scalar(value: Any) -> Any:
    """What redis-py can write: bytes, str, int and float as they are, anything else as str."""
    return value if isinstance(value, bytes | str | int | float) else str(value)
