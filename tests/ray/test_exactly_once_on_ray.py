"""Exactly-once on a real local Ray: chaos, savepoints with rescaling, corrupted checkpoints."""

from __future__ import annotations

import glob
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.exactly_once import (
    WORDS,
    FinalSnapshotFailsOnce,
    RaisingCount,
    committed_rows,
    counting,
    events,
    expected_rows,
    run_deployment,
)
from tests.reliability import killing_tasks

pytestmark = pytest.mark.ray


def test_exactly_once_output_despite_killed_tasks(ray_session: str, tmp_path: Path) -> None:
    """Kill random spout and bolt actors (also mid-checkpoint): the committed output still
    holds every (word, running count) exactly once, and barriers from a slow and a fast input
    were aligned."""
    from rayflow.launchers import embedded
    from rayflow.runtime.driver.deploy import RayDeployment

    fast = events(2400, 40, 0.12)
    slow = events(600, 10, 0.12)
    topology = counting(str(tmp_path), fast, slow, count_parallelism=3)
    deployments: list[RayDeployment] = []
    original = RayDeployment.start

    def remember(self: RayDeployment, *args: object, **kwargs: object) -> None:
        deployments.append(self)
        original(self, *args, **kwargs)

    RayDeployment.start = remember  # type: ignore[method-assign]
    try:
        with killing_tasks({"fast", "slow", "count", "sink"}, max_kills=6, every=1.0) as kills:
            embedded.run_topology(topology.build())
    finally:
        RayDeployment.start = original  # type: ignore[method-assign]
    assert len(kills) >= 5, f"only {len(kills)} kills happened before the run ended"
    assert committed_rows(str(tmp_path)) == expected_rows(fast, slow)
    assert not glob.glob(os.path.join(tmp_path, "files", ".*")), "no staged file left behind"
    stats = deployments[0].checkpoints.stats()  # type: ignore[union-attr]
    assert stats["completed"] >= 3
    completed = [c for c in stats["history"] if c["status"] == "COMPLETED"]
    assert any(c["align_ms"] > 0 for c in completed), "the count tasks aligned two inputs"
    (final,) = [c for c in completed if c.get("final")]  # its id was taken at the start...
    assert os.path.isfile(os.path.join(final["path"], "_metadata")), "...and it is kept"


def test_a_transient_raise_recovers_from_the_checkpoint_and_the_output_stays_exact(
    ray_session: str, tmp_path: Path
) -> None:
    """``process`` changes the key's state, then raises (once): the task fails and the job
    returns to the last checkpoint, so no count is skipped and none is doubled (before, the
    tuple was dropped while its state change was kept)."""
    flag = tmp_path / "raised"
    fast, slow = events(600, 40, 0.05), events(150, 10, 0.05)
    count = (RaisingCount, {"word": WORDS[3], "flag": str(flag)})
    deployment = _deployment(counting(str(tmp_path), fast, slow, 2, count=count).build())
    run_deployment(deployment)
    assert flag.exists(), "the fault happened"
    assert deployment.recoveries == 1  # type: ignore[attr-defined]
    (failure,) = deployment.failures  # type: ignore[attr-defined]
    assert "a transient fault at w3" in failure["error"]
    assert "RaisingCount.process" in failure["error"] and "Traceback" in failure["traceback"]
    assert committed_rows(str(tmp_path)) == expected_rows(fast, slow)


def test_a_failed_final_snapshot_recovers_and_the_run_ends_with_exact_output(
    ray_session: str, tmp_path: Path
) -> None:
    """A task's part of the final checkpoint fails (its snapshot raises at the end of the
    input): the job recovers from the last checkpoint and ends, instead of waiting for that
    part for ever, and the committed output stays exact."""
    flag = tmp_path / "failed"
    fast, slow = events(300, 40, 0.05), events(80, 10, 0.05)
    count = (FinalSnapshotFailsOnce, {"flag": str(flag)})
    deployment = _deployment(counting(str(tmp_path), fast, slow, 2, count=count).build())
    run_deployment(deployment)
    assert flag.exists(), "the fault happened"
    assert deployment.recoveries == 1  # type: ignore[attr-defined]
    (failure,) = deployment.failures  # type: ignore[attr-defined]
    assert "its final snapshot failed" in failure["error"] and "disk is full" in failure["error"]
    assert committed_rows(str(tmp_path)) == expected_rows(fast, slow)


