"""Opening the store a component's ``state.backend`` names (:mod:`rayflow.state.stores`).

>>> open_store(StoreSettings(), "demo/count.0").empty
True
"""

from __future__ import annotations

from rayflow.spec.state_settings import StoreSettings
from rayflow.state.rocksdb import RocksStore
from rayflow.state.stores import MemoryStore, Store


def open_store(settings: StoreSettings, owner: str) -> Store:
    """The store ``settings`` ask for; ``owner`` (``topology/component.task``) names the task's
    RocksDB folder."""
    if settings.backend == "rocksdb":
        return RocksStore(settings, owner)
    return MemoryStore()
