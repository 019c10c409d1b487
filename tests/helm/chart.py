"""Render the rayflow chart with the real ``helm`` (built by scripts/ensure-helm.sh)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.services import MissingPart, built_binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "rayflow"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
KUBE_VERSION = "1.31.0"  # a helm built with `go install` assumes an old one: always pass it


@functools.cache  # one look (and build, the first time) per test session, not per helm call
def helm_binary() -> str:
    """The helm binary, built on first use; fails (never skips) with what is missing."""
    found = os.environ.get("RAYFLOW_HELM")
    if found:
        return found
    try:
        return built_binary(ROOT / "scripts" / "ensure-helm.sh", "the real helm")
    except MissingPart as exc:
        pytest.fail(str(exc))


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([helm_binary(), *args], capture_output=True, text=True, cwd=ROOT)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def render(*options: str, release: str = "wc") -> list[dict[str, Any]]:
    """``helm template`` with ``options`` (``-f``, ``--set``, ``--set-file``): the objects."""
    out = helm("template", release, str(CHART), "--kube-version", KUBE_VERSION, *options)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
