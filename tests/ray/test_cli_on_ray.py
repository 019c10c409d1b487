"""``rayflow run`` as a user runs it: a subprocess, on the session's Ray or an embedded one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.commands import ROOT, rayflow

WORDCOUNT = str(ROOT / "examples" / "wordcount.yaml")

pytestmark = pytest.mark.ray


def test_run_on_a_cluster_prints_exact_top_words(ray_session: str, tmp_path: Path) -> None:
    # From another folder: the topology's package travels to the workers.
    done = rayflow("run", WORDCOUNT, "-D", "LIMIT=20000", "--address", ray_session, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "topology 'wordcount' finished" in lines[0]
    top = lines[lines.index("top:") + 1 :]
    assert top[0].split() == ["the", "16000"]
    assert {tuple(line.split()) for line in top[1:3]} == {("seven", "8000"), ("and", "8000")}


def test_a_task_that_cannot_start_exits_1_with_the_users_traceback(
    ray_session: str, tmp_path: Path
) -> None:
    topology = tmp_path / "broken.yaml"
    topology.write_text(
        "name: broken\n"
        "spouts: [{id: s, className: rayflow.testing.TestingSpout, constructorArgs: [[1, 2]]}]\n"
        "bolts: [{id: db, className: tests.helpers.BrokenPrepare}]\n"
        "streams: [{from: s, to: db, grouping: {type: SHUFFLE}}]\n"
    )
    done = rayflow("run", str(topology), "--address", ray_session)
    assert done.returncode == 1
    assert "task db[0] failed" in done.stderr
    assert "cannot connect to the database" in done.stderr
    assert 'raise RuntimeError("cannot connect to the database")' in done.stderr


def test_run_embedded_for_a_duration_then_prints_the_top_words(tmp_path: Path) -> None:
    done = rayflow("run", WORDCOUNT, "--duration", "3s", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "stopped after its duration" in done.stdout
    top = done.stdout.splitlines()
    first = top[top.index("top:") + 1].split()
    assert first[0] == "the" and int(first[1]) > 0
    assert "[wordcount " in done.stderr, "the live throughput line"


def test_ctrl_c_stops_gracefully_and_prints_the_top_words(ray_session: str) -> None:
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "rayflow.cli", "run", WORDCOUNT, "--address", ray_session],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # Ctrl-C as a terminal delivers it: a test run started in the background by a shell
        # without job control inherits SIGINT ignored, and Python then never raises
        # KeyboardInterrupt (the run went on until the timeout)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        seen = ""
        while "[wordcount " not in seen:  # the live line: the topology is running
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no progress line within 120 s"
            seen += proc.stderr.readline() if proc.stderr else ""
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by Ctrl-C" in out
    top = out.splitlines()
    assert top[top.index("top:") + 1].split()[0] == "the"


def test_run_serves_its_own_ui_and_rest_api(ray_session: str) -> None:
    """`rayflow run` shows its topology through the job master's code in its own process: the
    REST API lists it with live counters, and a kill over REST ends the run gracefully."""
    import json
    import time
    import urllib.error
    import urllib.request

    from tests.cluster import free_port

    port = free_port("127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rayflow.cli", "run", WORDCOUNT, "--address", ray_session,
         "--ui-port", str(port), "--ui-token", "run-token", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/v1/topologies"

    def emitted() -> float:
        try:
            with urllib.request.urlopen(f"{base}/wordcount", timeout=5) as response:
                detail = json.loads(response.read())
        except OSError:
            return 0.0
        return sum(c.get("emitted", 0) for c in detail["components"])

    try:
        deadline = time.monotonic() + 120
        while emitted() <= 0:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the run's REST API never showed tuples"
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert "rayflow" in response.read().decode()  # the web UI's page
        json_type = {"Content-Type": "application/json"}
        request = urllib.request.Request(
            f"{base}/wordcount/kill", data=b"{}", method="POST", headers=json_type
        )
        with pytest.raises(urllib.error.HTTPError) as refused:  # --ui-token: writes need it
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 401
        request.add_header("Authorization", "Bearer run-token")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["status"] == "KILLING"
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"web UI and REST API: http://127.0.0.1:{port}/#/topology/wordcount" in err
    top = out.splitlines()
    assert top[top.index("top:") + 1].split()[0] == "the"
