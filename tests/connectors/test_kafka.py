"""The Kafka spout and bolt against a real broker (scripts/kafka_broker.py)."""

from __future__ import annotations

import json
import os
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from rayflow import Topology
from rayflow.connectors.kafka import KafkaBolt, KafkaSpout, assign_partitions
from rayflow.errors import TaskError
from rayflow.testing import ListSink, run
from tests.connectors.kafka_parts import (
    SplitLine,
    add_partitions,
    committed,
    create_topic,
    produce,
    read_all,
)


def test_assignment_gives_every_partition_to_exactly_one_task() -> None:
    partitions = [(t, p) for t in ("a", "b", "clicks") for p in range(7)]
    for tasks in (1, 2, 3, 5):
        shares = [assign_partitions(partitions, i, tasks) for i in range(tasks)]
        assert sorted(tp for share in shares for tp in share) == sorted(partitions)
        assert max(map(len, shares)) - min(map(len, shares)) <= 3  # one per topic at most
    # growing a topic keeps every old partition where it was
    before = assign_partitions([("a", p) for p in range(6)], 1, 3)
    after = assign_partitions([("a", p) for p in range(9)], 1, 3)
    assert set(before) <= set(after)


def test_bad_records_go_to_the_errors_stream_and_nothing_is_lost(kafka: str) -> None:
    topic = create_topic(kafka, 2)
    good = [{"n": i} for i in range(200)]
    records = [(None, json.dumps(v).encode()) for v in good]
    records[50:50] = [(b"k1", b"{not json")]
    records[120:120] = [(None, b"\xff\xfe")]
    produce(kafka, topic, records, partition=0)
    produce(kafka, topic, [(None, b'{"n": 1000}')], partition=1)
    t = Topology("bad-records")
    t.spout("in", KafkaSpout, kwargs=dict(
        topics=[topic], bootstrap_servers=kafka, value_format="json", bounded=True,
        group_id=f"g-{topic}"))  # fmt: skip
    t.bolt("sink", ListSink).shuffle("in")
    t.bolt("errors", ListSink).shuffle("in", stream="errors")
    result = run(t, overrides={"reliability": "at_least_once"})
    values = sorted(row[4]["n"] for row in result.outputs["sink"])
    assert values == [*range(200), 1000]
    errors = sorted(result.outputs["errors"], key=lambda row: row[2])
    assert [(e[1], e[2], e[3], e[4]) for e in errors] == [
        (0, 50, b"k1", b"{not json"), (0, 120, None, b"\xff\xfe")
    ]  # fmt: skip
    assert errors[0][5].startswith("JSONDecodeError")
    # every record, the bad ones included, was acked: the group's offsets are at the end
    assert committed(kafka, f"g-{topic}", topic, 2) == {0: 202, 1: 1}
    assert result.counter("in", "acked") == 203
    assert result.metric("in", "kafka_bad_records") == 2


def test_a_missing_topic_is_named(kafka: str) -> None:
    t = Topology("missing")
    t.spout("in", KafkaSpout, kwargs=dict(topics=["nope-no-such"], bootstrap_servers=kafka))
    t.bolt("sink", ListSink).shuffle("in")
    with pytest.raises(TaskError, match=r"no such Kafka topic.*nope-no-such"):
        run(t)


@pytest.mark.ray
def test_kafka_to_kafka_at_least_once_survives_killed_task_actors(
    kafka: str, ray_session: str
) -> None:
    from rayflow.launchers import embedded
    from tests.reliability import killing_tasks

    source, sink = create_topic(kafka, 3, "lines"), create_topic(kafka, 2, "words")
    lines = [f"w{i % 7} x{i % 3} y z" for i in range(4000)]
    for p in range(3):
        produce(kafka, source, [(None, line.encode()) for line in lines[p::3]], partition=p)
    t = Topology("kafka-chaos")
    t.spout("lines", KafkaSpout, parallelism=3, kwargs=dict(
        topics=source, bootstrap_servers=kafka, bounded=True, group_id=f"g-{source}"))  # fmt: skip
    t.bolt("split", SplitLine, parallelism=2, kwargs={"delay_ms": 2}).shuffle("lines")
    t.bolt("out", KafkaBolt, parallelism=2, kwargs=dict(topic=sink, bootstrap_servers=kafka)
           ).shuffle("split")  # fmt: skip
    spec = t.build(
        {"reliability": "at_least_once", "message.timeout": "3s", "max.spout.pending": 200}
    )
    with killing_tasks({"split", "out"}, max_kills=4, every=1.0) as kills:
        result = embedded.run_topology(spec)
    assert len(kills) >= 3, f"only {len(kills)} kills happened before the run ended"
    expected = {f"{p}:{o}:{i}" for p in range(3) for o in range(len(lines[p::3])) for i in range(4)}
    written = read_all(kafka, sink, len(expected), keys=expected)
    keys = Counter(m.key().decode() for m in written)
    assert set(keys) == expected, f"{len(expected - set(keys))} words lost"
    assert committed(kafka, f"g-{source}", source, 3) == {p: len(lines[p::3]) for p in range(3)}
    assert result.counter("lines", "failed") > 0  # the kills did fail trees, which replayed
    assert result.metric("lines", "kafka_dead_letters") == 0


