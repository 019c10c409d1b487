"""A real Kafka broker for the connector tests only: started when the first of them needs it,
stopped when they are done (so it never runs beside the browser tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.kafka_broker import KafkaBroker, MissingPart


@pytest.fixture(scope="package")
def kafka() -> Iterator[str]:
    """The broker's bootstrap address (127.0.0.1:PORT)."""
    try:
        broker = KafkaBroker().start()
    except MissingPart as exc:
        pytest.fail(f"the Kafka tests need a real broker: {exc}")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="package")
def redis_url() -> Iterator[str]:
    """A real redis-server's URL (redis://127.0.0.1:PORT/0)."""
    from scripts.redis_server import RedisMissing, RedisServer

    try:
        server = RedisServer().start()
    except RedisMissing as exc:
        pytest.fail(f"the Redis tests need a real redis-server: {exc}")
    try:
        yield server.url
    finally:
        server.stop()
