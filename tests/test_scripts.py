"""What ``make test`` does to a machine before any test: a missing prerequisite gets one message
naming it (scripts/check-prerequisites.sh), and the services' ``run`` modes stop their processes
on SIGTERM as on Ctrl-C (they lead sessions of their own, so nothing else would stop them)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scripts.services import free_port

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
CHECK = SCRIPTS / "check-prerequisites.sh"
BASH = shutil.which("bash") or "/bin/bash"


# -- the prerequisite check ----------------------------------------------------------------------


def path_without(folder: Path, *names: str) -> str:
    """A PATH of one folder holding a symlink to every command on this PATH except ``names``."""
    folder.mkdir()
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or not os.path.isdir(entry):
            continue
        for command in os.scandir(entry):
            link = folder / command.name
            if command.name in names or os.path.lexists(link):
                continue
            if command.is_file() and os.access(command.path, os.X_OK):
                link.symlink_to(command.path)
    return str(folder)


def check(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(CHECK)], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def problems(stderr: str) -> list[str]:
    """The lines of the message that each name one missing prerequisite."""
    return [line for line in stderr.splitlines() if line.startswith("  - ")]


def test_the_check_passes_on_this_machine() -> None:
    done = check()
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


def test_a_machine_without_go_gets_one_message_naming_it(tmp_path: Path) -> None:
    done = check(PATH=path_without(tmp_path / "bin", "go"), RAYFLOW_CACHE=str(tmp_path / "cache"))
    assert done.returncode == 1
    assert done.stderr.startswith("make test cannot run on this machine"), done.stderr
    [problem] = problems(done.stderr)
    assert "Go 1.26+ (go)" in problem and "helm" in problem and "kube-apiserver" in problem
    assert "Traceback" not in done.stderr and "command not found" not in done.stderr


def test_a_machine_without_a_jdk_gets_one_message_naming_it(tmp_path: Path) -> None:
    done = check(PATH=path_without(tmp_path / "bin", "java", "javac"))
    assert done.returncode == 1
    [problem] = problems(done.stderr)
    assert "a JDK 17+ (java)" in problem and "Kafka" in problem and "YARN" in problem


def test_each_missing_prerequisite_is_a_line_of_the_one_message(tmp_path: Path) -> None:
    path = path_without(tmp_path / "bin", "go", "java", "mvn", "openssl")
    done = check(PATH=path, RAYFLOW_CACHE=str(tmp_path / "cache"))
    assert done.returncode == 1
    found = problems(done.stderr)
    assert len(found) == 4, done.stderr
    for name in ("(go)", "(java)", "(mvn)", "openssl:"):
        assert sum(name in line for line in found) == 1, (name, done.stderr)


def default_version(script: str, pattern: str) -> str:
    found = re.search(pattern, (SCRIPTS / script).read_text(), re.MULTILINE)
    assert found, f"no version in scripts/{script}"
    return found.group(1)


def test_with_everything_cached_neither_go_nor_maven_is_needed(tmp_path: Path) -> None:
    from scripts import kafka_broker, yarn_cluster

    cache = tmp_path / "cache"
    helm = default_version("ensure-helm.sh", r'^VERSION="\$\{RAYFLOW_HELM_VERSION:-(.*)\}"$')
    kube = default_version(
        "ensure-kube-apiserver.sh", r'^VERSION="\$\{RAYFLOW_KUBE_VERSION:-(.*)\}"$'
    )
    for binary in (
        cache / f"helm-{helm}" / "helm",
        cache / f"kube-apiserver-{kube}" / "kube-apiserver",
    ):
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    kafka = kafka_broker.VERSION
    hadoop = yarn_cluster.VERSION
    for jar in (
        kafka_broker.JARS.relative_to(kafka_broker.CACHE) / f"kafka_2.13-{kafka}.jar",
        yarn_cluster.JARS.relative_to(yarn_cluster.CACHE)
        / f"hadoop-yarn-server-tests-{hadoop}-tests.jar",
    ):
        (cache / jar).parent.mkdir(parents=True)
        (cache / jar).write_bytes(b"")
    done = check(PATH=path_without(tmp_path / "bin", "go", "mvn"), RAYFLOW_CACHE=str(cache))
    assert done.returncode == 0, done.stderr
    # and the same cache without the helm binary needs Go again, for helm alone
    (cache / f"helm-{helm}" / "helm").unlink()
    done = check(PATH=str(tmp_path / "bin"), RAYFLOW_CACHE=str(cache))
    [problem] = problems(done.stderr)
    assert "Go 1.24+ (go)" in problem and "helm" in problem and "kube-apiserver" not in problem


# -- the services' run modes ---------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> str:
    """``pid``'s command line, or "" once it has gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g}s: {what}")
        time.sleep(0.05)