def test_kafka_to_kafka_exactly_once_despite_kills_and_crashes_around_the_commit(
    kafka: str, ray_session: str, tmp_path: Path
) -> None:
    """Kafka -> keyed running count -> Kafka under exactly-once, with task actors killed and the
    sink's process ending once between a checkpoint's completion and its transaction's commit
    and once right after a commit: a read_committed consumer sees every (word, count) once."""
    from rayflow.launchers import embedded
    from tests.connectors.kafka_parts import CountValues, CrashingKafkaBolt, read_committed
    from tests.reliability import killing_tasks

    source, sink = create_topic(kafka, 3, "words"), create_topic(kafka, 2, "counts")
    words = [f"w{(i * 7) % 11}" for i in range(3000)]
    for p in range(3):
        produce(kafka, source, [(None, w.encode()) for w in words[p::3]], partition=p)
    flags = tmp_path / "flags"
    flags.mkdir()
    t = Topology("kafka-exactly")
    t.spout("words", KafkaSpout, parallelism=2, kwargs=dict(
        topics=source, bootstrap_servers=kafka, bounded=True, start="earliest"))  # fmt: skip
    t.bolt("count", CountValues, parallelism=2, kwargs={"delay_ms": 3}).fields("words", "value")
    t.bolt("out", CrashingKafkaBolt, kwargs=dict(
        flags=str(flags), crash_before=2, crash_after=3, topic=sink, bootstrap_servers=kafka,
        key_field="word", value_field="count", marker_topic=f"markers-{sink}")
    ).shuffle("count")  # fmt: skip
    spec = t.build(
        {"reliability": "exactly_once", "checkpoint.interval": "300ms", "batch.size": 20,
         "checkpoint.storage": str(tmp_path / "checkpoints")}
    )  # fmt: skip
    with killing_tasks({"words", "count"}, max_kills=3, every=1.5) as kills:
        embedded.run_topology(spec)
    assert kills, "a task was killed"
    totals = Counter(words)
    expected = Counter((w, str(c)) for w, n in totals.items() for c in range(1, n + 1))
    assert Counter(read_committed(kafka, sink, len(words))) == expected
    assert sorted(os.listdir(flags)) == ["after", "before"], "the sink crashed both ways"


WHO_READS = """\
name: who-reads
spouts:
  - id: records
    className: rayflow.connectors.kafka.KafkaSpout
    parallelism: 3
    kwargs:
      topics: ${TOPIC}
      bootstrap_servers: ${KAFKA}
      start: earliest
      partition_discovery_ms: 500
bolts:
  - id: who
    className: whoreads.WhoReads
  - id: out
    className: rayflow.connectors.kafka.KafkaBolt
    kwargs: {topic: "${OUT}", bootstrap_servers: "${KAFKA}", key_field: null, value_format: json}
streams:
  - {from: records, to: who, grouping: {type: SHUFFLE}}
  - {from: who, to: out, grouping: {type: SHUFFLE}}
"""
WHO_MODULE = """\
from rayflow import Bolt


class WhoReads(Bolt):
    outputs = ["value"]

    def process(self, tup):
        self.emit([[tup["partition"], tup.task]])
"""


@pytest.mark.ray
def test_six_partitions_over_three_spout_tasks_and_new_ones_picked_up(
    kafka: str, two_nodes: str, tmp_path: Path
) -> None:
    """Submitted to the job master, as a YAML topology, until killed."""
    from tests.cluster import Cluster, free_port

    topic, out = create_topic(kafka, 6), create_topic(kafka, 1, "who")
    for p in range(6):
        produce(kafka, topic, [(None, b"x")] * 5, partition=p)
    (tmp_path / "whoreads.py").write_text(textwrap.dedent(WHO_MODULE))
    (tmp_path / "who.yaml").write_text(WHO_READS)
    c = Cluster(two_nodes, free_port("127.0.0.1"), tmp_path)
    defines = ["-D", f"TOPIC={topic}", "-D", f"KAFKA={kafka}", "-D", f"OUT={out}"]
    c.cli("submit", "who.yaml", *defines, "--ui-port", str(c.port))
    try:
        first = read_all(kafka, out, 30)
        readers = {tuple(json.loads(m.value())) for m in first}
        by_partition = {p: {t for q, t in readers if q == p} for p in range(6)}
        assert all(len(tasks) == 1 for tasks in by_partition.values()), by_partition
        assert Counter(next(iter(t)) for t in by_partition.values()) == {0: 2, 1: 2, 2: 2}
        add_partitions(kafka, topic, 9)
        for p in range(6, 9):
            produce(kafka, topic, [(None, b"new")] * 3, partition=p)
        later = read_all(kafka, out, 39)
        new = {tuple(json.loads(m.value())) for m in later} - readers
        assert {p for p, _ in new} == {6, 7, 8}
        for p, task in new:  # read by the task the assignment gives them
            assert (topic, p) in assign_partitions([(topic, q) for q in range(9)], task, 3)
    finally:
        c.cli("kill", "who-reads", "--wait", "0", check=False)
        c.cli("master", "--stop", check=False)


def test_the_kafka_wordcount_example(kafka: str) -> None:
    from rayflow.spec.yaml_loader import load_topology

    source, out = create_topic(kafka, 2, "sentences"), create_topic(kafka, 1, "counts")
    sentences = ["the cow jumped over the moon", "an apple a day", "the moon"] * 50
    produce(kafka, source, [(None, s.encode()) for s in sentences])
    spec = load_topology(
        "examples/kafka_wordcount.yaml",
        variables={"KAFKA": kafka, "IN": source, "OUT": out, "BOUNDED": "true"},
    )
    result = run(spec)
    assert result.counter("out", "acked") > 0
    expected = Counter(word for s in sentences for word in s.split())
    latest: dict[str, int] = {}
    for m in read_all(kafka, out, sum(expected.values())):  # one record per word seen
        latest[m.key().decode()] = max(latest.get(m.key().decode(), 0), int(m.value()))
    assert latest == dict(expected)
