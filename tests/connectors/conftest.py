"""Real services for the connector tests only: each starts when the first test needs it and stops
when the package's tests are done (so they never run beside the browser or YARN tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.kafka_broker import KafkaBroker
from scripts.redis_server import RedisServer
from tests.services import running


@pytest.fixture(scope="package")
def kafka() -> Iterator[str]:
    """A real Kafka broker's bootstrap address (127.0.0.1:PORT)."""
    for broker in running(KafkaBroker(), "Kafka"):
        yield broker.bootstrap


@pytest.fixture(scope="package")
def redis_url() -> Iterator[str]:
    """A real redis-server's URL (redis://127.0.0.1:PORT/0)."""
    for server in running(RedisServer(), "Redis"):
        yield server.url
