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
partitions it now reads) and is committed to Kafka when the checkpoint completes. The bolt keeps
the records of each checkpoint in the checkpoint itself and writes them once it completes, in one
Kafka transaction together with a *marker*: the checkpoint id committed as the offset of
``marker_topic``'s partition 0 for a consumer group named after the topology's checkpoint lineage,
the component and the task that staged them (``send_offsets_to_transaction``). A retry after a
crash reads the marker first and skips what is already there: a crash before the commit leaves
an aborted transaction (fenced by the same ``transactional.id``) and the records are written
again; a crash after it leaves the marker, and nothing is written twice. Readers use
``isolation.level: read_committed``.

Why that is exactly-once: records reach Kafka only for complete checkpoints, so a recovery (to
the latest complete one) never has to take back what was written: input after it is replayed,
and what it produced is staged again under new checkpoints. The records of a complete checkpoint
are in its snapshot, so they survive any crash until written; they are written atomically with
their marker, and markers only grow (checkpoint ids keep growing, also across runs resumed from
a savepoint), so "marker >= N" means exactly "checkpoint N's records are in Kafka". Kafka's
transactions cannot be resumed after a crash (``init_transactions`` aborts them), which is why
the records wait in the checkpoint rather than in an open transaction.

**Bad records** (a value or key the deserializer rejects) never stop the spout: they go to the
``errors`` stream as ``[topic, partition, offset, key, raw, error]``, tracked like any record.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from rayflow.api.components import Bolt, Context, Spout, Timer
from rayflow.api.reliable import Replays
from rayflow.api.transactional import FINAL
from rayflow.api.tuple import Batch, Tuple
from rayflow.errors import ConfigError, RayflowError
from rayflow.extras import require

log = logging.getLogger("rayflow.kafka")
RECORD_FIELDS = ["topic", "partition", "offset", "key", "value", "timestamp", "headers"]
"""``timestamp`` in ms since the epoch; ``headers`` a list of ``(name, bytes)`` pairs, or None."""
ERROR_FIELDS = ["topic", "partition", "offset", "key", "raw", "error"]

Codec = Callable[[Any], Any]


def _kafka() -> Any:
    return require("confluent_kafka", "kafka", "the Kafka connector")


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


def decoder(kind: str | Codec) -> Codec:
    """``bytes``, ``str``, ``json``, or a callable / dotted path of one, applied to raw bytes.

    >>> decoder("json")(b'{"a": 1}')
    {'a': 1}
    """
    return _codec(kind, {"bytes": _same, "str": bytes.decode, "json": json.loads})


def encoder(kind: str | Codec) -> Codec:
    """``bytes``, ``str``, ``json``, or a callable / dotted path of one, giving bytes.

    >>> encoder("json")({"a": 1})
    b'{"a": 1}'
    """
    return _codec(
        kind,
        {
            "bytes": _same,
            "str": lambda v: str(v).encode(),
            "json": lambda v: json.dumps(v).encode(),
        },
    )


def _same(value: Any) -> Any:
    return value


def _codec(kind: str | Codec, named: dict[str, Codec]) -> Codec:
    if callable(kind):
        return kind
    if kind in named:
        return named[kind]
    module, _, name = str(kind).rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError):
        found = None
    if not callable(found):
        raise ConfigError(
            f"format {kind!r}: expected one of {', '.join(named)} or a function's dotted path"
        )
    return found


def _retrying(call: Callable[[], Any], kafka: Any, timeout: float = 60.0) -> Any:
    """``call()``, again while Kafka answers a retriable error (a new broker's group
    coordinator loading, a leader moving) for up to ``timeout`` seconds."""
    e = kafka.KafkaError
    transient = {e.NOT_COORDINATOR, e.COORDINATOR_LOAD_IN_PROGRESS, e.COORDINATOR_NOT_AVAILABLE,
                 e.LEADER_NOT_AVAILABLE, e._TIMED_OUT, e._TRANSPORT}  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except kafka.KafkaException as exc:
            error = exc.args[0] if exc.args else None
            again = error is not None and (error.retriable() or error.code() in transient)
            if not again or time.monotonic() > deadline:
                raise
            log.info("kafka: %s; retrying", error)
            time.sleep(0.2)


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
        kafka = _kafka()
        self.kafka = kafka
        self.task, self.tasks = context.task_index, context.parallelism
        self.reliable = context.config.get("reliability") == "at_least_once"
        self.exactly_once = context.config.get("reliability") == "exactly_once"
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
        decode_key = None if self.decode_key is _same else self.decode_key
        decode_value = None if self.decode_value is _same else self.decode_value
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
            return _retrying(lambda: self.consumer.offsets_for_times(tps, timeout=10), kafka)
        committed = _retrying(lambda: self.consumer.committed(tps, timeout=10), kafka)
        return [
            t
            if t.offset >= 0
            else kafka.TopicPartition(t.topic, t.partition, kafka.OFFSET_BEGINNING)
            for t in committed
        ]


