"""Kafka spout and bolt, on ``confluent-kafka`` (librdkafka): ``pip install 'rayflow[kafka]'``.

    spouts:
      - id: lines
        className: rayflow.connectors.kafka.KafkaSpout
        parallelism: 3
        kwargs: {topics: [sentences], bootstrap_servers: "127.0.0.1:9092", value_format: str}
    bolts:
      - id: out
        className: rayflow.connectors.kafka.KafkaBolt
        kwargs: {topic: counts, bootstrap_servers: "127.0.0.1:9092", value_format: json}

**Partitions** are spread over the spout's tasks deterministically (Flink's assigner: a topic's
partitions round-robin from a start task chosen by the topic's name), by ``assign``, never by the
consumer group's rebalancing, so a task always knows what it reads; new partitions (and, with a
``^regex`` topic, new topics) are found every ``partition_discovery_ms`` and read from the start.

**Offsets.** Under ``at_least_once`` every record is emitted with ``msg_id = (topic, partition,
offset)``; a failed tree replays the record (forever, as Storm's KafkaSpout does, or
``max_retries`` times and then to the ``errors`` stream),
and the offset committed to Kafka is the lowest one not yet acked, so a restart resumes without
gaps. Under ``none`` the consumed position is committed every ``commit_interval_ms``.

**Exactly-once.** Under ``exactly_once`` the spout's position per partition is in each checkpoint
(a restore seeks there; after a change of parallelism each task takes the positions of the
partitions it now reads) and is committed to Kafka when the checkpoint completes. The bolt
(:mod:`rayflow.connectors.kafka_sink`) writes each checkpoint's records in a transaction with a
marker; its module docstring says why that is exactly-once.

**Bad records** (a value or key the deserializer rejects) never stop the spout: they go to the
``errors`` stream as ``[topic, partition, offset, key, raw, error]``, tracked like any record.
"""

from __future__ import annotations

import logging
import re
import time
import zlib
from collections import deque
from collections.abc import Iterable
from typing import Any

from rayflow.api.components import Context, Spout
from rayflow.api.reliable import Replays
from rayflow.api.transactional import FINAL
from rayflow.connectors.kafka_client import Codec, decoder, encoder, kafka_module, retrying, same
from rayflow.connectors.kafka_sink import KafkaBolt
from rayflow.errors import ConfigError, RayflowError
from rayflow.spec.settings import Reliability

__all__ = ["KafkaBolt", "KafkaSpout", "assign_partitions", "decoder", "encoder"]

log = logging.getLogger("rayflow.kafka")
RECORD_FIELDS = ["topic", "partition", "offset", "key", "value", "timestamp", "headers"]
"""``timestamp`` in ms since the epoch; ``headers`` a list of ``(name, bytes)`` pairs, or None."""
ERROR_FIELDS = ["topic", "partition", "offset", "key", "raw", "error"]


def assign_partitions(
    partitions: Iterable[tuple[str, int]], task: int, tasks: int
) -> list[tuple[str, int]]:
    """The partitions task ``task`` of ``tasks`` reads: each topic's partitions round-robin from a
    start task fixed by the topic's name (a stable hash, the same in every process).

    >>> six = [("t", p) for p in range(6)]
    >>> [assign_partitions(six, i, 3) for i in range(3)]
    [[('t', 1), ('t', 4)], [('t', 2), ('t', 5)], [('t', 0), ('t', 3)]]
    """
    return sorted(
        (topic, p)
        for topic, p in partitions
        if (zlib.crc32(topic.encode()) % tasks + p) % tasks == task
    )


class _Offsets:
    """One partition's offsets in flight; the committable position is the lowest not yet done.

    >>> o = _Offsets(); o.add(5); o.add(6); o.add(7); o.done(6); o.position()
    >>> o.done(5); o.position()
    7
    """

    def __init__(self) -> None:
        self.emitted: deque[int] = deque()
        self.finished: set[int] = set()
        self.next: int | None = None

    def add(self, offset: int) -> None:
        self.emitted.append(offset)

    def done(self, offset: int) -> None:
        self.finished.add(offset)
        while self.emitted and self.emitted[0] in self.finished:
            first = self.emitted.popleft()
            self.finished.discard(first)
            self.next = first + 1

    def position(self) -> int | None:
        return self.next


