"""The web UI in a real headless Chromium (Debian's ``chromium``, driven by Playwright): the list,
the topology graph with one node per component, counters that update, the buttons.

Set ``RAYFLOW_UI_SCREENSHOT=docs/ui.png`` to refresh the screenshot the README shows.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import TOKEN, Cluster, master_cluster, wait_for

pytestmark = pytest.mark.ray

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def cluster(two_nodes: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with master_cluster(two_nodes, tmp_path_factory.mktemp("ui_project")) as c:
        yield c


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    executable = shutil.which("chromium")
    assert executable, (
        "the web UI tests need Debian's chromium: run `bash scripts/ensure-chromium.sh` "
        "(apt-get install chromium), which `make test` does"
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=executable,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 860},
        )
        try:
            yield context
        finally:
            context.close()


def test_the_ui_draws_the_topology_updates_its_counters_and_its_buttons_work(
    cluster: Cluster, browser: object
) -> None:
    cluster.cli("submit", "ticking.yaml")
    page = browser.pages[0] if browser.pages else browser.new_page()  # type: ignore[attr-defined]
    page.set_default_timeout(30_000)
    page.goto(f"http://127.0.0.1:{cluster.port}/")
    page.wait_for_selector("#topologies >> text=ticking")
    page.click("#topologies a")
    page.wait_for_selector("svg.graph g.node")
    nodes = page.eval_on_selector_all("svg.graph g.node", "els => els.map(e => e.dataset.id)")
    assert nodes == ["ticks", "shout", "sink"], "one node per component"
    edges = page.eval_on_selector_all(
        "svg.graph g.edge", "els => els.map(e => e.dataset.from + '>' + e.dataset.to)"
    )
    assert sorted(edges) == ["shout>sink", "ticks>shout"]
    assert "shuffle" in (page.text_content("svg.graph") or "")

    def executed() -> int:
        text = page.inner_text('tr[data-component="shout"] td.executed')
        return int(text.replace(",", ""))

    first = wait_for(executed, "the UI to show tuples executed by shout")
    wait_for(lambda: executed() > first, "the UI's counters to update")

    page.fill("#token", TOKEN)
    page.click("#deactivate")
    wait_for(lambda: page.inner_text("#status") == "INACTIVE", "the UI to show INACTIVE")
    assert cluster.status()["status"] == "INACTIVE"
    page.click("#activate")
    wait_for(lambda: page.inner_text("#status") == "ACTIVE", "the UI to show ACTIVE")

    shot = os.environ.get("RAYFLOW_UI_SCREENSHOT")
    page.screenshot(path=shot or str(cluster.cwd / "ui.png"), full_page=True)
    assert Path(shot or cluster.cwd / "ui.png").stat().st_size > 10_000

    page.on("dialog", lambda dialog: dialog.accept())  # "Kill topology ticking?"
    page.click("#kill")
    wait_for(
        lambda: json.loads(cluster.cli("list", "--json").stdout) == [],
        "the kill button to kill the topology",
        timeout=90,
    )


def test_the_ui_shows_checkpoints_and_takes_a_savepoint(cluster: Cluster, browser: object) -> None:
    cluster.cli("submit", "ticking-eo.yaml")
    page = browser.pages[0] if browser.pages else browser.new_page()  # type: ignore[attr-defined]
    page.set_default_timeout(30_000)
    page.goto(f"http://127.0.0.1:{cluster.port}/#/topology/ticking-eo")
    page.wait_for_selector('#checkpoints tr.checkpoint[data-status="COMPLETED"]')
    # ticks -FORWARD-> sink chain: one box around both, the edge between them marked
    assert page.is_visible('svg.graph g.chain[data-head="ticks"]')
    assert page.is_visible('svg.graph g.edge.chained[data-from="ticks"][data-to="sink"]')
    assert "completed" in page.inner_text("#checkpoint-summary")
    page.fill("#token", TOKEN)
    page.click("#savepoint")
    page.wait_for_selector("#message >> text=savepoint written to")
    path = page.inner_text("#message").rsplit(" ", 1)[1]
    assert (Path(path) / "_metadata").exists()
    page.wait_for_selector("#checkpoints >> text=(savepoint)")
    cluster.cli("kill", "ticking-eo", "--wait", "0")
