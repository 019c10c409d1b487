"""Word count from a Kafka topic to a Kafka topic (see kafka_wordcount.yaml).

Start a broker (``python scripts/kafka_broker.py run --port 9092``), create the topics, write some
sentences, run the topology, and read the running counts::

    rayflow run examples/kafka_wordcount.yaml -D KAFKA=127.0.0.1:9092
"""

from __future__ import annotations

from rayflow import Bolt, Context, Tuple


class SplitValue(Bolt):
    """One tuple per word of the record's value."""

    outputs = ["word"]

    def process(self, tup: Tuple) -> None:
        for word in tup["value"].split():
            self.emit([word])


class RunningCount(Bolt):
    """Emits ``[word, count]`` each time a word is seen: the latest record per key is the count
    (a compacted topic keeps just that)."""

    outputs = ["word", "count"]

    def prepare(self, context: Context) -> None:
        self.counts: dict[str, int] = {}

    def process(self, tup: Tuple) -> None:
        word = tup["word"]
        count = self.counts[word] = self.counts.get(word, 0) + 1
        self.emit([word, count])