class KafkaSpout(Spout):
    """Records of Kafka topics as ``[topic, partition, offset, key, value, timestamp, headers]``.

    ``start``: ``committed`` (the group's offsets, else earliest), ``earliest``, ``latest``, or
    a timestamp in ms. ``bounded=True`` reads up to the end offsets seen at start, then finishes
    (tests, backfills). ``consumer_config`` passes librdkafka settings through.
    """

    outputs = {"default": RECORD_FIELDS, "errors": ERROR_FIELDS}

    def __init__(
        self,
        topics: str | list[str],
        bootstrap_servers: str = "localhost:9092",
        group_id: str | None = None,
        start: str | int = "committed",
        key_format: str | Codec = "str",
        value_format: str | Codec = "str",
        bounded: bool = False,
        max_retries: int | None = None,
        poll_batch: int = 500,
        commit_interval_ms: int = 1000,
        partition_discovery_ms: int = 10000,
        consumer_config: dict[str, Any] | None = None,
    ) -> None:
        self.topics = [t.strip() for t in topics.split(",")] if isinstance(topics, str) else topics
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        if not (isinstance(start, int) or start in ("committed", "earliest", "latest")):
            raise ConfigError(
                f"start: expected committed, earliest, latest or a timestamp (ms), got {start!r}"
            )
        self.start = start
        self.decode_key, self.decode_value = decoder(key_format), decoder(value_format)
        self.bounded = bounded
        self.max_retries = max_retries
        self.poll_batch = poll_batch
        self.commit_interval = commit_interval_ms / 1000
        self.discovery_interval = partition_discovery_ms / 1000
        self.consumer_config = consumer_config or {}

    def open(self, context: Context) -> None:
        kafka = kafka_module()
        self.kafka = kafka
        self.task, self.tasks = context.task_index, context.parallelism
        self.reliable = context.reliability == Reliability.AT_LEAST_ONCE
        self.exactly_once = context.reliability == Reliability.EXACTLY_ONCE
        self.checkpointed: dict[int, dict[tuple[str, int], int]] = {}
        self.consumer = kafka.Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": self.group_id
                or f"rayflow-{context.topology_name}-{context.component_id}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                **self.consumer_config,
            }
        )
        self.assigned: set[tuple[str, int]] = set()
        self.offsets: dict[tuple[str, int], _Offsets] = {}
        self.book = Replays(
            self.max_retries
        )  # msg_id (topic, partition, offset) -> (stream, values)
        self.ends: dict[tuple[str, int], int] = {}  # bounded: where each partition stops
        self.reached: set[tuple[str, int]] = set()
        self.last_commit = self.last_discovery = time.monotonic()
        self.records = self.metrics.counter("kafka_records")
        self.bad_records = self.metrics.counter("kafka_bad_records")
        self.dead_letters = self.metrics.counter("kafka_dead_letters")
        self.lag = self.metrics.gauge("kafka_lag")
        try:
            self._discover(first=True)
        except BaseException:
            self.consumer.close()  # close() is not called when open() fails
            raise

    def next_tuple(self) -> None:
        now = time.monotonic()
        if not self.exactly_once and now - self.last_commit >= self.commit_interval:
            self._commit(asynchronous=True)
            self.last_commit = now
        if self.discovery_interval and now - self.last_discovery >= self.discovery_interval:
            self._discover()
            self.last_discovery = now
        for msg_id, (stream, values) in self.book.due(self.poll_batch):
            self.emit(values, msg_id=msg_id, stream=stream)
        self._records(self.consumer.consume(num_messages=self.poll_batch, timeout=0))
        if self.bounded and self.reached >= set(self.ends) and not self.book:
            self.finish()

    def ack(self, msg_id: Any) -> None:
        if self.book.done(msg_id):
            self.offsets[msg_id[:2]].done(msg_id[2])

    def fail(self, msg_id: Any) -> None:
        given_up = self.book.failed(msg_id)
        if given_up is None:
            return
        # Kept failing: to the errors stream, untracked, so the partition can move on.
        (stream, values), fails = given_up
        self.dead_letters.inc()
        topic, partition, offset = msg_id
        error = f"failed {fails} times" + (f" ({values[5]})" if stream == "errors" else "")
        self.emit([topic, partition, offset, values[3], repr(values), error], stream="errors")
        self.offsets[msg_id[:2]].done(offset)

    def close(self) -> None:
        consumer = getattr(self, "consumer", None)
        if consumer is not None:
            if not self.exactly_once:  # there, only complete checkpoints commit
                self._commit(asynchronous=False)
            consumer.close()
            self.closed = True

    # -------------------------------------------------------------- exactly-once
    def snapshot(self) -> dict[str, Any]:
        """The next offset to read of every partition this task reads."""
        positions = {}
        for (topic, partition), o in self.offsets.items():
            position = o.position()
            if position is None:  # nothing read from it yet: where the consumer stands
                tp = self.kafka.TopicPartition(topic, partition)
                found = self.consumer.position([tp])[0].offset
                position = found if found >= 0 else None
            if position is not None:
                positions[(topic, partition)] = position
        return {"positions": positions}

    def _snapshot_for(self, checkpoint_id: int) -> Any:
        snapshot = self.snapshot()
        self.checkpointed[checkpoint_id] = snapshot["positions"]
        return snapshot

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Commit the completed checkpoint's positions to Kafka (for lag and ``committed``)."""
        done = sorted(c for c in self.checkpointed if checkpoint_id == FINAL or c <= checkpoint_id)
        if not done or self.__dict__.get("closed"):
            return
        positions = self.checkpointed[done[-1]]
        for c in done:
            del self.checkpointed[c]
        offsets = [self.kafka.TopicPartition(t, p, o) for (t, p), o in positions.items()]
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            except self.kafka.KafkaException as exc:
                log.warning("kafka: commit after checkpoint %s failed: %s", checkpoint_id, exc)

    def restore(self, snapshot: dict[str, Any]) -> None:
        self._seek(snapshot["positions"])

    def restore_rescaled(self, snapshots: list[Any]) -> None:
        merged: dict[tuple[str, int], int] = {}
        for snapshot in snapshots:
            merged.update(snapshot["positions"])
        self._seek(merged)  # each task keeps the partitions it reads now

    def _seek(self, positions: dict[tuple[str, int], int]) -> None:
        kafka = self.kafka
        mine = {tp: offset for tp, offset in positions.items() if tp in self.assigned}
        if not mine:
            return
        self.consumer.incremental_unassign([kafka.TopicPartition(t, p) for t, p in mine])
        self.consumer.incremental_assign(
            [kafka.TopicPartition(t, p, offset) for (t, p), offset in mine.items()]
        )
        for tp, offset in mine.items():
            self.offsets[tp] = _Offsets()
            self.offsets[tp].next = offset
            if tp in self.ends:
                if offset >= self.ends[tp]:
                    self.reached.add(tp)
                else:
                    self.reached.discard(tp)

    def _records(self, messages: list[Any]) -> None:
        """Emit a batch of consumed records (the hot loop: locals, no per-record calls that
        can be hoisted)."""
        emit, reliable, ends, exactly_once = self.emit, self.reliable, self.ends, self.exactly_once
        decode_key = None if self.decode_key is same else self.decode_key
        decode_value = None if self.decode_value is same else self.decode_value
        track, offsets = self.book.track, self.offsets
        last: dict[tuple[str, int], int] = {}
        rows: list[list[Any]] = []  # untracked records, emitted together
        good = 0
        for message in messages:
            if message.error() is not None:
                self._kafka_error(message.error())
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if ends and not self._before_end(topic, partition, offset):
                continue
            if exactly_once and offset < (offsets[(topic, partition)].next or 0):
                continue  # fetched before a restore's seek, or delivered twice: emitted already
            key, value = message.key(), message.value()
            try:
                if decode_key is not None and key is not None:
                    key = decode_key(key)
                if decode_value is not None and value is not None:
                    value = decode_value(value)
            except Exception as exc:  # a bad record: to the errors stream, never a crash
                self.bad_records.inc()
                stream = "errors"
                error = f"{type(exc).__name__}: {exc}"
                values = [topic, partition, offset, message.key(), message.value(), error]
            else:
                good += 1
                stream = "default"
                values = [topic, partition, offset, key, value, message.timestamp()[1],
                          message.headers()]  # fmt: skip
            if reliable:
                msg_id = (topic, partition, offset)
                track(msg_id, (stream, values))
                offsets[(topic, partition)].add(offset)
                emit(values, msg_id=msg_id, stream=stream)
            elif stream == "default":
                last[(topic, partition)] = offset
                rows.append(values)
            else:
                last[(topic, partition)] = offset
                emit(values, stream=stream)
        if rows:
            self.emit_many(rows)
        for tp, offset in last.items():
            offsets[tp].next = offset + 1
        self.records.inc(good)

    def _before_end(self, topic: str, partition: int, offset: int) -> bool:
        """Bounded reading: note partitions that reached their end; False past it."""
        end = self.ends.get((topic, partition))
        if end is None:
            return True
        if offset >= end - 1:
            self.reached.add((topic, partition))
        return offset < end

    def _kafka_error(self, error: Any) -> None:
        if error.code() != self.kafka.KafkaError._PARTITION_EOF:
            log.warning("kafka: %s", error)

    def _commit(self, asynchronous: bool) -> None:
        kafka = self.kafka
        positions = [
            kafka.TopicPartition(topic, partition, o.position())
            for (topic, partition), o in self.offsets.items()
            if o.position() is not None
        ]
        if positions:
            try:
                self.consumer.commit(offsets=positions, asynchronous=asynchronous)
            except kafka.KafkaException as exc:
                log.warning("kafka: commit failed (retried at the next interval): %s", exc)
        lag = 0
        for (topic, partition), o in self.offsets.items():
            _low, high = self.consumer.get_watermark_offsets(
                kafka.TopicPartition(topic, partition), cached=True
            ) or (0, 0)
            if o.position() is not None and high >= 0:
                lag += max(0, high - o.position())
        self.lag.set(lag)

    def _discover(self, first: bool = False) -> None:
        """Find this task's partitions (new ones too) and start reading them."""
        kafka = self.kafka
        try:
            metadata = self.consumer.list_topics(timeout=10 if first else 2)
        except kafka.KafkaException as exc:
            if first:
                raise RayflowError(
                    f"cannot reach Kafka at {self.bootstrap_servers}: {exc}"
                ) from exc
            return
        patterns = [re.compile(t) for t in self.topics if t.startswith("^")]
        names = [t for t in self.topics if not t.startswith("^")]
        missing = [t for t in names if t not in metadata.topics]
        if first and missing:
            raise RayflowError(
                f"no such Kafka topic(s) {', '.join(missing)} at {self.bootstrap_servers}; "
                "create them first (kafka-topics.sh --create)"
            )
        found = [
            (topic, p)
            for topic, meta in metadata.topics.items()
            if topic in names or any(p.match(topic) for p in patterns)
            for p in meta.partitions
        ]
        mine = [
            tp for tp in assign_partitions(found, self.task, self.tasks) if tp not in self.assigned
        ]
        if not mine:
            return
        partitions = self._start_positions(mine, first)
        if self.bounded:
            for t in partitions:
                tp = (t.topic, t.partition)
                low, high = self.consumer.get_watermark_offsets(t, timeout=10)
                self.ends[tp] = high
                begin = {kafka.OFFSET_BEGINNING: low, kafka.OFFSET_END: high}.get(
                    t.offset, t.offset
                )
                if begin >= high:
                    self.reached.add(tp)
        for tp in mine:
            self.offsets[tp] = _Offsets()
        self.consumer.incremental_assign(partitions)
        self.assigned.update(mine)
        log.info("kafka task %d reads %s", self.task, ", ".join(f"{t}[{p}]" for t, p in mine))

    def _start_positions(self, mine: list[tuple[str, int]], first: bool) -> list[Any]:
        kafka = self.kafka
        tps = [kafka.TopicPartition(topic, partition) for topic, partition in mine]
        if not first:  # partitions that appeared while running: read them whole
            return [kafka.TopicPartition(t.topic, t.partition, kafka.OFFSET_BEGINNING) for t in tps]
        if self.start == "earliest":
            return [kafka.TopicPartition(t.topic, t.partition, kafka.OFFSET_BEGINNING) for t in tps]
        if self.start == "latest":
            return [kafka.TopicPartition(t.topic, t.partition, kafka.OFFSET_END) for t in tps]
        if isinstance(self.start, int):
            for t in tps:
                t.offset = self.start
            return retrying(lambda: self.consumer.offsets_for_times(tps, timeout=10), kafka)
        committed = retrying(lambda: self.consumer.committed(tps, timeout=10), kafka)
        return [
            t
            if t.offset >= 0
            else kafka.TopicPartition(t.topic, t.partition, kafka.OFFSET_BEGINNING)
            for t in committed
        ]