def _deployment(spec: object, restore_from: dict | None = None) -> object:
    from rayflow.runtime.driver.deploy import RayDeployment

    deployment = RayDeployment(spec, restore_from=restore_from)  # type: ignore[arg-type]
    deployment.start()
    return deployment


@pytest.mark.parametrize(
    "before,after,backends", [(2, 3, ("rocksdb", "memory")), (3, 1, ("memory", "rocksdb"))]
)
def test_savepoint_then_resume_with_other_parallelism_and_backend(
    ray_session: str, tmp_path: Path, before: int, after: int, backends: tuple[str, str]
) -> None:
    """Take a savepoint mid-run, stop, resume from it with the count's parallelism and state
    backend changed: the keyed state moves with its key groups and the output equals an
    uninterrupted run."""
    fast, slow = events(1500, 50, 0.1), events(300, 10, 0.1)

    def config(backend: str) -> dict[str, Any]:
        # only the savepoint: nothing commits after it
        return {"checkpoint.interval": "1h", **_backend(backend, tmp_path)}

    metadata = _savepoint_and_stop(
        counting(str(tmp_path), fast, slow, before, config(backends[0])), str(tmp_path)
    )
    assert metadata["parallelism"]["count"] == before
    _resume(counting(str(tmp_path), fast, slow, after, config(backends[1])), metadata)
    assert committed_rows(str(tmp_path)) == expected_rows(fast, slow)


def _backend(backend: str, tmp_path: Path) -> dict[str, Any]:
    return {"state.backend": backend, "state.rocksdb.dir": str(tmp_path / "rocksdb")}


def test_rocksdb_state_stays_exact_despite_killed_tasks(ray_session: str, tmp_path: Path) -> None:
    """The keyed count in RocksDB: killed count tasks come back from the checkpoints with the
    output exact, and the folders of killed and finished tasks are gone at the end."""
    from rayflow.launchers import embedded
    from rayflow.state.storage import CheckpointStorage, shared_files

    fast, slow = events(1200, 40, 0.12), events(300, 10, 0.12)
    config = {**_backend("rocksdb", tmp_path), "checkpoint.retained": 2}
    topology = counting(str(tmp_path), fast, slow, 2, config)
    with killing_tasks({"count"}, max_kills=3, every=1.0) as kills:
        embedded.run_topology(topology.build())
    assert kills, "no count task was killed before the run ended"
    assert committed_rows(str(tmp_path)) == expected_rows(fast, slow)
    folders = tmp_path / "rocksdb" / "exactly"
    assert folders.is_dir(), "the count tasks kept their state in RocksDB"
    assert not list(folders.iterdir()), "killed or finished tasks left their RocksDB folders"
    storage = CheckpointStorage(str(tmp_path / "checkpoints"))
    (run,) = (tmp_path / "checkpoints" / "exactly").iterdir()  # the run's own folder
    kept = storage.complete_checkpoints(f"exactly/{run.name}")
    incremental = [m for m in kept if shared_files(m)]
    assert incremental, "the last checkpoint before the final one references shared files"
    for metadata in incremental:  # pruning left every file a kept checkpoint needs
        for relative in shared_files(metadata):
            assert (run / relative).is_file(), relative


