"""A real headless Chromium (Debian's ``chromium``, driven by Playwright) for the UI tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A browser context with its profile in ``profile``; fails saying how to get Chromium."""
    executable = shutil.which("chromium")
    assert executable, (
        "the web UI tests need Debian's chromium: run `bash scripts/ensure-chromium.sh` "
        "(apt-get install chromium), which `make test` does"
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 860},
        )
        try:
            yield context
        finally:
            context.close()
