"""The web UI in a real headless Chromium (Debian's ``chromium``, driven by Playwright): the list,
the topology graph with one node per component and labels clear of the boxes, counters that
update, charts that move and show what the history API serves, a component's page with its tasks
and live log lines, the checkpoint tab, the buttons.

Set ``RAYFLOW_UI_SCREENSHOTS=FOLDER`` to keep its screenshots there (``ui.png``,
``ui-component.png``, ``ui-checkpoints.png``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium
from tests.cluster import TOKEN, Cluster, master_cluster, wait_for

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster(two_nodes: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with master_cluster(two_nodes, tmp_path_factory.mktemp("ui_project")) as c:
        yield c


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


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

    _charts_follow_the_history(cluster, page)
    _markers_at_the_timeline_events(cluster, page)
    _labels_clear_of_boxes(page)
    _screenshot(page, cluster, "ui.png")

    page.click('svg.graph g.node[data-id="shout"]')
    page.wait_for_selector("#tasks tr[data-task='1']")
    tasks = page.eval_on_selector_all("#tasks tr[data-task]", "els => els.map(e => e.dataset.task)")
    assert tasks == ["0", "1"], "a row per task of shout"
    page.wait_for_selector("pre.log[data-task='0'] >> text=shout task 0 ready")
    page.wait_for_selector("pre.log[data-task='1'] >> text=shout task 1 ready")
    lines = "rayflowCharts.executed && rayflowCharts.executed.series.length"
    wait_for(lambda: page.evaluate(lines) == 3, "a line per task in the component's chart")
    page.uncheck("#tasks input.follow[data-task='1']")
    wait_for(lambda: not page.is_visible("pre.log[data-task='1']"), "task 1's log hidden")
    _screenshot(page, cluster, "ui-component.png")
    page.click("#tab-overview")
    page.wait_for_selector("svg.graph g.node")

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
    page.wait_for_selector('svg.graph g.chain[data-head="ticks"]')
    # ticks -FORWARD-> sink chain: one box around both, the edge between them marked
    assert page.is_visible('svg.graph g.edge.chained[data-from="ticks"][data-to="sink"]')
    page.click("#tab-checkpoints")
    page.wait_for_selector('#checkpoints tr.checkpoint[data-status="COMPLETED"]')
    assert "completed" in page.inner_text("#checkpoint-summary")

    def durations_charted() -> list[float]:
        drawn = page.evaluate("rayflowCharts['checkpoint-duration'].data[1]")
        return [d for d in drawn if d is not None] if len(drawn) >= 2 else []

    drawn = wait_for(durations_charted, "two checkpoint durations in the chart")
    history = cluster.status("ticking-eo")["checkpoints"]["history"]
    rest = {round(h["duration_ms"], 3) for h in history if h["status"] == "COMPLETED"}
    assert {round(d, 3) for d in drawn} <= rest, "the chart draws the REST history's durations"
    page.fill("#token", TOKEN)
    page.click("#savepoint")
    page.wait_for_selector("#message >> text=savepoint written to")
    path = page.inner_text("#message").rsplit(" ", 1)[1]
    assert (Path(path) / "_metadata").exists()
    page.wait_for_selector("#checkpoints >> text=(savepoint)")
    wait_for(lambda: path in page.inner_text("#latest-savepoint"), "the latest savepoint's path")
    _screenshot(page, cluster, "ui-checkpoints.png")
    cluster.cli("kill", "ticking-eo", "--wait", "0")


def _charts_follow_the_history(cluster: Cluster, page: Any) -> None:
    """The throughput chart holds what ``GET .../history`` serves for the same instants, and
    moves: new samples arrive while the page is open."""

    def shout_line() -> tuple[list[float], list[float | None]] | None:
        chart = page.evaluate(
            "(() => { const c = rayflowCharts.executed; if (!c) return null;"
            " const i = c.series.findIndex(s => s.label === 'shout');"
            " return i < 0 ? null : [c.data[0], c.data[i]]; })()"
        )
        if not chart or sum(v is not None for v in chart[1]) < 3:
            return None
        return chart[0], chart[1]

    times, drawn = wait_for(shout_line, "three samples of shout in the throughput chart")
    _, rest = cluster.http("GET", "/api/v1/topologies/ticking/history?component=shout"
                           f"&metrics=executed&since={times[0] - 0.5}")  # fmt: skip
    served = dict(zip(rest["times"], rest["series"][0]["values"], strict=True))
    common = [t for t in times if t in served]
    assert len(common) >= 3, (times, rest["times"])
    for t in common:
        value = drawn[times.index(t)]
        assert value == served[t], f"the chart's {value} at {t} against the API's {served[t]}"
    assert max(v for v in drawn if v is not None) > 0, "shout executes tuples"
    # the page asks only for the slots after its last, from the same window
    with page.expect_request(lambda r: "/history?" in r.url and "&step=1" in r.url):
        pass
    wait_for(lambda: (line := shout_line()) and line[0][-1] > times[-1], "the chart to move")
    times, drawn = wait_for(shout_line, "the moved chart")
    _, rest = cluster.http("GET", "/api/v1/topologies/ticking/history?component=shout"
                           f"&metrics=executed&since={times[0] - 0.5}")  # fmt: skip
    assert rest["times"][: len(times)] == times, "slots added since, none skipped or repeated"
    assert rest["series"][0]["values"][: len(times)] == drawn


def _markers_at_the_timeline_events(cluster: Cluster, page: Any) -> None:
    """The deactivate and activate the test just clicked are marked on the throughput chart, at
    the times of the REST timeline's events."""
    timeline = cluster.status("ticking")["timeline"]
    wanted = {(e["kind"], e["time"]) for e in timeline if e["kind"] in ("activate", "deactivate")}
    assert {kind for kind, _ in wanted} == {"activate", "deactivate"}, timeline

    def marked() -> bool:
        drawn = page.evaluate("(rayflowCharts.executed || {}).rayflowMarkers || []")
        return {(m["kind"], m["time"]) for m in drawn} >= wanted

    wait_for(marked, "markers at the deactivate and activate on the throughput chart")


def _labels_clear_of_boxes(page: Any) -> None:
    """No edge label runs under a component's box (``fields(word)`` once did)."""
    overlaps = page.evaluate(
        """(() => {
        const boxes = [...document.querySelectorAll('svg.graph g.node rect')]
            .map(r => r.getBoundingClientRect());
        return [...document.querySelectorAll('svg.graph text.edge')].flatMap(t => {
            const a = t.getBoundingClientRect();
            return boxes.filter(b => a.left < b.right && b.left < a.right && a.top < b.bottom
                && b.top < a.bottom).map(() => t.textContent);
        });
        })()"""
    )
    assert overlaps == [], f"labels under boxes: {overlaps}"


def _screenshot(page: Any, cluster: Cluster, name: str) -> None:
    """Into ``$RAYFLOW_UI_SCREENSHOTS`` (docs/ refreshes the README's), else the test's folder."""
    folder = Path(os.environ.get("RAYFLOW_UI_SCREENSHOTS") or cluster.cwd)
    page.screenshot(path=str(folder / name), full_page=True)
    assert (folder / name).stat().st_size > 10_000
