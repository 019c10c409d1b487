"""Write (or check) the values table of helm/rayflow/README.md from values.yaml's `# --` comments.

    python scripts/chart_readme.py           # rewrite the table between the markers
    python scripts/chart_readme.py --check   # exit 1: README.md is stale or a value lacks a comment

A `# -- text` comment (continued by plain `#` lines) documents the key below it, in the style of
helm-docs; every value must be documented, by its own comment or by its parent's.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "helm" / "rayflow"
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"
KEY = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):")


def documented(values_text: str) -> dict[str, str]:
    """Dotted key -> description, for every key with a ``# --`` comment."""
    docs: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        match = KEY.match(line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if pending is not None:
            docs[".".join(k for _, k in stack)] = " ".join(pending)
            pending = None
    return docs


def leaves(values: Any, prefix: str = "") -> list[str]:
    """Dotted keys of every value that is not a non-empty mapping."""
    if isinstance(values, dict) and values:
        return [leaf for k, v in values.items() for leaf in leaves(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def lookup(values: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        values = values[part]
    return values


def table(values_text: str) -> str:
    values = yaml.safe_load(values_text)
    docs = documented(values_text)
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for key, text in docs.items():
        value = lookup(values, key)
        kind = type(value).__name__.replace("dict", "object").replace("str", "string")
        default = json.dumps(value, separators=(", ", ": ")).replace("|", "\\|")
        rows.append(f"| `{key}` | {kind} | `{default}` | {text} |")
    return "\n".join(rows)


def undocumented(values_text: str) -> list[str]:
    docs = documented(values_text)
    return [
        leaf
        for leaf in leaves(yaml.safe_load(values_text))
        if not any(leaf == d or leaf.startswith(d + ".") for d in docs)
    ]


def main(argv: list[str]) -> int:
    values_text = (CHART / "values.yaml").read_text()
    readme_path = CHART / "README.md"
    readme = readme_path.read_text()
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    wanted = f"{head}{BEGIN}\n{table(values_text)}\n{END}{tail}"
    missing = undocumented(values_text)
    if "--check" in argv:
        if missing:
            print(f"values without a `# --` comment: {', '.join(missing)}", file=sys.stderr)
        if wanted != readme:
            print(
                "helm/rayflow/README.md is stale: python scripts/chart_readme.py", file=sys.stderr
            )
        return 1 if missing or wanted != readme else 0
    readme_path.write_text(wanted)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
