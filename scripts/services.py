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
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self, TypeVar

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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class MissingPart(RuntimeError):
    """A part a test service needs (Java, Maven, jars, a binary) is missing or did not start;
    the message says what to install or what went wrong."""


S = TypeVar("S", bound=Service)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What stops a ``run`` mode: Ctrl-C, ``kill`` (a supervisor, a CI's timeout), a closed terminal."""


class Stopped(BaseException):
    """Raised in the main thread by a stop signal while a ``run`` mode starts or serves. A
    ``BaseException``, like ``KeyboardInterrupt``: a start-up loop's ``except Exception`` (the
    broker retrying its client while it boots) must not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def _ignore_stop_signals() -> None:
    while True:
        try:
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            return
        except Stopped:  # a second signal before the first SIG_IGN took: set them again
            continue


def serve(service: S, announce: Callable[[S], None], poll: float = 0.5) -> int:
    """For ``python scripts/<service>.py run``: start ``service``, ``announce`` it, and serve until
    Ctrl-C, SIGTERM or SIGHUP, or until one of its processes ends; then stop it, in every case.

    Its processes lead sessions of their own (so a Ctrl-C in the terminal reaches only this
    script), which is why nothing but this script's ``stop()`` ends them: Python's default SIGTERM
    kills the script and leaves, say, the Kafka broker's JVM running. A signal during ``start()``
    (a JVM booting, jars downloading) stops what was already started too. Returns 0 when stopped by
    a signal, 1 when a process ended by itself or the service did not start."""
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in STOP_SIGNALS}
    code = 0
    try:
        service.start()
        announce(service)
        while True:
            ended = [proc for proc in service.procs if proc.poll() is not None]
            if ended:
                what = f"{type(service).__name__}: {ended[0].args[0]}"
                print(
                    f"{what} exited with code {ended[0].returncode}; stopping the rest",
                    file=sys.stderr, flush=True,
                )  # fmt: skip
                code = 1
                break
            time.sleep(poll)
    except Stopped:
        pass
    except (MissingPart, OSError) as exc:
        print(f"could not start: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        _ignore_stop_signals()  # stop() is bounded (SIGKILL after its timeout): let it finish
        try:
            service.stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return code


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
