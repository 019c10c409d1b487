"""A real single-node Apache Kafka broker (KRaft) on 127.0.0.1, from the official jars.

The jars come from Maven Central (``mvn dependency:copy-dependencies`` on scripts/kafka/pom.xml)
into ``~/.cache/rayflow/kafka-<version>/libs`` once; the broker runs with Java 17 and a capped heap,
in a fresh folder, on free ports, and stops by its process id.

    python scripts/kafka_broker.py jars                # fetch the jars (the tests do it too)
    python scripts/kafka_broker.py run --port 9092     # a broker until Ctrl-C or SIGTERM

    >>> with KafkaBroker() as broker:                  # doctest: +SKIP
    ...     broker.bootstrap                           # '127.0.0.1:40123'
"""

from __future__ import annotations

import argparse
import base64
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.services import CACHE, MissingPart, Service, free_port, maven_jars, serve

HERE = Path(__file__).resolve().parent
VERSION = "4.4.0"
JARS = CACHE / f"kafka-{VERSION}" / "libs"
LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
"""


def ensure_jars() -> Path:
    """The folder of the broker's jars, fetched from Maven Central on first use."""
    return maven_jars(
        HERE / "kafka" / "pom.xml", JARS, f"kafka_2.13-{VERSION}.jar", f"Apache Kafka {VERSION}"
    )


def _cluster_id() -> str:
    """A random cluster id as Kafka makes them: a URL-safe base64 UUID that does not start with
    "-" (one in 64 would, and the storage tool would read it as an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker(Service):
    """One broker+controller process; ``start()`` returns once it answers metadata requests."""

    prefix = "rayflow-kafka-"

    def __init__(self, port: int | None = None, folder: str | None = None) -> None:
        super().__init__(folder)
        self.port = port or free_port()
        self.controller_port = free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "broker.log"

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        java = shutil.which("java")
        if java is None:
            raise MissingPart("the Kafka broker needs Java 17+: install openjdk-17-jre-headless")
        classpath = f"{ensure_jars()}/*"
        properties = self._write_config()
        cluster_id = _cluster_id()
        log4j = f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}"
        jvm = [java, "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", log4j, "-cp", classpath]
        formatted = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
             "-c", str(properties)],
            capture_output=True, text=True,
        )  # fmt: skip
        if formatted.returncode != 0:
            raise MissingPart(f"kafka storage format failed:\n{formatted.stderr}")
        self.spawn([*jvm, "kafka.Kafka", str(properties)], "stdout.log")
        self._wait_ready(timeout)
        return self

    def _write_config(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "log4j2.properties").write_text(LOG4J.format(log=self.log))
        properties = self.folder / "server.properties"
        properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.folder / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=3",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=3",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        return properties

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        # log_level 0: the probe's "connection refused" while the broker boots is expected, not
        # news (librdkafka would print one a probe)
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise MissingPart(f"the Kafka broker exited:\n{self._tail()}")
            try:
                brokers = admin.list_topics(timeout=2).brokers
                if brokers:
                    return
            except Exception:  # KafkaException while it starts
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise MissingPart(
                    f"the Kafka broker did not start in {timeout:g}s:\n{self._tail()}"
                )
            time.sleep(0.5)

    def _tail(self) -> str:
        text = ""
        for name in ("stdout.log", "broker.log"):
            path = self.folder / name
            if path.exists():
                text += path.read_text(errors="replace")[-3000:]
        return text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("jars", help="fetch the broker's jars into the cache")
    run = sub.add_parser("run", help="run a broker on 127.0.0.1 until Ctrl-C or SIGTERM")
    run.add_argument("--port", type=int, default=9092)
    args = parser.parse_args(argv)
    if args.command == "jars":
        print(ensure_jars())
        return 0

    def announce(broker: KafkaBroker) -> None:
        print(f"Kafka {VERSION} on {broker.bootstrap} (Ctrl-C or SIGTERM stops it)", flush=True)

    return serve(KafkaBroker(args.port), announce)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
