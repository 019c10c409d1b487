"""The restart strategy (pure logic, a fake clock) and its settings, aliases included."""

from __future__ import annotations

from typing import Any

import pytest

from rayflow.errors import RayflowError
from rayflow.runtime.driver.restart import RestartsExhausted, RestartStrategy
from rayflow.spec.settings import SettingError, Settings, settings_help


def strategy(**config: Any) -> RestartStrategy:
    settings, extra = Settings.from_config(config, environ={})
    assert extra == {}
    return RestartStrategy.from_settings(settings)


def test_the_defaults_are_exponential_delay_from_1s_to_1min() -> None:
    s = strategy()
    delays = [s.on_failure(float(t)) for t in range(10)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0]
    view = s.describe(10.0)
    assert view["strategy"] == "exponential-delay"
    assert (view["failures"], view["next_delay"], view["last_failure"]) == (10, None, 9.0)
    assert "task.restarts: 10" in view["reason"]


def test_a_crash_loop_fails_the_job_naming_the_key_to_raise() -> None:
    s = strategy(**{"task.restarts": 3, "restart.delay": 0})
    assert [s.on_failure(t * 0.1) for t in range(3)] == [0.0, 0.0, 0.0]
    with pytest.raises(RestartsExhausted) as caught:
        s.on_failure(0.3)
    assert str(caught.value) == "4 failures with no 10min without one (task.restarts: 3)"
    assert isinstance(caught.value, RayflowError)
    with pytest.raises(RestartsExhausted, match=r"task\.restarts: 3"):
        s.on_failure(10_000.0)  # given up for good
    assert s.describe(10_000.0)["reason"] == str(caught.value)


def test_a_dozen_failures_spread_over_time_survive_a_short_reset_after() -> None:
    s = strategy(**{"restart.reset-after": "5s", "task.restarts": 2})
    delays = [s.on_failure(t * 6.0) for t in range(12)]
    assert delays == [1.0] * 12
    view = s.describe(12 * 6.0)
    assert view["failures"] == 0 and view["next_delay"] == 1.0  # the stable period reset it


def test_the_delay_and_count_start_afresh_after_a_stable_period() -> None:
    s = strategy(**{"restart.reset-after": "1m", "restart.backoff": 3, "restart.delay": "2s"})
    assert [s.on_failure(t) for t in (0.0, 1.0, 2.0)] == [2.0, 6.0, 18.0]
    assert s.describe(3.0)["next_delay"] == 54.0
    assert s.on_failure(62.0) == 2.0  # 60s after the previous one
    assert s.describe(63.0)["failures"] == 1


def test_fixed_delay_waits_the_same_and_counts_like_exponential() -> None:
    s = strategy(**{"restart.strategy": "fixed-delay", "restart.delay": "3s", "task.restarts": 2})
    assert [s.on_failure(0.0), s.on_failure(1.0)] == [3.0, 3.0]
    assert s.describe(1.5)["next_delay"] is None
    with pytest.raises(RestartsExhausted, match=r"3 failures .*\(task\.restarts: 2\)"):
        s.on_failure(2.0)


def test_failure_rate_fails_on_more_than_max_within_the_interval() -> None:
    config = {"restart.strategy": "failure-rate", "restart.failure-rate.max": 3}
    s = strategy(**config, **{"restart.failure-rate.interval": "5m", "task.restarts": 0})
    assert [s.on_failure(t) for t in (0.0, 100.0, 200.0)] == [1.0, 1.0, 1.0]
    assert s.describe(250.0) == {
        "strategy": "failure-rate",
        "failures": 3,
        "next_delay": None,
        "last_failure": 200.0,
        "reason": "3 failures within 5min (restart.failure-rate.max: 3): restart in 1s",
    }
    assert s.on_failure(300.0) == 1.0  # the one at 0 left the window: 3 within (0, 300]
    assert s.describe(450.0)["failures"] == 2
    with pytest.raises(RestartsExhausted) as caught:
        s.on_failure(399.0)
    assert str(caught.value) == "4 failures within 5min (restart.failure-rate.max: 3)"


def test_failure_rate_survives_many_failures_spread_out() -> None:
    s = strategy(**{"restart.strategy": "failure-rate", "restart.failure-rate.max": 1})
    assert [s.on_failure(t * 301.0) for t in range(20)] == [1.0] * 20


def test_none_fails_on_the_first_failure() -> None:
    s = strategy(**{"restart.strategy": "none"})
    assert s.describe(0.0)["next_delay"] is None
    with pytest.raises(RestartsExhausted, match=r"^restart\.strategy: none$"):
        s.on_failure(0.0)
    assert s.describe(1.0)["failures"] == 1


def test_describe_before_any_failure() -> None:
    assert strategy().describe(5.0) == {
        "strategy": "exponential-delay",
        "failures": 0,
        "next_delay": 1.0,
        "last_failure": None,
        "reason": "no failure yet",
    }


