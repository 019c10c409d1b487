"""Real services (Kafka, Redis, YARN, a Kubernetes API server) as pytest fixtures use them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from scripts.services import MissingPart, Service


def running(service: Service, what: str) -> Iterator[Any]:
    """Start ``service`` (a test fails, never skips, when it cannot), yield it, stop it."""
    try:
        service.start()
    except MissingPart as exc:
        pytest.fail(f"the {what} tests need it running: {exc}")
    try:
        yield service
    finally:
        service.stop()
