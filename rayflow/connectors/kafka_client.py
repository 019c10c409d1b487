"""What the Kafka spout and bolt share: the client (``pip install 'rayflow[kafka]'``), key and
value codecs, and retrying Kafka's transient errors."""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from rayflow.errors import ConfigError
from rayflow.extras import require

log = logging.getLogger("rayflow.kafka")

Codec = Callable[[Any], Any]


def kafka_module() -> Any:
    return require("confluent_kafka", "kafka", "the Kafka connector")


def decoder(kind: str | Codec) -> Codec:
    """``bytes``, ``str``, ``json``, or a callable / dotted path of one, applied to raw bytes.

    >>> decoder("json")(b'{"a": 1}')
    {'a': 1}
    """
    return _codec(kind, {"bytes": same, "str": bytes.decode, "json": json.loads})


def encoder(kind: str | Codec) -> Codec:
    """``bytes``, ``str``, ``json``, or a callable / dotted path of one, giving bytes.

    >>> encoder("json")({"a": 1})
    b'{"a": 1}'
    """
    return _codec(
        kind,
        {
            "bytes": same,
            "str": lambda v: str(v).encode(),
            "json": lambda v: json.dumps(v).encode(),
        },
    )


def same(value: Any) -> Any:
    return value


def _codec(kind: str | Codec, named: dict[str, Codec]) -> Codec:
    if callable(kind):
        return kind
    if kind in named:
        return named[kind]
    module, _, name = str(kind).rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError):
        found = None
    if not callable(found):
        raise ConfigError(
            f"format {kind!r}: expected one of {', '.join(named)} or a function's dotted path"
        )
    return found


def retrying(call: Callable[[], Any], kafka: Any, timeout: float = 60.0) -> Any:
    """``call()``, again while Kafka answers a retriable error (a new broker's group
    coordinator loading, a leader moving) for up to ``timeout`` seconds."""
    e = kafka.KafkaError
    transient = {e.NOT_COORDINATOR, e.COORDINATOR_LOAD_IN_PROGRESS, e.COORDINATOR_NOT_AVAILABLE,
                 e.LEADER_NOT_AVAILABLE, e._TIMED_OUT, e._TRANSPORT}  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except kafka.KafkaException as exc:
            error = exc.args[0] if exc.args else None
            again = error is not None and (error.retriable() or error.code() in transient)
            if not again or time.monotonic() > deadline:
                raise
            log.info("kafka: %s; retrying", error)
            time.sleep(0.2)
