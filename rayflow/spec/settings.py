"""Runtime settings: the typed knobs a topology's ``config`` may set.

Each knob has a YAML key (``batch.size``), an environment variable (``RAYFLOW_BATCH_SIZE``) and a
default. Precedence, lowest first: default, environment, the topology's ``config``, ``-c`` on the
command line. Keys rayflow does not know are left to the user (``context.config``).

>>> s, extra = Settings.from_config({"batch.size": 64, "batch.linger.ms": "2ms", "app.x": 1})
>>> s.batch_size, s.batch_linger, extra
(64, 0.002, {'app.x': 1})
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rayflow.spec.durations import parse_duration
from rayflow.spec.state_settings import DEFAULT_ROCKSDB_MEMORY, parse_backend, parse_memory


class Reliability(enum.StrEnum):
    """How a topology processes tuples (YAML ``reliability:``): ``none`` (at most once),
    ``at_least_once`` (Storm's acking, replays) or ``exactly_once`` (Flink's checkpoints).
    A member is its string, so it compares, prints and serialises as one.

    >>> Reliability("exactly_once") is Reliability.EXACTLY_ONCE, f"{Reliability.NONE}"
    (True, 'none')
    >>> Reliability.AT_LEAST_ONCE == "at_least_once"
    True
    """

    NONE = "none"
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


RELIABILITY_MODES = tuple(mode.value for mode in Reliability)
RESTART_STRATEGIES = ("exponential-delay", "failure-rate", "fixed-delay", "none")


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a positive integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return number


def _non_negative_int(value: Any) -> int:
    return 0 if value in (0, "0") else _positive_int(value)


def _optional_positive_int(value: Any) -> int | None:
    return None if value in (None, "", "none") else _positive_int(value)


def _factor(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of at least 1, got {value!r}") from None
    if number < 1:
        raise ValueError(f"expected a number of at least 1, got {value!r}")
    return number


def _reliability(value: Any) -> Reliability:
    text = str(value).strip().lower().replace("-", "_")
    if text not in RELIABILITY_MODES:
        raise ValueError(f"expected one of {', '.join(RELIABILITY_MODES)}, got {value!r}")
    return Reliability(text)


def _seconds(value: Any) -> float:
    return parse_duration(value, "s")


def _millis(value: Any) -> float:
    return parse_duration(value, "ms")


def parse_flag(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _transport(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("socket", "ray"):
        raise ValueError(f"expected socket or ray, got {value!r}")
    return text


def _tls_mode(value: Any) -> str:
    text = str(value).strip().lower()
    if text in ("auto", ""):
        return "auto"
    return "true" if parse_flag(text) else "false"


def _text(value: Any) -> str:
    return str(value)


def _restart_strategy(value: Any) -> str:
    text = str(value).strip().lower().replace("_", "-")
    if text not in RESTART_STRATEGIES:
        raise ValueError(f"expected one of {', '.join(RESTART_STRATEGIES)}, got {value!r}")
    return text


def _positive_seconds(value: Any) -> float:
    seconds = parse_duration(value, "s")
    if seconds <= 0:
        raise ValueError(f"expected a duration above 0, got {value!r}")
    return seconds


def _knob(
    key: str,
    default: Any,
    parse: Callable[[Any], Any],
    doc: str,
    aliases: tuple[str, ...] = (),
) -> Any:
    """A knob; ``aliases`` are older keys read too (the key itself wins when both are given)."""
    metadata = {"key": key, "parse": parse, "doc": doc, "aliases": aliases}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """The runtime knobs of one topology (see the module docstring for precedence)."""

    reliability: Reliability = _knob(  # noqa: RUF009 (an enum member: immutable)
        "reliability", Reliability.NONE, _reliability, "none | at_least_once | exactly_once"
    )
    batch_size: int = _knob(
        "batch.size",
        4096,
        _positive_int,
        "most tuples per batch between tasks (fewer when rows are big: batches stay < 64 KiB)",
    )
    batch_linger: float = _knob(
        "batch.linger.ms", 0.005, _millis, "longest a partly filled batch waits in a busy task"
    )
    channel_credits: int = _knob(
        "channel.credits", 4, _positive_int, "batches in flight per channel (backpressure)"
    )
    tuple_reuse: bool = _knob(
        "tuple.reuse",
        False,
        parse_flag,
        "per-tuple process() gets one reused Tuple object per batch (faster; don't keep tup)",
    )
    chaining: bool = _knob(
        "chaining",
        True,
        parse_flag,
        "run a bolt fed only by a FORWARD edge in its producer's task actor (false: never)",
    )
    channel_transport: str = _knob(
        "channel.transport",
        "socket",
        _transport,
        "how batches travel between task actors: socket (TCP, faster) or ray (actor calls)",
    )
    channel_tls: str = _knob(
        "channel.tls",
        "auto",
        _tls_mode,
        "TLS for socket channels: auto (where Ray uses TLS: RAY_USE_TLS), true or false",
    )
    channel_tls_cert: str = _knob(
        "channel.tls.cert", "", _text, "a task's certificate (default: RAY_TLS_SERVER_CERT)"
    )
    channel_tls_key: str = _knob(
        "channel.tls.key", "", _text, "its private key (default: RAY_TLS_SERVER_KEY)"
    )
    channel_tls_ca: str = _knob(
        "channel.tls.ca", "", _text, "the CA both ends trust (default: RAY_TLS_CA_CERT)"
    )
    max_parallelism: int = _knob(
        "max_parallelism", 128, _positive_int, "key groups; the upper bound of any parallelism"
    )
    message_timeout: float = _knob(
        "message.timeout", 30.0, _seconds, "at_least_once: a tuple tree not done by then fails"
    )
    max_spout_pending: int | None = _knob(
        "max.spout.pending", None, _optional_positive_int, "un-acked tuples per spout task"
    )
    checkpoint_interval: float = _knob(
        "checkpoint.interval", 10.0, _seconds, "exactly_once: time between checkpoints"
    )
    checkpoint_storage: str = _knob(
        "checkpoint.storage", "", _text, "exactly_once: folder or fsspec URL for snapshots"
    )
    checkpoint_timeout: float = _knob(
        "checkpoint.timeout", 120.0, _seconds, "exactly_once: a checkpoint not done by then aborts"
    )
    checkpoint_retained: int = _knob(
        "checkpoint.retained", 3, _positive_int, "exactly_once: complete checkpoints kept"
    )
    state_backend: str = _knob(
        "state.backend", "memory", parse_backend, "keyed state in memory or rocksdb (local disk)"
    )
    state_rocksdb_dir: str = _knob(
        "state.rocksdb.dir", "", _text, "rocksdb: the local folder (default: the temp folder)"
    )
    state_rocksdb_memory: int = _knob(
        "state.rocksdb.memory",
        DEFAULT_ROCKSDB_MEMORY,
        parse_memory,
        "rocksdb: a task's block cache and write buffers together (bytes or 64MiB)",
    )
    restart_strategy: str = _knob(
        "restart.strategy",
        "exponential-delay",
        _restart_strategy,
        "when a task of the job fails: exponential-delay, failure-rate, fixed-delay or none",
    )
    restart_delay: float = _knob(
        "restart.delay",
        1.0,
        _seconds,
        "wait before the first restart (before each: fixed-delay, failure-rate)",
        aliases=("task.restart.delay",),
    )
    restart_max_delay: float = _knob(
        "restart.max-delay", 60.0, _seconds, "exponential-delay: the longest wait"
    )
    restart_backoff: float = _knob(
        "restart.backoff",
        2.0,
        _factor,
        "exponential-delay: the wait grows by this per failure",
        aliases=("task.restart.backoff",),
    )
    restart_reset_after: float = _knob(
        "restart.reset-after",
        600.0,
        _positive_seconds,
        "this long without a failure: the wait and the count start afresh",
    )
    task_restarts: int = _knob(
        "task.restarts",
        10,
        _non_negative_int,
        "failures with no restart.reset-after between them before the job fails",
    )
    restart_failure_rate_max: int = _knob(
        "restart.failure-rate.max", 10, _positive_int, "failure-rate: most failures per interval"
    )
    restart_failure_rate_interval: float = _knob(
        "restart.failure-rate.interval", 300.0, _positive_seconds, "failure-rate: the interval"
    )
    stall_timeout: float = _knob(
        "stall.timeout", 60.0, _seconds, "warn naming the stuck component after this long"
    )
    startup_timeout: float = _knob(
        "startup.timeout", 60.0, _seconds, "how long a task may stay unscheduled before failing"
    )

    @classmethod
    def knobs(cls) -> list[dataclasses.Field]:
        """The knobs, in declaration order (used by ``--help``)."""
        return list(dataclasses.fields(cls))

    @staticmethod
    def env_name(key: str) -> str:
        """``batch.linger.ms`` -> ``RAYFLOW_BATCH_LINGER_MS``."""
        return "RAYFLOW_" + key.upper().replace(".", "_").replace("-", "_")

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
    ) -> tuple[Settings, dict[str, Any]]:
        """Split ``config`` into typed settings and the user's own keys.

        Raises ``KeyError``-free ``ValueError`` naming the key on a bad value; callers add the
        file and line. A knob's aliases are read too, each at its level (the environment, then
        the config); within a level the knob's own key wins over its aliases.

        >>> Settings.from_config({"task.restart.delay": "2s"}, environ={})[0].restart_delay
        2.0
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for knob in cls.knobs():
            parse = knob.metadata["parse"]
            names = cls._names(knob)
            given = [(name, config[name], name) for name in names if name in config]
            given += [
                (name, environ[cls.env_name(name)], f"environment variable {cls.env_name(name)}")
                for name in names
                if cls.env_name(name) in environ
            ]
            given = [entry for entry in given if entry[1] is not None]
            if not given:
                continue
            name, raw, where = given[0]
            try:
                values[knob.name] = parse(raw)
            except ValueError as exc:
                raise SettingError(name, f"{where}: {exc}") from None
        known = {name for knob in cls.knobs() for name in cls._names(knob)}
        extra = {k: v for k, v in config.items() if k not in known}
        return cls(**values), extra

    @staticmethod
    def _names(knob: dataclasses.Field) -> tuple[str, ...]:
        return (knob.metadata["key"], *knob.metadata["aliases"])

    @classmethod
    def canonical_key(cls, key: str) -> str:
        """A knob's own key for one of its aliases: ``task.restart.delay`` -> ``restart.delay``.

        Callers that merge an override into :meth:`as_config` output rename it first, so that
        ``-c task.restart.delay=5`` is not hidden by ``restart.delay``.
        """
        for knob in cls.knobs():
            if key in knob.metadata["aliases"]:
                return knob.metadata["key"]
        return key

    def as_config(self) -> dict[str, Any]:
        """The settings under their YAML keys (durations in seconds)."""
        return {f.metadata["key"]: getattr(self, f.name) for f in self.knobs()}

    @property
    def task_restart_delay(self) -> float:
        """The old name of :attr:`restart_delay` (read-only)."""
        return self.restart_delay

    @property
    def task_restart_backoff(self) -> float:
        """The old name of :attr:`restart_backoff` (read-only)."""
        return self.restart_backoff


class SettingError(ValueError):
    """A bad value for one knob; ``key`` names it so the YAML loader can find its line."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def settings_help() -> str:
    """One line per knob: key, environment variable, default and meaning."""
    lines = []
    for knob in Settings.knobs():
        key = knob.metadata["key"]
        aliases = knob.metadata["aliases"]
        doc = knob.metadata["doc"] + (f" (alias {', '.join(aliases)})" if aliases else "")
        lines.append(f"  {key:<22} {Settings.env_name(key):<32} default {knob.default!r:<8} {doc}")
    return "\n".join(lines)
