"""The README's Python example runs as written, on the session's Ray."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.ray


def test_the_readme_python_example_runs(
    ray_session: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    exec(compile(code.group(1), str(README), "exec"), {"__name__": "readme_example"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[('cow', 100), ('jumped', 100), ('the', 100)]"
    assert "'emitted': 300" in lines[1] and "'executed': 100" in lines[1]
