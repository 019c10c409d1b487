"""A restarted job master finds a topology's detached task actors again by name, including a
generation it created but had not recorded when it died (on the session's local Ray)."""

from __future__ import annotations

import time

import pytest

from rayflow import Topology
from rayflow.runtime.driver.deploy import Lifetime, RayDeployment
from rayflow.testing import ListSink, Pause, TestingSpout

pytestmark = pytest.mark.ray


def test_attach_finds_recorded_and_unrecorded_generations(ray_session: str) -> None:
    t = Topology("attach-me")
    t.spout("src", TestingSpout, args=([Pause(600.0)],))
    t.bolt("sink", ListSink).shuffle("src")
    spec = t.build()
    lifetime = Lifetime("rayflow-tests")
    first = RayDeployment(spec, lifetime=lifetime)
    first.start()
    try:
        first.restart(("sink", 0))  # generation 1, as if the master died before saving it
        again = RayDeployment(spec, lifetime=lifetime, secret=first.secret)
        assert again.attach() == []
        assert again.restarts == {("sink", 0): 1}
        assert set(again.actors) == {("src", 0), ("sink", 0)}
        assert again.nodes == first.nodes and again.addresses == first.addresses
        deadline = time.monotonic() + 30
        while {s["component"] for s in again.stats()} != {"src", "sink"}:
            assert time.monotonic() < deadline, "the attached tasks did not answer"
            time.sleep(0.2)
        assert again.wait(timeout=0.1) is False, "both tasks still run"
    finally:
        first.kill()
