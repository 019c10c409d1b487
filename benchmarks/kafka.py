"""Kafka -> rayflow -> Kafka throughput against the Kafka client alone, in one run.

A real broker (scripts/kafka_broker.py) holds ``--messages`` records of ~100 bytes in a topic of
``--partitions`` partitions. Each variant copies them to a fresh output topic:

* ``client alone``: one process, a confluent-kafka Consumer and Producer in a loop (consume a
  batch, produce each record): the limit, with no stream processor in the way (best of three);
* ``rayflow``: ``KafkaSpout(bounded=True)`` -> ``KafkaBolt`` on an embedded Ray, parallelism 1
  and ``--partitions``, reliability ``none`` and ``at_least_once`` (offsets committed only for
  records Kafka confirmed written).

Every variant is timed the same way: messages / (last output record's timestamp - first output
record's timestamp), both stamped by the producer, so start-up (JVM, Ray, actors) is left out of
every figure alike; each variant's output must hold every input record.

    python -m benchmarks.kafka [--messages 300000] [--partitions 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from rayflow import Topology
from rayflow.connectors.kafka import KafkaBolt, KafkaSpout
from scripts.kafka_broker import KafkaBroker


@dataclass
class Measured:
    variant: str
    messages: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def create_topic(bootstrap: str, partitions: int) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def fill(bootstrap: str, topic: str, messages: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    payload = b"x" * 90
    for i in range(messages):
        while True:
            try:
                producer.produce(topic, payload + str(i).encode(), str(i).encode())
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)


def output_span(bootstrap: str, topic: str, expected: int, timeout: float = 120) -> float:
    """Seconds between the first and last record of ``topic``, once all ``expected`` are there."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"span-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    seen, first, last = set(), float("inf"), 0.0
    deadline = time.monotonic() + timeout
    while len(seen) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{topic}: only {len(seen)} of {expected} records arrived")
        for m in consumer.consume(10000, timeout=0.5):
            if m.error() is None:
                seen.add(m.key())
                stamp = m.timestamp()[1] / 1000
                first, last = min(first, stamp), max(last, stamp)
    consumer.close()
    return last - first


def client_alone(bootstrap: str, source: str, messages: int) -> Measured:
    from confluent_kafka import Consumer, Producer

    out = create_topic(bootstrap, 1)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"alone-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([source])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    copied = 0
    while copied < messages:
        for m in consumer.consume(500, timeout=0.5):
            if m.error() is None:
                while True:
                    try:
                        producer.produce(out, m.value(), m.key())
                        break
                    except BufferError:
                        producer.poll(0.05)
                copied += 1
        producer.poll(0)
    producer.flush(60)
    consumer.close()
    return Measured("client alone (1 process)", messages, output_span(bootstrap, out, messages))


def through_rayflow(
    bootstrap: str, source: str, messages: int, parallelism: int, reliability: str
) -> Measured:
    out = create_topic(bootstrap, max(1, parallelism))
    t = Topology(f"kafka-bench-{parallelism}-{reliability}")
    t.spout("in", KafkaSpout, parallelism=parallelism, kwargs=dict(
        topics=source, bootstrap_servers=bootstrap, bounded=True, key_format="bytes",
        value_format="bytes", start="earliest", group_id=f"rf-{uuid.uuid4().hex[:6]}"))  # fmt: skip
    t.bolt("out", KafkaBolt, parallelism=parallelism, kwargs=dict(
        topic=out, bootstrap_servers=bootstrap, key_format="bytes",
        value_format="bytes")).local_or_shuffle("in")  # fmt: skip
    t.run(overrides={"reliability": reliability, "max.spout.pending": 5000})
    variant = f"rayflow p={parallelism} {reliability}"
    return Measured(variant, messages, output_span(bootstrap, out, messages))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    with KafkaBroker() as broker:
        bootstrap = broker.bootstrap
        source = create_topic(bootstrap, args.partitions)
        print(f"broker {bootstrap}; writing {args.messages:,} records...", flush=True)
        fill(bootstrap, source, args.messages)
        # the limit: the best of three (the first run also warms the broker's page cache)
        alone = [client_alone(bootstrap, source, args.messages) for _ in range(3)]
        results = [max(alone, key=lambda m: m.per_s)]
        print(f"  {results[0].variant:<34} {results[0].per_s:>12,.0f} msg/s", flush=True)
        for parallelism in sorted({1, args.partitions}):
            for reliability in ("none", "at_least_once"):
                m = through_rayflow(bootstrap, source, args.messages, parallelism, reliability)
                results.append(m)
                print(
                    f"  {m.variant:<34} {m.per_s:>12,.0f} msg/s  "
                    f"{m.per_s / results[0].per_s:.2f}x of the client alone",
                    flush=True,
                )
    if args.json:
        rows: list[dict[str, Any]] = [{**asdict(m), "per_s": m.per_s} for m in results]
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
