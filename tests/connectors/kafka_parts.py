"""Kafka helpers and components for the connector tests (importable by task actors)."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from rayflow import Bolt, Context, Tuple
from rayflow.connectors.kafka import KafkaBolt


def create_topic(bootstrap: str, partitions: int, prefix: str = "t") -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def add_partitions(bootstrap: str, topic: str, total: int) -> None:
    from confluent_kafka.admin import AdminClient, NewPartitions

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_partitions([NewPartitions(topic, total)])[topic].result(30)


def produce(
    bootstrap: str, topic: str, records: list[tuple[Any, bytes]], partition: int = -1
) -> None:
    """``(key, value)`` records; an explicit ``partition`` or the key's."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key, partition=partition)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(30) == 0


def read_all(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout: float = 60.0,
    keys: set[str] | None = None,
) -> list[Any]:
    """The records of ``topic`` as confluent Messages: at least ``expected`` of them, and, with
    ``keys``, until every one of those keys was seen (at-least-once output has duplicates)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )  # fmt: skip
    consumer.subscribe([topic])
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    missing = set(keys or ())
    while (len(records) < expected or missing) and time.monotonic() < deadline:
        batch = [m for m in consumer.consume(500, timeout=0.5) if m.error() is None]
        records += batch
        missing -= {m.key().decode() for m in batch if m.key() is not None}
    consumer.close()
    return records


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
    consumer.close()
    return {t.partition: t.offset for t in found}


class SplitLine(Bolt):
    """``line`` -> one tuple per word, keyed ``partition:offset:position`` so every word of
    every input record is accounted for; ``delay_ms`` per record paces the run."""

    outputs = ["key", "value"]

    def __init__(self, delay_ms: float = 0.0) -> None:
        self.delay = delay_ms / 1000

    def process(self, tup: Tuple) -> None:
        if self.delay:
            time.sleep(self.delay)
        for i, word in enumerate(tup["value"].split()):
            self.emit([f"{tup['partition']}:{tup['offset']}:{i}", word])


class WhoReads(Bolt):
    """``[partition, spout task]`` of each record, for the assignment test."""

    outputs = ["partition", "task"]

    def prepare(self, context: Context) -> None:
        pass

    def process(self, tup: Tuple) -> None:
        self.emit([tup["partition"], tup.task])


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


class CountValues(Bolt):
    """Keyed running count of each record's ``value``: emits ``[word, count]``."""

    outputs = ["word", "count"]

    def __init__(self, delay_ms: float = 0.0) -> None:
        self.delay = delay_ms / 1000

    def process(self, tup: Tuple) -> None:
        if self.delay:
            time.sleep(self.delay)
        count = self.state.value("count", default=0)
        count.set(count.get() + 1)
        self.emit([tup["value"], count.get()])


def _once(flags: str, name: str) -> bool:
    """True the first time ``name`` is asked for in the folder ``flags`` (across processes)."""
    try:
        os.close(os.open(os.path.join(flags, name), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


class CrashingKafkaBolt(KafkaBolt):
    """A KafkaBolt whose process ends once between a checkpoint's completion and the commit of
    its transaction (records produced, not committed), and once right after a commit (before
    anything else could note it), at the first checkpoint at or after the given ids."""

    def __init__(self, flags: str, crash_before: int = 3, crash_after: int = 6, **kwargs: Any):
        super().__init__(**kwargs)
        self.flags, self.crash_before, self.crash_after = flags, crash_before, crash_after

    def _write(self, checkpoint_id: int, staging_task: int, records: list) -> None:
        fresh = records and self._marker(staging_task) < checkpoint_id
        if fresh and checkpoint_id >= self.crash_before and _once(self.flags, "before"):
            self.producer.begin_transaction()
            for topic, key, value in records:
                self._produce(topic, value, key, encoded=True)
            self.producer.flush(10)
            os._exit(1)  # produced, never committed
        super()._write(checkpoint_id, staging_task, records)
        if fresh and checkpoint_id >= self.crash_after and _once(self.flags, "after"):
            os._exit(1)  # committed with its marker; nothing after it ran


def read_committed(bootstrap: str, topic: str, expected: int, timeout: float = 90.0) -> list:
    """``(key, value)`` of ``topic`` as a read_committed consumer sees it: at least ``expected``
    records, then until nothing new arrives for 3 s (so duplicates would show)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False,
         "isolation.level": "read_committed"}
    )  # fmt: skip
    consumer.subscribe([topic])
    records: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        batch = [m for m in consumer.consume(500, timeout=0.5) if m.error() is None]
        records += [(m.key().decode(), m.value().decode()) for m in batch]
        if batch:
            quiet_since = time.monotonic()
        elif len(records) >= expected and time.monotonic() - quiet_since > 3:
            break
    consumer.close()
    return records