class KafkaBolt(Bolt):
    """Writes each tuple to Kafka: ``value_field`` (and ``key_field`` when present) serialized
    with ``value_format``/``key_format``, to ``topic`` or the topic in ``topic_field``.

    Under ``at_least_once`` a tuple is acked only when Kafka confirmed the write (failed, and
    replayed, when it could not be written). ``producer_config`` passes librdkafka settings.
    """

    auto_ack = False

    def __init__(
        self,
        topic: str | None = None,
        bootstrap_servers: str = "localhost:9092",
        topic_field: str | None = None,
        key_field: str | None = "key",
        value_field: str = "value",
        key_format: str | Codec = "str",
        value_format: str | Codec = "str",
        flush_timeout: float = 30.0,
        producer_config: dict[str, Any] | None = None,
        marker_topic: str = "__rayflow_sink_markers",
    ) -> None:
        if not topic and not topic_field:
            raise ConfigError("KafkaBolt needs topic (or topic_field: the field naming the topic)")
        self.topic, self.topic_field = topic, topic_field
        self.bootstrap_servers = bootstrap_servers
        self.key_field, self.value_field = key_field, value_field
        self.encode_key, self.encode_value = encoder(key_format), encoder(value_format)
        self.flush_timeout = flush_timeout
        self.producer_config = producer_config or {}
        self.marker_topic = marker_topic

    def prepare(self, context: Context) -> None:
        kafka = _kafka()
        self.kafka = kafka
        self.exactly_once = context.config.get("reliability") == "exactly_once"
        transactional = {}
        if self.exactly_once:
            self.lineage = context.config.get("checkpoint.lineage", context.topology_name)
            self.component, self.task = context.component_id, context.task_index
            self.tasks = context.parallelism
            transactional = {"transactional.id": self._group(self.task)}
            self.staged: list[tuple[str, Any, Any]] = []
            self.pending: dict[int, tuple[int, list[tuple[str, Any, Any]]]] = {}
            self.markers: dict[int, int] = {}  # staging task -> last checkpoint written
            self.last_checkpoint = 0
            self._ensure_marker_topic()
        self.producer = kafka.Producer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "linger.ms": 5,
                "enable.idempotence": True,
                **transactional,
                **self.producer_config,
            }
        )
        if self.exactly_once:  # fences a crashed predecessor and aborts what it left open
            _retrying(lambda: self.producer.init_transactions(self.flush_timeout), kafka)
        self.reliable = context.config.get("reliability") == "at_least_once"
        self.written = self.metrics.counter("kafka_written")
        self.write_errors = self.metrics.counter("kafka_write_errors")
        self._poll_timer()

    def process(self, tup: Tuple) -> None:
        value = tup[self.value_field]
        key = tup[self.key_field] if self.key_field and self.key_field in tup.fields else None
        topic = tup[self.topic_field] if self.topic_field else self.topic
        if self.exactly_once:  # written once its checkpoint completes
            self.staged.append((topic, self._encode(key, self.encode_key),
                                self._encode(value, self.encode_value)))  # fmt: skip
            return
        callback = (lambda err, _msg, t=tup: self._delivered(t, err)) if self.reliable else None
        self._produce(topic, value, key, callback)
        if not self.reliable:
            self.written.inc()
            self.ack(tup)
        self.producer.poll(0)

    def process_batch(self, batch: Batch) -> None:
        if self.reliable or self.exactly_once:  # acked when confirmed / staged per checkpoint
            for tup in batch.tuples():
                self.process(tup)
            return
        index = batch.source.index
        value_at = index[self.value_field]
        key_at = index.get(self.key_field) if self.key_field else None
        topic_at = index[self.topic_field] if self.topic_field else None
        produce = self._produce
        for row in batch.values:
            topic = self.topic if topic_at is None else row[topic_at]
            produce(topic, row[value_at], None if key_at is None else row[key_at])
        self.written.inc(len(batch.values))
        self.producer.poll(0)

    def on_timer(self, timer: Timer) -> None:
        self.producer.poll(0)
        self._poll_timer()

    def cleanup(self) -> None:
        if self.exactly_once:
            return  # what is staged is written by the final checkpoint
        left = self.producer.flush(self.flush_timeout)
        if left:
            log.warning("kafka: %d records not confirmed after %gs", left, self.flush_timeout)

    # -------------------------------------------------------------- exactly-once
    def _group(self, task: int) -> str:
        """The consumer group (and transactional id) of the records staged by ``task``."""
        return f"rayflow-{self.lineage}-{self.component}-{task}"

    @staticmethod
    def _encode(value: Any, encode: Codec) -> Any:
        return value if value is None or encode is _same else encode(value)

    def _snapshot_for(self, checkpoint_id: int) -> Any:
        if checkpoint_id == FINAL:  # after every numbered one: keeps the markers increasing
            checkpoint_id = self.last_checkpoint + 1
        self.last_checkpoint = max(self.last_checkpoint, checkpoint_id)
        if self.staged:
            self.pending[checkpoint_id] = (self.task, self.staged)
            self.staged = []
        return {"pending": dict(self.pending), "last": self.last_checkpoint}

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        for number in sorted(self.pending):
            if checkpoint_id == FINAL or number <= checkpoint_id:
                staging_task, records = self.pending.pop(number)
                self._write(number, staging_task, records)

    def restore(self, snapshot: Any) -> None:
        """The restored checkpoint is complete: write what it staged, unless a marker says a
        predecessor did."""
        self._write_restored([snapshot], mine=lambda _task: True)

    def restore_rescaled(self, snapshots: list[Any]) -> None:
        # each old task's staged records go to exactly one new task
        self._write_restored(snapshots, mine=lambda task: task % self.tasks == self.task)

    def _write_restored(self, snapshots: list[Any], mine: Callable[[int], bool]) -> None:
        # The final checkpoint's id follows the last one seen, also after a restore.
        self.last_checkpoint = max(snapshot["last"] for snapshot in snapshots)
        pending = {
            (number, task): records
            for snapshot in snapshots
            for number, (task, records) in snapshot["pending"].items()
            if mine(task)
        }
        for (number, task), records in sorted(pending.items()):
            self._write(number, task, records)

    def _write(self, checkpoint_id: int, staging_task: int, records: list) -> None:
        """One transaction: the records and the marker ``checkpoint_id`` (skipped when the
        marker shows it was written before a crash)."""
        kafka = self.kafka
        if self._marker(staging_task) >= checkpoint_id:
            return
        self.producer.begin_transaction()
        for topic, key, value in records:
            self._produce(topic, value, key, encoded=True)
        marker = kafka.TopicPartition(self.marker_topic, 0, checkpoint_id)
        self.producer.send_offsets_to_transaction(
            [marker], self._group_metadata(staging_task), self.flush_timeout
        )
        self.producer.commit_transaction(self.flush_timeout)
        self.markers[staging_task] = checkpoint_id
        self.written.inc(len(records))

    def _marker(self, staging_task: int) -> int:
        """The last checkpoint whose records ``staging_task``'s group has written (-1: none)."""
        if staging_task not in self.markers:
            consumer = self._marker_consumer(staging_task)
            tp = self.kafka.TopicPartition(self.marker_topic, 0)
            found = _retrying(lambda: consumer.committed([tp], timeout=10), self.kafka)[0].offset
            self.markers[staging_task] = found if found >= 0 else -1
        return self.markers[staging_task]

    def _marker_consumer(self, staging_task: int) -> Any:
        consumers = self.__dict__.setdefault("_marker_consumers", {})
        if staging_task not in consumers:
            consumers[staging_task] = self.kafka.Consumer(
                {"bootstrap.servers": self.bootstrap_servers,
                 "group.id": self._group(staging_task), "enable.auto.commit": False}
            )  # fmt: skip
        return consumers[staging_task]

    def _group_metadata(self, staging_task: int) -> Any:
        return self._marker_consumer(staging_task).consumer_group_metadata()

    def _ensure_marker_topic(self) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        if self.marker_topic in admin.list_topics(timeout=10).topics:
            return
        future = admin.create_topics([NewTopic(self.marker_topic, 1)])[self.marker_topic]
        try:
            future.result(30)
        except self.kafka.KafkaException as exc:
            if exc.args[0].code() != self.kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def _produce(
        self, topic: str, value: Any, key: Any, callback: Any = None, encoded: bool = False
    ) -> None:
        if encoded:
            payload, raw_key = value, key
        else:
            payload = self._encode(value, self.encode_value)
            raw_key = self._encode(key, self.encode_key)
        while True:
            try:
                self.producer.produce(topic, payload, raw_key, on_delivery=callback)
                return
            except BufferError:  # librdkafka's queue is full: let it send, then retry
                self.producer.poll(0.05)

    def _poll_timer(self) -> None:
        # Delivery reports (acks) arrive through poll(); poll even while no input comes.
        self.register_timer(self.current_processing_time() + 100, event_time=False)

    def _delivered(self, tup: Tuple, error: Any) -> None:
        if error is None:
            self.written.inc()
            self.ack(tup)
        else:
            self.write_errors.inc()
            log.warning("kafka: write failed: %s", error)
            self.fail(tup)
