"""The Kafka bolt (sink): ``rayflow.connectors.kafka.KafkaBolt`` (re-exported there).

**Exactly-once.** Under ``exactly_once`` the bolt keeps the records of each checkpoint in the
checkpoint itself and writes them once it completes, in one
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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rayflow.api.components import Bolt, Context, Timer
from rayflow.api.transactional import FINAL
from rayflow.api.tuple import Batch, Tuple
from rayflow.connectors.kafka_client import Codec, encoder, kafka_module, retrying, same
from rayflow.errors import ConfigError
from rayflow.spec.settings import Reliability

log = logging.getLogger("rayflow.kafka")


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
        kafka = kafka_module()
        self.kafka = kafka
        self.exactly_once = context.reliability == Reliability.EXACTLY_ONCE
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
            retrying(lambda: self.producer.init_transactions(self.flush_timeout), kafka)
        self.reliable = context.reliability == Reliability.AT_LEAST_ONCE
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
        return value if value is None or encode is same else encode(value)

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
            found = retrying(lambda: consumer.committed([tp], timeout=10), self.kafka)[0].offset
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
