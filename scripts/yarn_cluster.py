"""A real YARN on 127.0.0.1: Hadoop's MiniYARNCluster (a ResourceManager and a NodeManager in one
JVM) from the official jars, for the YARN tests.

The jars come from Maven Central (``mvn dependency:copy-dependencies`` on scripts/yarn/pom.xml)
into ``~/.cache/rayflow/hadoop-<version>/libs`` once. ``start()`` writes a client configuration
(``yarn-site.xml``, ``core-site.xml``) and a ``yarn`` shim that answers ``yarn classpath`` the way
skein's driver asks it; :meth:`YarnCluster.env` is the environment a client (skein, the rayflow
CLI) needs. The JVM's heap is capped and it stops by its process id.

    python scripts/yarn_cluster.py jars      # fetch the jars (the tests do it too)
    python scripts/yarn_cluster.py run       # a cluster until Ctrl-C/SIGTERM; prints its env
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.services import CACHE, MissingPart, Service, maven_jars, serve

HERE = Path(__file__).resolve().parent
VERSION = "3.5.0"
JARS = CACHE / f"hadoop-{VERSION}" / "libs"


def ensure_jars() -> Path:
    """The folder of Hadoop's jars, fetched from Maven Central on first use."""
    return maven_jars(
        HERE / "yarn" / "pom.xml",
        JARS,
        f"hadoop-yarn-server-tests-{VERSION}-tests.jar",
        f"Hadoop {VERSION}",
    )


def java_home() -> str:
    java = shutil.which("java")
    if java is None:
        raise MissingPart("YARN needs Java 17+: install openjdk-17-jdk-headless")
    return os.environ.get("JAVA_HOME") or str(Path(java).resolve().parent.parent)


def _free_port_block(size: int = 5) -> int:
    """A port with the ``size - 1`` ports after it free too (the RM's fixed ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + size > 65535:
            continue
        try:
            for port in range(base, base + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no block of free ports")


class YarnCluster(Service):
    """One MiniYARNCluster; ``start()`` returns once its NodeManager has registered."""

    prefix = "rayflow-yarn-"

    def __init__(self, nm_memory_mb: int = 4096, folder: str | None = None) -> None:
        super().__init__(folder)
        self.nm_memory_mb = nm_memory_mb
        self.conf = self.folder / "conf"
        self.bin = self.folder / "bin"
        self.rm_port = 0

    @property
    def log(self) -> Path:
        return self.folder / "yarn.log"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a YARN client: configuration, ``yarn`` on PATH, JAVA_HOME."""
        env = dict(os.environ if base is None else base)
        env.update(
            HADOOP_CONF_DIR=str(self.conf),
            YARN_CONF_DIR=str(self.conf),
            JAVA_HOME=java_home(),
            PATH=f"{self.bin}:{env.get('PATH', '')}",
        )
        return env

    def start(self, timeout: float = 120.0) -> YarnCluster:
        jars = ensure_jars()
        self.conf.mkdir(parents=True, exist_ok=True)
        self.bin.mkdir(parents=True, exist_ok=True)
        shim = self.bin / "yarn"
        # skein's driver runs `yarn classpath --glob`; Hadoop itself is not installed here.
        shim.write_text(f'#!/bin/sh\necho "{self.conf}:{jars}/*"\n')
        shim.chmod(0o755)
        self.rm_port = _free_port_block()
        env = {**os.environ, "JAVA_HOME": java_home()}
        proc = self.spawn(
            [str(Path(java_home()) / "bin" / "java"), "-Xmx768m", "-XX:+UseSerialGC",
             "-cp", f"{jars}/*", str(HERE / "yarn" / "MiniYarn.java"), str(self.conf),
             str(self.rm_port), str(self.nm_memory_mb), str(jars)],
            self.log.name, env=env, cwd=self.folder,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while b"READY" not in self.log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-4000:]
                self.stop()
                raise MissingPart(f"YARN did not start:\n{tail}")
            time.sleep(0.5)
        return self


def main(argv: list[str]) -> int:
    if argv[:1] == ["jars"]:
        print(ensure_jars())
        return 0
    if argv[:1] != ["run"]:
        print(__doc__, file=sys.stderr)
        return 2

    def announce(cluster: YarnCluster) -> None:
        env = cluster.env({})
        print(f"YARN ResourceManager on 127.0.0.1:{cluster.rm_port}; Ctrl-C or SIGTERM stops it.")
        print("Use:")
        for key in ("HADOOP_CONF_DIR", "JAVA_HOME"):
            print(f"  export {key}={env[key]}")
        print(f"  export PATH={cluster.bin}:$PATH", flush=True)

    return serve(YarnCluster(), announce)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