@pytest.mark.parametrize("chained_before", [True, False])
def test_a_savepoint_restores_after_chaining_is_switched(
    ray_session: str, tmp_path: Path, chained_before: bool
) -> None:
    """A chain's members keep their state under their own ids: a savepoint taken with the
    count -> sink chain restores with chaining off, and the other way round, to exact output."""
    fast, slow = events(1500, 50, 0.1), events(300, 10, 0.1)

    def topology(chained: bool) -> Any:
        config = {"checkpoint.interval": "1h", "chaining": chained}
        return counting(str(tmp_path), fast, slow, 2, config, chained_sink=True)

    metadata = _savepoint_and_stop(topology(chained_before), str(tmp_path))
    _resume(topology(not chained_before), metadata)
    assert committed_rows(str(tmp_path)) == expected_rows(fast, slow)


def _savepoint_and_stop(
    topology: Any, out: str, progress_rows: int = 300, component: str = "count"
) -> dict[str, Any]:
    """Run until ``component`` executed ``progress_rows`` (or output was committed), take a
    savepoint, kill the run; returns the savepoint's metadata."""
    import time

    from rayflow.state.storage import CheckpointStorage

    first = _deployment(topology.build())

    def progressed() -> bool:
        executed = sum(
            s["counters"]["executed"]
            for s in first.stats()  # type: ignore[attr-defined]
            if s["component"] == component
        )
        return executed >= progress_rows or sum(committed_rows(out).values()) > 0

    deadline = time.monotonic() + 60
    while not progressed():
        first.wait(timeout=0.2)  # type: ignore[attr-defined]
        assert time.monotonic() < deadline
    url = first.checkpoints.savepoint(timeout=60)  # type: ignore[attr-defined]
    first.kill()  # type: ignore[attr-defined]
    metadata = CheckpointStorage("").read_metadata(url)
    assert metadata["savepoint"]
    return metadata


def _resume(topology: Any, metadata: dict[str, Any]) -> None:
    from rayflow.runtime.driver.coordinator import validate_restore

    spec = topology.build()
    validate_restore(metadata, [c.id for c in spec.components], allow_non_restored=False)
    run_deployment(_deployment(spec, restore_from=metadata))


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_corrupted_checkpoint_falls_back_to_the_previous_one(
    ray_session: str, tmp_path: Path, backend: str
) -> None:
    """With the newest checkpoint's files corrupted (rocksdb: an SST file only it references),
    a failure recovers from the one before (the error names the file) and nothing is lost.
    (The sink had committed the newer checkpoint's output, so going back behind it may repeat
    those lines, as in Flink.)"""
    import ray

    from rayflow.state.storage import CheckpointStorage

    fast, slow = events(1500, 50, 0.1), events(300, 10, 0.1)
    config = _backend(backend, tmp_path)
    deployment = _deployment(counting(str(tmp_path), fast, slow, 2, config).build())
    coordinator = deployment.checkpoints  # type: ignore[attr-defined]
    storage = CheckpointStorage(str(tmp_path / "checkpoints"))
    corrupted: list[str] = []

    def chaos() -> None:
        if corrupted or coordinator.completed < 2:
            return
        latest = coordinator.latest
        name = latest["tasks"]["count/0"]["file"]
        path = os.path.join(latest["path"], name)
        if backend == "rocksdb":  # a file the newest checkpoint added, of the task killed
            # (the survivor resets from its local RocksDB checkpoint and reads no shared file)
            run = os.path.relpath(os.path.dirname(latest["path"]), storage.root)
            # (a task that held no state yet at a checkpoint lists no shared files)
            before = storage.complete_checkpoints(run)[-2]["tasks"]["count/1"].get("shared", [])
            added = set(latest["tasks"]["count/1"].get("shared", [])) - set(before)
            if not added:  # nothing new reached it since: wait for a checkpoint that adds
                return
            path = os.path.join(os.path.dirname(latest["path"]), sorted(added)[0])
        with open(path, "r+b") as f:
            f.write(b"garbage")
        corrupted.append(path)
        ray.kill(deployment.actors[("count", 1)], no_restart=True)  # type: ignore[attr-defined]

    run_deployment(deployment, each=chaos)
    assert corrupted, "two checkpoints completed before the end"
    unreadable = [c for c in coordinator.stats()["history"] if c["status"] == "UNREADABLE"]
    assert unreadable and corrupted[0] in unreadable[0]["reason"]
    assert set(committed_rows(str(tmp_path))) == set(expected_rows(fast, slow))


