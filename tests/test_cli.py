"""The ``rayflow`` command: exit codes and messages (no Ray needed here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayflow.cli import EXIT_OK, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parent.parent
WORDCOUNT = str(ROOT / "examples" / "wordcount.yaml")


def test_validate_prints_the_graph(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", WORDCOUNT, "-D", "PARALLELISM=3"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "bolt  split x3  examples.wordcount.SplitSentence" in out
    assert "split -> count  FIELDS(word)" in out


def test_a_wrong_topology_file_exits_2_naming_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\n"
        "spouts:\n"
        "  - id: s\n"
        "    className: examples.wordcount.RandomSentenceSpout\n"
        "    paralelism: 2\n"
    )
    assert main(["run", str(bad)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{bad}:5" in err and "paralelism" in err and "parallelism" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "missing.yaml"], "no such topology file"),
        (["run", WORDCOUNT, "--duration", "soon"], "--duration"),
        (["run", WORDCOUNT, "-D", "NOVALUE"], "-D expects NAME=value"),
        (["run", WORDCOUNT, "-c", "batch.size=zero"], "batch.size"),
        (["run", WORDCOUNT, "--filter", "missing.properties"], "--filter"),
    ],
)
def test_wrong_arguments_exit_2_with_one_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_help_lists_the_config_keys_and_their_environment_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "batch.linger.ms" in out and "RAYFLOW_BATCH_SIZE" in out
