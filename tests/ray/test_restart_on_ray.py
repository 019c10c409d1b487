"""The job's restart strategy on a real local Ray: isolated failures spread over time are
survived for ever (``restart.reset-after``), a crash loop fails the job with a clear error, and
the waits grow as ``exponential-delay`` says."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from rayflow import TaskError
from rayflow.testing import Pause
from tests.exactly_once import WORDS, RaisingCount, counting, events, run_deployment
from tests.reliability import killing_tasks, pipeline

pytestmark = pytest.mark.ray


def test_ten_deaths_spread_over_time_are_survived(ray_session: str) -> None:
    """``task.restarts: 1`` would end the job at its second failure, but every death comes after
    more than ``restart.reset-after`` without one, so the count starts afresh each time."""
    from rayflow.launchers import embedded

    n = 6_000
    items = [x for i in range(n) for x in ((i, Pause(0.2)) if i % 20 == 19 else (i,))]
    config = {
        "message.timeout": "3s",
        "task.restarts": 1,
        "restart.delay": "50ms",
        "restart.reset-after": "800ms",  # each kill 1.2 s after the last death was counted
    }
    topology = pipeline(n, config, fail_rate=0, raise_rate=0, items=items)
    with killing_tasks({"fail", "raise", "sink"}, max_kills=10, every=1.0, apart=1.2) as kills:
        result = embedded.run_topology(topology.build())
    assert len(kills) == 10, f"only {len(kills)} kills happened before the run ended"
    assert result.ended == "finished"
    acked = Counter(msg for (msg,) in result.outputs["numbers"])
    messages = [i for i, item in enumerate(items) if not isinstance(item, Pause)]
    assert acked == Counter(messages), "every message acked exactly once despite the kills"


def test_a_task_that_dies_while_it_is_restarted_is_restarted_again(ray_session: str) -> None:
    """The new actor of a restarted task is killed before it is wired: that is one more
    failure of the task (restarted again after the strategy's delay), not the job's end."""
    import ray

    from rayflow.launchers import embedded
    from rayflow.runtime.driver.deploy import RayDeployment

    n = 2_000
    items = [x for i in range(n) for x in ((i, Pause(0.05)) if i % 50 == 49 else (i,))]
    config = {"message.timeout": "3s", "restart.delay": "50ms"}
    topology = pipeline(n, config, fail_rate=0, raise_rate=0, items=items)
    original = RayDeployment._connect_task
    killed_new: list[tuple[str, int]] = []

    def connect_after_a_death(self: RayDeployment, key: tuple[str, int]) -> object:
        if self.restarts.get(key) == 1 and not killed_new:  # the first replacement of a task
            killed_new.append(key)
            ray.kill(self.actors[key], no_restart=True)
        return original(self, key)

    RayDeployment._connect_task = connect_after_a_death  # type: ignore[method-assign]
    try:
        with killing_tasks({"raise"}, max_kills=1) as kills:
            result = embedded.run_topology(topology.build())
    finally:
        RayDeployment._connect_task = original  # type: ignore[method-assign]
    assert kills and killed_new == kills, "the killed task's first replacement was killed too"
    assert result.ended == "finished"
    acked = Counter(msg for (msg,) in result.outputs["numbers"])
    messages = [i for i, item in enumerate(items) if not isinstance(item, Pause)]
    assert acked == Counter(messages), "every message acked exactly once"


def test_a_crash_loop_fails_the_job_with_a_clear_error(ray_session: str, tmp_path: Path) -> None:
    """A tuple that raises every time under exactly-once: each recovery replays it, the waits
    grow (0.1 s, then 0.2 s), and the third failure without a stable period ends the job."""
    from rayflow.runtime.driver.deploy import RayDeployment

    config = {"task.restarts": 2, "restart.delay": "100ms", "restart.backoff": 2}
    count = (RaisingCount, {"word": WORDS[3]})
    spec = counting(str(tmp_path), events(300, 50, 0.02), [], 1, config, count).build()
    deployment = RayDeployment(spec)
    deployment.start()
    try:
        with pytest.raises(TaskError) as caught:
            run_deployment(deployment, timeout=120)
    finally:
        deployment.kill()
    message = str(caught.value)
    assert "the job fails: 3 failures with no 10min without one (task.restarts: 2)" in message
    assert "w3 breaks every time" in message and "RaisingCount.process" in message
    assert [f["delay"] for f in deployment.failures] == [0.1, 0.2, None]
    assert deployment.recoveries == 2
    described = deployment.strategy.describe(0)
    assert described["strategy"] == "exponential-delay" and described["next_delay"] is None
