"""The task process's cycle collector: tuned thresholds, and the early pass while idle. Each
case runs in a fresh interpreter: tuning freezes and re-thresholds the whole process."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_an_idle_task_runs_the_young_pass_once_a_quarter_of_the_threshold_has_accumulated() -> None:
    out = _run(
        """
        import gc
        from rayflow.runtime.task import garbage
        assert not garbage.collect_while_idle()  # not tuned: the process keeps its collector
        garbage.tune()
        assert gc.get_threshold() == (garbage.YOUNG_THRESHOLD, 20, 20)
        kept = [[i] for i in range(garbage.YOUNG_THRESHOLD // 8)]
        early = garbage.collect_while_idle()  # an eighth: not yet
        kept += [[i] for i in range(garbage.YOUNG_THRESHOLD // 4)]
        before = gc.get_count()[0]
        ran = garbage.collect_while_idle()
        print(early, ran, before >= garbage.YOUNG_THRESHOLD // 4, gc.get_count()[0] < 100)
        """
    )
    assert out == "False True True True"


def test_the_idle_pass_collects_the_middle_generation_and_leaves_full_passes_to_cpython() -> None:
    out = _run(
        """
        import gc
        from rayflow.runtime.task import garbage
        garbage.tune()
        gc.set_threshold(100_000, 2, 2)  # no pass of CPython's own while this runs
        ours, theirs, idle = set(), set(), [False]
        gc.callbacks.append(
            lambda phase, info: phase == "stop"
            and (ours if idle[0] else theirs).add(info["generation"])
        )
        kept, skipped = [], 0
        for _ in range(16):
            kept += [[i] for i in range(30_000)]
            idle[0] = True
            skipped += not garbage.collect_while_idle()
            idle[0] = False
        print(sorted(ours), skipped > 0, 2 in theirs)
        """
    )
    # Young and middle passes while idle; once a full pass is due, none: CPython's own ran it.
    assert out == "[0, 1] True True"