def _windows(
    out: str, events: list, parallelism: int, config: dict[str, Any], shuffled: bool = False
) -> Any:
    """Shuffled events -> keyed tumbling 10 s windows (WindowCount) -> FileSink, exactly once;
    ``shuffled``: the events shuffled to the windows, keyed by the window's own ``key``."""
    from rayflow import Topology
    from rayflow.connectors.files import FileSink
    from rayflow.testing import Pause
    from tests.api.test_windows import WATERMARKS
    from tests.windowing import Events, WindowCount

    items = [x for i, e in enumerate(events) for x in ((e, Pause(0.1)) if i % 40 == 39 else (e,))]
    t = Topology(
        "windows-exactly",
        config={"reliability": "exactly_once", "checkpoint.interval": "300ms", "batch.size": 16,
                "checkpoint.storage": os.path.join(out, "checkpoints"), **config},
    )  # fmt: skip
    t.spout("events", Events, kwargs={"items": items}, config=WATERMARKS)
    window = {"type": "tumbling", "size": "10s", "timestamp_field": "ts"}
    if shuffled:
        window["key"] = ["key"]  # type: ignore[assignment]
    bolt = t.bolt("window", WindowCount, parallelism=parallelism, config={"window": window})
    bolt.shuffle("events") if shuffled else bolt.fields("events", "key")
    t.bolt("sink", FileSink, kwargs={"path": os.path.join(out, "files")}).shuffle("window")
    return t