class RunMode:
    """``python scripts/<script> run ...`` in a session of its own, its output collected."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPTS / script), "run", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.seen: set[int] = set()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_announced(self, timeout: float) -> None:
        def announced() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"the run mode exited ({self.proc.returncode}):\n{self.output}")
            return "stops it" in self.output

        wait_for(announced, timeout, f"the run mode's banner; output so far:\n{self.output}")

    def children(self) -> list[int]:
        found = children(self.proc.pid)
        self.seen.update(found)
        return found

    def stop_with(self, signum: int, timeout: float = 60.0) -> int:
        os.kill(self.proc.pid, signum)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run mode did not exit {timeout:g}s after {signum}:\n{self.output}")

    def clean_up(self) -> None:
        """What a failed test leaves is stopped by the ids it started (each leads its group)."""
        for pid in [self.proc.pid, *self.seen]:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def run_mode() -> Iterator[Callable[..., RunMode]]:
    started: list[RunMode] = []

    def start(script: str, *args: str) -> RunMode:
        started.append(RunMode(script, *args))
        return started[-1]

    yield start
    for mode in started:
        mode.clean_up()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda signum: signum.name
)
def test_redis_run_mode_stops_its_server_on_a_signal(
    run_mode: Callable[..., RunMode], signum: signal.Signals
) -> None:
    port = free_port()
    mode = run_mode("redis_server.py", "--port", str(port))
    mode.wait_announced(timeout=30)
    [server] = mode.children()
    assert alive(server) and port_open(port)
    assert mode.stop_with(signum) == 0, mode.output
    assert not alive(server), f"redis-server {server} outlived its run mode"
    assert not port_open(port)


def test_kafka_run_mode_stops_its_jvm_on_sigterm(run_mode: Callable[..., RunMode]) -> None:
    """The issue's case: a killed ``kafka_broker.py run`` left its JVM running."""
    port = free_port()
    mode = run_mode("kafka_broker.py", "--port", str(port))
    mode.wait_announced(timeout=120)
    [jvm] = mode.children()
    assert "kafka.Kafka" in cmdline(jvm)
    assert mode.stop_with(signal.SIGTERM) == 0, mode.output
    assert not alive(jvm), f"the broker's JVM {jvm} outlived its run mode"
    assert not port_open(port)


def test_a_signal_while_the_service_starts_stops_what_had_started(
    run_mode: Callable[..., RunMode],
) -> None:
    """SIGTERM while the broker's JVM boots (before the banner) stops that JVM too."""
    mode = run_mode("kafka_broker.py", "--port", str(free_port()))

    def broker_spawned() -> bool:
        if mode.proc.poll() is not None:
            pytest.fail(f"the run mode exited ({mode.proc.returncode}):\n{mode.output}")
        return any("kafka.Kafka" in cmdline(pid) for pid in mode.children())

    wait_for(broker_spawned, 120, "the broker's JVM to be spawned")
    assert "stops it" not in mode.output  # still starting
    jvms = list(mode.seen)
    assert mode.stop_with(signal.SIGTERM) == 0, mode.output
    assert not any(alive(pid) for pid in jvms), mode.output
