"""The job master's registry of topologies, kept in Ray's GCS key-value store.

The store outlives the master's process, so a master that Ray restarts reads what it ran and finds
the topologies' detached task actors again.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field, replace
from typing import Any

from rayflow.spec.model import ClassRef, ComponentSpec, StreamSpec, TopologySpec

NAMESPACE = "rayflow"
_PREFIX = b"topology/"


@dataclass
class JobRecord:
    """What the master must remember about one submitted topology.

    >>> JobRecord("wc", None, {}, b"k").status
    'ACTIVE'
    """

    name: str
    spec: Any  # TopologySpec, without class objects (see portable_spec)
    runtime_env: dict[str, Any]
    secret: bytes
    generation: int = 0  # the first restart generation of its tasks (grows on rebalance)
    restarts: dict[tuple[str, int], int] = field(default_factory=dict)
    status: str = "ACTIVE"
    submitted_at: float = field(default_factory=time.time)
    source: str = ""
    restore_from: dict[str, Any] | None = None  # the savepoint it started from (metadata)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A record kept by an older master names the generation "epoch".
        if "epoch" in state:
            state["generation"] = state.pop("epoch")
        self.__dict__.update(state)


def portable_spec(spec: TopologySpec) -> TopologySpec:
    """``spec`` with classes by dotted path only, so the master can hold it without the user's
    code (the task actors import the classes, where the topology's package is installed).

    >>> from rayflow.spec.model import ComponentSpec
    >>> spec = TopologySpec("t", (ComponentSpec("s", "spout", ClassRef.of(dict)),), ())
    >>> portable_spec(spec).components[0].class_ref.cls is None
    True
    """

    def component(comp: ComponentSpec) -> ComponentSpec:
        return replace(comp, class_ref=ClassRef(comp.class_ref.path))

    def stream(s: StreamSpec) -> StreamSpec:
        grouping = s.grouping
        if grouping.custom is not None:
            grouping = replace(grouping, custom=ClassRef(grouping.custom.path), custom_object=None)
        return replace(s, grouping=grouping)

    return replace(
        spec,
        components=tuple(component(c) for c in spec.components),
        streams=tuple(stream(s) for s in spec.streams),
    )


class MemoryRegistry:
    """``JobRecord`` objects in this process only: ``rayflow run``'s own job master, whose
    topology ends with the process anyway.

    >>> r = MemoryRegistry(); r.put(JobRecord("wc", None, {}, b"k")); r.names()
    ['wc']
    """

    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}

    def put(self, record: JobRecord) -> None:
        self.records[record.name] = record

    def get(self, name: str) -> JobRecord | None:
        return self.records.get(name)

    def names(self) -> list[str]:
        return sorted(self.records)

    def delete(self, name: str) -> None:
        self.records.pop(name, None)


class Registry:
    """``JobRecord`` objects by topology name in the GCS key-value store (namespace rayflow)."""

    def __init__(self, namespace: str = NAMESPACE) -> None:
        from ray.experimental import internal_kv

        self.kv = internal_kv
        self.namespace = namespace

    def put(self, record: JobRecord) -> None:
        self.kv._internal_kv_put(
            _PREFIX + record.name.encode(),
            pickle.dumps(record),
            overwrite=True,
            namespace=self.namespace,
        )

    def get(self, name: str) -> JobRecord | None:
        data = self.kv._internal_kv_get(_PREFIX + name.encode(), namespace=self.namespace)
        return pickle.loads(data) if data else None

    def names(self) -> list[str]:
        keys = self.kv._internal_kv_list(_PREFIX, namespace=self.namespace)
        return sorted(k[len(_PREFIX) :].decode() for k in keys)

    def delete(self, name: str) -> None:
        self.kv._internal_kv_del(_PREFIX + name.encode(), namespace=self.namespace)
