"""Plan rewriting: the spec a host runs, made from the user's. Under at-least-once the acker
bolts and an ``__ack`` stream from every component are added; under exactly-once every spout is
checked to rewind and the checkpoint storage is resolved; a restore reads the task files of a
checkpoint that its task now owns.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rayflow.errors import TopologyError
from rayflow.runtime.acking.acker import ACK_FIELDS, ACK_STREAM, ACKER, AckerBolt
from rayflow.runtime.task.snapshots import rewindable, unrewindable
from rayflow.spec.model import ClassRef, ComponentSpec, Grouping, StreamSpec, TopologySpec
from rayflow.spec.settings import Reliability
from rayflow.state.storage import resolve_storage


def prepare_spec(spec: TopologySpec) -> TopologySpec:
    """The spec a host runs: with ackers added under at-least-once, and checked (every spout
    can rewind) and its checkpoint storage resolved under exactly-once."""
    if spec.settings.reliability == Reliability.EXACTLY_ONCE:
        return check_exactly_once(spec)
    if spec.settings.reliability == Reliability.AT_LEAST_ONCE:
        return with_ackers(spec, int(spec.config.get("ackers", 1)))
    return spec


def with_ackers(spec: TopologySpec, ackers: int = 1) -> TopologySpec:
    """The topology plus its acker bolts and an ``__ack`` stream from every component."""
    if any(c.id == ACKER for c in spec.components):
        return spec
    components = [
        dataclasses.replace(c, outputs={**c.outputs, ACK_STREAM: ACK_FIELDS})
        for c in spec.components
    ]
    acker = ComponentSpec(
        ACKER,
        "bolt",
        ClassRef.of(AckerBolt),
        parallelism=ackers,
        config={"tick.interval": max(1000, int(spec.settings.message_timeout * 1000))},
    )
    # One acker: every row to it; several: each task splits its acks by root (see _send).
    grouping = Grouping("GLOBAL") if ackers == 1 else Grouping("DIRECT")
    streams = [StreamSpec(c.id, ACKER, grouping, ACK_STREAM) for c in components]
    return TopologySpec(
        spec.name,
        (*components, acker),
        (*spec.streams, *streams),
        spec.settings,
        spec.config,
        spec.origin,
    )


def check_exactly_once(spec: TopologySpec) -> TopologySpec:
    """Refuse spouts that cannot rewind; resolve the checkpoint storage (on the submitting side,
    where ``$RAYFLOW_CHECKPOINT_STORAGE`` is set, so every task writes to the same place)."""
    for spout in spec.spouts:
        try:
            cls = spout.class_ref.load()
        except Exception:
            continue  # its code is not here (submitted as a package): its tasks check it
        if not rewindable(cls):
            raise TopologyError(unrewindable(spout.id, spout.class_ref.path))
    storage = resolve_storage(spec.settings.checkpoint_storage)
    return dataclasses.replace(
        spec, settings=dataclasses.replace(spec.settings, checkpoint_storage=storage)
    )


def restore_plan_for(
    metadata: dict[str, Any] | None, component: str, task: int, parallelism: int
) -> list[dict[str, Any]]:
    """The task files a task reads to restore from a checkpoint's ``metadata``: its own when its
    component's parallelism is unchanged, else every file of its component (the task keeps the
    key groups it now owns).

    >>> meta = {"tasks": {"count/0": {"file": "count-0.state"}, "count/1": {"file": "c-1"}},
    ...         "parallelism": {"count": 2}}
    >>> [i["file"] for i in restore_plan_for(meta, "count", 1, 2)]
    ['c-1']
    >>> len(restore_plan_for(meta, "count", 0, 3))
    2
    """
    if not metadata:
        return []
    old = metadata.get("parallelism", {}).get(component)
    if old is None:
        return []
    if old == parallelism:
        info = metadata["tasks"].get(f"{component}/{task}")
        return [info] if info else []
    return [metadata["tasks"][f"{component}/{i}"] for i in range(old)]
