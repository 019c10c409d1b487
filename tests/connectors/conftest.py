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
