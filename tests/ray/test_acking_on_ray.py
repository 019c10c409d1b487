"""At-least-once on a real local Ray: nothing lost, max spout pending, the acker round trip."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.reliability import killing_tasks, pipeline

pytestmark = pytest.mark.ray


def test_nothing_is_lost_on_ray_when_bolts_fail_and_raise(ray_session: str) -> None:
    n = 2_000
    result = pipeline(n).run()
    acked = Counter(msg for (msg,) in result.outputs["numbers"])
    assert acked == Counter(range(n)), "every message acked exactly once at its spout"
    assert {n for (n,) in result.outputs["sink"]} == set(range(n))
    assert result.counter("numbers", "failed") > 0
    assert result.counter("fail", "acked") > 0 and result.counter("raise", "failed") > 0
    assert all(task["complete_latency_ms"] > 0 for task in result.tasks["numbers"])


def test_max_spout_pending_on_ray(ray_session: str) -> None:
    result = pipeline(500, {"max.spout.pending": 8}, fail_rate=0, raise_rate=0).run()
    assert sorted(msg for (msg,) in result.outputs["numbers"]) == list(range(500))
    assert max(task["pending_peak"] for task in result.tasks["numbers"]) <= 8


def test_nothing_is_lost_when_bolt_actors_are_killed(ray_session: str) -> None:
    """Chaos: kill a random bolt actor every second or so; every message is still acked."""
    from rayflow.launchers import embedded
    from rayflow.testing import Pause

    n = 6_000
    # Paced (about 8 s on any machine) so the kills land while messages still flow.
    items = [x for i in range(n) for x in ((i, Pause(0.025)) if i % 20 == 19 else (i,))]
    topology = pipeline(
        n,
        {"message.timeout": "3s", "max.spout.pending": 50},
        fail_rate=0.02,
        raise_rate=0.02,
        items=items,
    )
    with killing_tasks({"fail", "raise", "sink"}, max_kills=6) as kills:
        result = embedded.run_topology(topology.build())
    assert len(kills) >= 5, f"only {len(kills)} kills happened before the run ended"
    acked = Counter(msg for (msg,) in result.outputs["numbers"])
    messages = [i for i, item in enumerate(items) if not isinstance(item, Pause)]
    assert acked == Counter(messages), "every message acked exactly once despite the kills"
    seen = Counter(n for (n,) in result.outputs["sink"])
    assert set(seen) <= set(range(n))


def test_timeout_replay_and_dead_letters_on_ray(ray_session: str) -> None:
    from tests.reliability import FewRetries, timeout_topology

    t = timeout_topology()
    result = t.run()
    assert sorted(msg for (msg,) in result.outputs["numbers"]) == list(range(8))
    assert Counter(n for (n,) in result.outputs["sink"])[3] == 2, "3 timed out and was replayed"

    poisoned = pipeline(200, poison=42, fail_rate=0, raise_rate=0, spout=FewRetries).run()
    assert poisoned.outputs["dead"] == [(42, [42], 3)]
    assert sorted(n for (n,) in poisoned.outputs["sink"]) == [n for n in range(200) if n != 42]


def test_a_restarted_spout_gets_its_trees_acked(ray_session: str) -> None:
    """The ackers learn where a restarted spout task lives: its new trees complete (a spout
    without saved state starts over, so messages may be acked twice, never lost)."""
    from rayflow.launchers import embedded
    from rayflow.testing import Pause

    n = 2_000
    items = [x for i in range(n) for x in ((i, Pause(0.02)) if i % 20 == 19 else (i,))]
    topology = pipeline(
        n, {"message.timeout": "3s"}, fail_rate=0, raise_rate=0, items=items, spout_tasks=1
    )
    with killing_tasks({"numbers"}, max_kills=1) as kills:
        result = embedded.run_topology(topology.build(), duration=60)
    assert kills == [("numbers", 0)]
    assert result.ended == "finished", "the restarted spout's trees never completed"
    messages = {i for i, item in enumerate(items) if not isinstance(item, Pause)}
    assert {msg for (msg,) in result.outputs["numbers"]} == messages
