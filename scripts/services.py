"""What every test service here shares (Kafka, Redis, YARN, the Kubernetes API server): free
loopback ports, processes in process groups of their own that stop by their ids, a folder that
goes with the service, and ``with Service() as s:``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

CACHE = Path(os.environ.get("RAYFLOW_CACHE", Path.home() / ".cache" / "rayflow"))
"""Where the service scripts keep what they download or build, between runs."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM the process group ``proc`` leads (started with ``start_new_session``), then
    SIGKILL if it lingers: never a process by name."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Service:
    """A service with its own folder and processes; subclasses define ``start()``."""

    prefix = "rayflow-service-"

    def __init__(self, folder: str | None = None) -> None:
        self.folder = Path(folder or tempfile.mkdtemp(prefix=self.prefix))
        self.procs: list[subprocess.Popen] = []

    @property
    def proc(self) -> subprocess.Popen | None:
        """The main process (the first started)."""
        return self.procs[0] if self.procs else None

    def spawn(
        self, argv: list[str], log: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen:
        """Start ``argv`` in a process group of its own, its output in ``folder/log``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / log, "wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_group(proc)
        shutil.rmtree(self.folder, ignore_errors=True)

    def serve_until_interrupted(self) -> None:
        """For ``python scripts/<service>.py run``: wait until Ctrl-C or a process ends."""
        try:
            while all(proc.poll() is None for proc in self.procs):
                time.sleep(1)
        except KeyboardInterrupt:
            pass

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class MissingPart(RuntimeError):
    """A part a test service needs (Java, Maven, jars, a binary) is missing or did not start;
    the message says what to install or what went wrong."""


def maven_jars(pom: Path, target: Path, marker: str, what: str) -> Path:
    """``target``, a folder holding ``pom``'s dependencies (``mvn dependency:copy-dependencies``
    from Maven Central), fetched once: ``marker`` is a jar that tells the copy is complete."""
    if (target / marker).exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingPart(f"{what}'s jars are not cached and Maven is missing: install maven")
    print(f"fetching {what}'s jars from Maven Central...", file=sys.stderr)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={partial}"],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise MissingPart(f"mvn could not fetch {what}'s jars:\n{done.stdout}\n{done.stderr}")
    partial.rename(target)
    return target


def built_binary(script: Path, what: str) -> str:
    """The path a ``scripts/ensure-*.sh`` prints last, after building its binary if needed."""
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        raise MissingPart(f"{what} is missing and could not be built:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]
