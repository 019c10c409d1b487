"""Windows and event time on a real local Ray, and the socket window word count end to end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.api.test_windows import WATERMARKS, shuffled_events
from tests.windowing import (
    Pause,
    late_of,
    reference_sessions,
    reference_windows,
    window_topology,
    windows_of,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.ray


def run_socket_example(port: int, address: str) -> subprocess.CompletedProcess:
    """``rayflow run examples/socket_window_wordcount.yaml`` against a socket on ``port``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "rayflow.cli",
            "run",
            "examples/socket_window_wordcount.yaml",
            "-D",
            "hostname=127.0.0.1",
            "-D",
            f"port={port}",
            "--address",
            address,
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ},
    )


@pytest.mark.parametrize("kind", ["tumbling", "sliding", "session"])
def test_event_time_windows_on_ray_equal_the_reference(ray_session: str, kind: str) -> None:
    events = shuffled_events(200)
    window = {"type": kind, "timestamp_field": "ts", "size": "10s", "slide": "5s", "gap": "3s"}
    if kind == "tumbling":
        del window["slide"], window["gap"]
        expected = reference_windows(events, 10_000)
    elif kind == "sliding":
        del window["gap"]
        expected = reference_windows(events, 10_000, 5_000)
    else:
        del window["size"], window["slide"]
        events = [(k, ts) for k, ts in events if not 20_000 <= ts % 30_000 < 25_000]
        expected = reference_sessions(events, 3_000)
    # Two spout tasks, each with half of the events: event time is the minimum of both.
    per_task = {0: events[0::2], 1: events[1::2]}
    result = window_topology(window, per_task=per_task, spout_config=WATERMARKS).run()
    assert late_of(result.outputs["sink"]) == []
    assert windows_of(result.outputs["sink"]) == expected


def test_lateness_and_the_late_stream_on_ray(ray_session: str) -> None:
    window = {
        "type": "tumbling",
        "size": "10s",
        "timestamp_field": "ts",
        "allowed_lateness": "5s",
        "late_stream": "late",
    }
    events = [
        ("a", 1_000),
        ("a", 12_000),
        Pause(0.5),
        ("a", 3_000),
        ("a", 18_000),
        Pause(0.5),
        ("a", 4_000),
    ]
    spout = {"watermark.timestamp_field": "ts", "watermark.interval": "10ms"}
    rows = window_topology(window, events, spout_config=spout).run().outputs["sink"]
    first = sorted(r for r in windows_of(rows) if r[1] == 0)
    assert first == [("a", 0, 10_000, 1, (1_000,)), ("a", 0, 10_000, 2, (1_000, 3_000))]
    assert late_of(rows) == [("a", 4_000)]


def test_socket_window_wordcount_end_to_end(ray_session: str) -> None:
    lines = ["to be or not to be", "that is the question", "to be is to do"] * 20
    expected = Counter(w for line in lines for w in line.split())
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall("".join(line + "\n" for line in lines).encode())
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    done = run_socket_example(port, ray_session)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    rows = []
    for line in out[out.index("print:") + 1 :]:
        if not line.startswith("  "):
            break  # the end of the report; Ray's copies of the printed lines follow
        rows.append(line.split())
    counts: Counter[str] = Counter()
    for word, count, start, end in rows:
        assert int(end) - int(start) == 5_000
        counts[word] += int(count)
    assert counts == expected


def test_socket_spout_says_what_to_do_when_nothing_listens(ray_session: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run_socket_example(port, ray_session)
    assert done.returncode == 1
    assert f"cannot connect to 127.0.0.1:{port}" in done.stderr
    assert "nc -lk" in done.stderr
