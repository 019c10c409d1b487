"""``--ui-host``, ``--ui-token`` and ``--ui-allowed-hosts`` of ``rayflow run``, ``master`` and
``submit``: a web UI beyond loopback without a token is refused with one message (exit 2) before
any Ray is started or reached (no Ray needed here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayflow.cli import EXIT_USAGE, build_parser, main

WORDCOUNT = str(Path(__file__).resolve().parents[2] / "examples" / "wordcount.yaml")


@pytest.fixture(autouse=True)
def _no_ui_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAYFLOW_UI_HOST", "RAYFLOW_UI_TOKEN", "RAYFLOW_UI_ALLOWED_HOSTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", WORDCOUNT, "--ui-host", "0.0.0.0"], "0.0.0.0 without a token"),
        (["master", "--ui-host", "10.1.2.3"], "10.1.2.3 without a token"),
        (["submit", WORDCOUNT, "--ui-host", "0.0.0.0"], "without a token"),
        (["run", WORDCOUNT, "--ui-allowed-hosts", "ui.example:8744"], "without ports"),
        (["master", "--ui-allowed-hosts", "a b"], "'a b' is not a host name"),
    ],
)
def test_a_ui_open_to_the_network_without_a_token_is_refused_before_ray(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    # Another test of the session may have started a Ray in this process already: what counts
    # is that this command would neither start one nor connect to one.
    calls: list[object] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: calls.append((a, k)))
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert calls == [], "the refusal came after Ray was started"


def test_run_takes_the_ui_flags_master_takes() -> None:
    parser = build_parser()
    run = parser.parse_args(["run", WORDCOUNT, "--ui-host", "0.0.0.0", "--ui-token", "t",
                             "--ui-allowed-hosts", "ui.example"])  # fmt: skip
    master = parser.parse_args(["master", "--ui-token", "t", "--ui-allowed-hosts", "ui.example"])
    assert (run.ui_host, run.ui_token, run.ui_allowed_hosts) == ("0.0.0.0", "t", "ui.example")
    assert (master.ui_token, master.ui_allowed_hosts) == ("t", "ui.example")
    assert parser.parse_args(["run", WORDCOUNT]).ui_host == "127.0.0.1"
