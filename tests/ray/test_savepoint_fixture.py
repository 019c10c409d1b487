"""This rayflow restores a savepoint that an earlier one wrote (``tests/savepoint_fixture.py``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.exactly_once import run_deployment
from tests.savepoint_fixture import FIXTURE, committed_rows, expected_rows, topology

pytestmark = pytest.mark.ray


def test_the_committed_savepoint_fixture_restores_to_exact_output(
    ray_session: str, tmp_path: Path
) -> None:
    """Keyed counts, window panes, timers and the spout's position come back from the fixture:
    the output committed before it plus the output after it is the whole stream, exactly."""
    from rayflow.runtime.driver.coordinator import validate_restore
    from rayflow.runtime.driver.deploy import RayDeployment
    from rayflow.state.storage import FORMAT_VERSION, CheckpointStorage

    shutil.copytree(os.path.join(FIXTURE, "savepoint"), tmp_path / "savepoint")
    shutil.copytree(os.path.join(FIXTURE, "files"), tmp_path / "files")
    before = committed_rows(str(tmp_path / "files"))
    assert 0 < sum(before.values()) < sum(expected_rows().values()), "the fixture is halfway"
    with open(tmp_path / "savepoint" / "_metadata", encoding="utf-8") as f:
        assert json.load(f)["format"] <= FORMAT_VERSION

    metadata = CheckpointStorage.open_savepoint(str(tmp_path / "savepoint"))
    spec = topology(str(tmp_path)).build()
    validate_restore(metadata, [c.id for c in spec.components], allow_non_restored=False)
    deployment = RayDeployment(spec, restore_from=metadata)
    deployment.start()
    run_deployment(deployment)
    assert committed_rows(str(tmp_path / "files")) == expected_rows()