def test_a_huge_count_does_not_overflow_the_backoff() -> None:
    s = strategy(**{"task.restarts": 5000, "restart.backoff": 10, "restart.max-delay": "5s"})
    assert [s.on_failure(float(t)) for t in range(2000)][-1] == 5.0


def test_the_old_keys_are_aliases() -> None:
    settings, extra = Settings.from_config(
        {"task.restart.delay": "250ms", "task.restart.backoff": 3}, environ={}
    )
    assert (settings.restart_delay, settings.restart_backoff, extra) == (0.25, 3.0, {})
    assert (settings.task_restart_delay, settings.task_restart_backoff) == (0.25, 3.0)
    env = {"RAYFLOW_TASK_RESTART_DELAY": "7s", "RAYFLOW_TASK_RESTART_BACKOFF": "1.5"}
    settings, _ = Settings.from_config({}, environ=env)
    assert (settings.restart_delay, settings.restart_backoff) == (7.0, 1.5)
    assert Settings.canonical_key("task.restart.delay") == "restart.delay"
    assert Settings.canonical_key("batch.size") == "batch.size"
    assert "alias task.restart.delay" in settings_help()


def test_the_new_key_beats_the_alias_and_the_config_beats_the_environment() -> None:
    both = {"restart.delay": "2s", "task.restart.delay": "9s"}
    assert Settings.from_config(both, environ={})[0].restart_delay == 2.0
    env = {"RAYFLOW_RESTART_DELAY": "3s", "RAYFLOW_TASK_RESTART_DELAY": "9s"}
    assert Settings.from_config({}, environ=env)[0].restart_delay == 3.0
    assert Settings.from_config({"task.restart.delay": 4}, environ=env)[0].restart_delay == 4.0
    env = {"RAYFLOW_RESTART_MAX_DELAY": "2m", "RAYFLOW_RESTART_FAILURE_RATE_MAX": "4"}
    settings, _ = Settings.from_config({}, environ=env)
    assert (settings.restart_max_delay, settings.restart_failure_rate_max) == (120.0, 4)


@pytest.mark.parametrize(
    ("config", "environ", "key", "message"),
    [
        ({"restart.strategy": "sometimes"}, {}, "restart.strategy", "expected one of"),
        ({"restart.delay": "soon"}, {}, "restart.delay", "expected a duration"),
        ({"task.restart.delay": -1}, {}, "task.restart.delay", "cannot be negative"),
        ({"restart.backoff": 0.5}, {}, "restart.backoff", "at least 1"),
        ({"task.restart.backoff": "x"}, {}, "task.restart.backoff", "at least 1"),
        ({"restart.reset-after": 0}, {}, "restart.reset-after", "above 0"),
        ({"restart.max-delay": "1y"}, {}, "restart.max-delay", "expected a duration"),
        ({"task.restarts": -1}, {}, "task.restarts", "positive integer"),
        ({"restart.failure-rate.max": 0}, {}, "restart.failure-rate.max", "positive integer"),
        ({"restart.failure-rate.interval": "0s"}, {}, "restart.failure-rate.interval", "above 0"),
        ({}, {"RAYFLOW_TASK_RESTART_DELAY": "x"}, "task.restart.delay", "RAYFLOW_TASK_RE"),
    ],
)
def test_bad_values_name_the_key(
    config: dict[str, Any], environ: dict[str, str], key: str, message: str
) -> None:
    with pytest.raises(SettingError, match=message) as caught:
        Settings.from_config(config, environ=environ)
    assert caught.value.key == key
    assert str(caught.value).startswith(key if config else "environment variable")


def test_non_default_values_round_trip() -> None:
    config = {
        "restart.strategy": "failure_rate",
        "restart.delay": "500ms",
        "restart.max-delay": "2h",
        "restart.backoff": 1.5,
        "restart.reset-after": "1d",
        "task.restarts": 0,
        "restart.failure-rate.max": 7,
        "restart.failure-rate.interval": "90s",
    }
    settings, _ = Settings.from_config(config, environ={})
    restart = {k: v for k, v in settings.as_config().items() if k in config}
    assert restart == {
        **config,
        **{"restart.strategy": "failure-rate", "restart.delay": 0.5, "restart.max-delay": 7200.0},
        **{"restart.reset-after": 86400.0, "restart.failure-rate.interval": 90.0},
    }
    again, extra = Settings.from_config(restart, environ={})
    assert again == settings and extra == {}
    assert RestartStrategy.from_settings(again) == RestartStrategy(
        "failure-rate", 0.5, 7200.0, 1.5, 86400.0, 0, 7, 90.0
    )
    assert not {"task.restart.delay", "task.restart.backoff"} & set(settings.as_config())


def test_an_unknown_strategy_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"restart\.strategy"):
        RestartStrategy("sometimes")
