"""Storm's word count: sentences -> split -> count (fields grouping) -> top words.

Run it with the YAML form (``rayflow run examples/wordcount.yaml``) or as a script::

    python -m examples.wordcount --duration 10s
"""

from __future__ import annotations

import argparse
import heapq
from typing import Any

from rayflow import Bolt, Context, Spout, Topology, Tuple
from rayflow.testing import ListSink

SENTENCES = [
    "the cow jumped over the moon",
    "an apple a day keeps the doctor away",
    "four score and seven years ago",
    "snow white and the seven dwarfs",
    "i am at two with nature",
]


class RandomSentenceSpout(Spout):
    """Emits Storm's five sentences in turn; ``limit`` sentences in all (None: forever)."""

    outputs = ["sentence"]

    def __init__(self, limit: int | None = None, sentences: list[str] | None = None) -> None:
        self.limit = limit
        self.sentences = sentences or SENTENCES

    def open(self, context: Context) -> None:
        n = context.parallelism
        # Task i emits sentences i, i+n, i+2n ... so any parallelism emits the same multiset.
        self.next_index = context.task_index
        self.step = n

    def next_tuple(self) -> None:
        i = self.next_index
        if self.limit is not None and i >= self.limit:
            self.finish()
            return
        self.emit([self.sentences[i % len(self.sentences)]])
        self.next_index = i + self.step

    # Exactly-once (examples/exactly_once.yaml): the spout's position is its whole state.
    def snapshot(self) -> int:
        return self.next_index

    def restore(self, snapshot: int) -> None:
        self.next_index = snapshot


class SplitSentence(Bolt):
    """One tuple per word."""

    outputs = ["word"]

    def process(self, tup: Tuple) -> None:
        for word in tup.values[0].split():
            self.emit([word])


class WordCount(Bolt):
    """Counts words; at the end of the stream emits each word with its total."""

    outputs = ["word", "count"]

    def prepare(self, context: Context) -> None:
        self.counts: dict[str, int] = {}

    def process(self, tup: Tuple) -> None:
        word = tup.values[0]
        self.counts[word] = self.counts.get(word, 0) + 1

    def cleanup(self) -> None:
        self.emit_many([[word, count] for word, count in self.counts.items()])


class TopWords(ListSink):
    """Collects the final counts and keeps the ``n`` most frequent words."""

    def __init__(self, n: int = 10) -> None:
        self.n = n

    def collected_rows(self) -> list[tuple[Any, ...]]:
        return heapq.nlargest(self.n, self.rows, key=lambda row: (row[1], row[0]))


def build(limit: int | None = None, parallelism: int = 2) -> Topology:
    """The same topology as ``examples/wordcount.yaml``."""
    t = Topology("wordcount")
    t.spout("sentences", RandomSentenceSpout, kwargs={"limit": limit})
    t.bolt("split", SplitSentence, parallelism=parallelism).shuffle("sentences")
    t.bolt("count", WordCount, parallelism=parallelism).fields("split", "word")
    t.bolt("top", TopWords).global_("count")
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    result = build(args.limit).run(duration=args.duration, progress=True)
    for word, count in result.outputs["top"]:
        print(f"{count:>10}  {word}")


if __name__ == "__main__":
    main()
