"""``rayflow`` as a user runs it: a subprocess. One that does not end within its time fails the
test with what it printed and where each of its threads was (the command dumps its stacks on
SIGUSR1), instead of leaving only pytest's own stack behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_TAIL = 6000


def rayflow(
    *args: str, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    """Run ``rayflow ARGS`` to its end; its output as text."""
    command = [sys.executable, "-m", "rayflow.cli", *args]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        try:  # a few seconds to write its stacks; it goes on running, so this times out
            out, err = proc.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(
            f"rayflow {' '.join(args)} did not end within {timeout:g}s\n"
            f"--- its output (the end):\n{out[-_TAIL:]}\n"
            f"--- its errors and its threads' stacks (the end):\n{err[-_TAIL:]}"
        )
    return subprocess.CompletedProcess(command, proc.returncode, out, err)
