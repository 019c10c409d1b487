"""The word count with the Streams API: split each sentence, key by word, count at the end.

    rayflow run examples/streams_wordcount.py          # the module's `flow`, on an embedded Ray
    rayflow validate examples/streams_wordcount.py     # its fused plan
    python -m examples.streams_wordcount

``flat_map`` and ``key_by`` run in the source's tasks, batch at a time (one component, no
``Tuple`` and no ``emit`` per word); ``count_final`` counts each batch before the keyed exchange,
so only a row per word and batch crosses between tasks.
"""

from __future__ import annotations

import heapq

from examples.wordcount import RandomSentenceSpout
from rayflow import Flow

flow = Flow("streams-wordcount")
counts = (
    flow.source(RandomSentenceSpout, parallelism=2, kwargs={"limit": 100_000})
    .flat_map(str.split)
    .key_by(lambda word: word)
    .count_final(name="counts")
)
counts.collect("top")


if __name__ == "__main__":
    result = flow.run()
    for word, count in heapq.nlargest(10, result.outputs["top"], key=lambda kv: kv[1]):
        print(f"{word:>10} {count}")
