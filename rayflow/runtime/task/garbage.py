"""The cycle collector of a task's process: tuned for a data plane, and run while the task is
idle rather than in the middle of a batch.

Every tuple is a fresh list, and batches keep thousands alive at once, so with the default
threshold (700 allocations) the collector runs every few hundred tuples and walks the worker's
whole heap (Ray's included) each time it reaches the older generations: measured here, that was
most of a task's CPU. Freezing what exists at start and collecting the young generation every
50,000 allocations keeps cycles collected at a small fraction of the cost (:func:`tune`).

A young pass still walks every young object alive, some milliseconds when batches wait in the
inbox, and the tuples behind it wait that long: it set the word count's tail latency. So a task
with nothing to do runs the pass early (:func:`collect_while_idle`), once a quarter of the
threshold has accumulated (the young generation, or the middle one when it is due; full passes
are left to CPython's own rule); under load the task is seldom idle and the threshold applies as
before.

>>> collect_while_idle()  # not tuned (this process is no task actor): nothing to do
False
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
_tuned = False


def tune() -> None:
    """Freeze what exists now and raise the thresholds (once per task process)."""
    global _tuned
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
    _tuned = True


def collect_while_idle() -> bool:
    """The collector's next pass now, if it is a quarter of the way there (only in a tuned
    process: a test's process keeps its own collector); True if it ran."""
    if not _tuned or not gc.isenabled():
        return False
    counts, thresholds = gc.get_count(), gc.get_threshold()
    if counts[0] * 4 < thresholds[0] or counts[2] > thresholds[2]:
        # Too little yet, or a full pass may be due: CPython's own next pass decides that (it
        # waits until the long-lived objects grew by a quarter, which no caller can see).
        return False
    gc.collect(1 if counts[1] > thresholds[1] else 0)
    return True