def _window_rows(out: str) -> Counter:
    """The committed windows: (key, start, end, count, stamps) -> how many times."""
    import json

    rows: Counter = Counter()
    for path in glob.glob(os.path.join(out, "files", "part-*")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, start, end, count, stamps = json.loads(line)
                rows[(key, start, end, count, tuple(stamps))] += 1
    return rows


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_event_time_windows_exactly_once_despite_killed_tasks(
    ray_session: str, tmp_path: Path, backend: str
) -> None:
    """Window contents and their timers are in the checkpoints (rocksdb: the windows and the
    index of their ends in the task's RocksDB): with tasks killed, the committed windows equal
    the reference computed the plain way, each exactly once."""
    from rayflow.launchers import embedded
    from tests.api.test_windows import shuffled_events
    from tests.windowing import reference_windows

    events = shuffled_events(1200)
    t = _windows(str(tmp_path), events, 2, _backend(backend, tmp_path))
    with killing_tasks({"events", "window", "sink"}, max_kills=3, every=1.0) as kills:
        embedded.run_topology(t.build())
    assert kills
    assert _window_rows(str(tmp_path)) == reference_windows(events, 10_000)


@pytest.mark.parametrize("before,after,backends", [(2, 3, ("memory", "rocksdb")),
                                                   (3, 1, ("rocksdb", "memory")),
                                                   (1, 2, ("memory", "memory"))])  # fmt: skip
def test_open_windows_move_between_backends_and_parallelisms_through_a_savepoint(
    ray_session: str, tmp_path: Path, before: int, after: int, backends: tuple[str, str]
) -> None:
    """A savepoint taken with windows open, resumed with the other backend at another
    parallelism: the windows move to where that backend keeps them, and the output equals the
    reference."""
    from tests.api.test_windows import shuffled_events
    from tests.windowing import reference_windows

    events = shuffled_events(1200)
    out = str(tmp_path)

    def config(backend: str) -> dict[str, Any]:
        return {"checkpoint.interval": "1h", **_backend(backend, tmp_path)}

    first = _windows(out, events, before, config(backends[0]))
    metadata = _savepoint_and_stop(first, out, progress_rows=400, component="window")
    assert metadata["parallelism"]["window"] == before
    _resume(_windows(out, events, after, config(backends[1])), metadata)
    assert _window_rows(out) == reference_windows(events, 10_000)


def test_windows_stored_in_rocksdb_move_into_a_bolt_no_longer_keyed_as_routed(
    ray_session: str, tmp_path: Path
) -> None:
    """A savepoint of windows kept in RocksDB (keyed as routed), resumed with the windows
    shuffled to one task and keyed by the window's own ``key``: the bolt now keeps them itself,
    and the open windows move there instead of staying in RocksDB unread."""
    from tests.api.test_windows import shuffled_events
    from tests.windowing import reference_windows

    events = shuffled_events(1200)
    out = str(tmp_path)
    config = {"checkpoint.interval": "1h", **_backend("rocksdb", tmp_path)}
    metadata = _savepoint_and_stop(
        _windows(out, events, 2, config), out, progress_rows=400, component="window"
    )
    _resume(_windows(out, events, 1, config, shuffled=True), metadata)
    assert _window_rows(out) == reference_windows(events, 10_000)


def test_the_exactly_once_example(ray_session: str, tmp_path: Path) -> None:
    """examples/exactly_once.yaml through `rayflow run`: every milestone line, exactly once."""
    import json

    from examples.wordcount import SENTENCES
    from tests.commands import rayflow

    done = rayflow(
        "run", "examples/exactly_once.yaml", "-D", "LIMIT=20000", "-D", "EVERY=500",
        "-D", f"OUT={tmp_path / 'out'}", "-D", f"CHECKPOINTS={tmp_path / 'ckpt'}",
        "-c", "stall.timeout=20s", "--address", ray_session, "--no-ui", timeout=200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    totals = Counter(w for i in range(20000) for w in SENTENCES[i % 5].split())
    expected = Counter((w, k) for w, n in totals.items() for k in range(500, n + 1, 500))
    rows = Counter()
    for path in glob.glob(os.path.join(tmp_path, "out", "part-*")):
        with open(path, encoding="utf-8") as f:
            rows.update(tuple(json.loads(line)) for line in f)
    assert rows == expected


def test_a_checkpoint_that_cannot_complete_in_time_is_aborted(
    ray_session: str, tmp_path: Path
) -> None:
    """A bolt stuck for 2.5 s holds barriers back: the checkpoint under way is aborted after
    checkpoint.timeout (1 s), counted, and the next ones complete; nothing is lost or doubled."""
    import json

    from rayflow import Topology
    from rayflow.connectors.files import FileSink
    from rayflow.testing import Pause, TestingSpout
    from tests.reliability import SleepOnce

    items = [x for i in range(600) for x in ((i, Pause(0.05)) if i % 20 == 19 else (i,))]
    t = Topology(
        "stuck",
        config={"reliability": "exactly_once", "checkpoint.interval": "300ms",
                "checkpoint.timeout": "1s", "batch.size": 16,
                "checkpoint.storage": str(tmp_path / "checkpoints")},
    )  # fmt: skip
    t.spout("numbers", TestingSpout, kwargs={"items": items})
    t.bolt("stuck", SleepOnce, kwargs={"n": 200, "seconds": 2.5}).shuffle("numbers")
    t.bolt("out", FileSink, kwargs={"path": str(tmp_path / "out")}).shuffle("stuck")
    deployment = _deployment(t.build())
    run_deployment(deployment)
    history = deployment.checkpoints.stats()["history"]  # type: ignore[attr-defined]
    timed_out = [c for c in history if "checkpoint.timeout" in c["reason"]]
    assert timed_out and timed_out[0]["status"] == "FAILED"
    assert any(c["status"] == "COMPLETED" and c["id"] > timed_out[0]["id"] for c in history)
    lines = []
    for path in glob.glob(os.path.join(tmp_path, "out", "part-*")):
        with open(path, encoding="utf-8") as f:
            lines += [json.loads(line)[0] for line in f]
    assert sorted(lines) == list(range(600))
