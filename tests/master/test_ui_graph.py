"""The UI's topology graph stays readable at 20+ components: drawn by the UI's own ``graph.js``
in a real headless Chromium from what the REST detail serves for a real topology's spec, then
measured on the page: no box over a box, no label over a box or another label, no edge through a
box that is not its end, every label next to its edge, chains boxed."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rayflow import Bolt, Topology
from rayflow.master.summary import graph_of
from rayflow.runtime.chaining import Chains
from rayflow.testing import TestingSpout
from tests.browser import chromium

UI = Path(__file__).resolve().parents[2] / "rayflow" / "master" / "ui"


class Events(TestingSpout):
    outputs = {"default": ["user", "sku", "region", "payload"], "metrics": ["name", "value"]}


class Step(Bolt):
    outputs = {
        "default": ["user", "sku", "region", "payload"],
        "metrics": ["name", "value"],
        "invalid": ["payload", "reason"],
    }


def etl_topology() -> Topology:
    """27 components: three sources each parsed in a chain, validation with a dead-letter
    stream, enrichment, a three-way join, scoring and alerts, aggregates, and metrics and audit
    streams that fan in from every column to sinks far to the right."""
    t = Topology("etl", config={"chaining": True})
    for source in ("clicks", "orders", "inventory"):
        t.spout(source, Events, args=([],), parallelism=2)
        t.bolt(f"parse-{source}", Step, parallelism=2).forward(source)
        t.bolt(f"validate-{source}", Step, parallelism=2).shuffle(f"parse-{source}")
        t.bolt(f"enrich-{source}", Step, parallelism=3).fields(f"validate-{source}", "user")
    t.bolt("sessionize", Step, parallelism=2).fields("enrich-clicks", "user")
    join = t.bolt("join-orders-clicks-stock", Step, parallelism=4)
    join.fields("sessionize", "user").fields("enrich-orders", "user")
    join.fields("enrich-inventory", "sku")
    t.bolt("fraud-score", Step, parallelism=2).shuffle("join-orders-clicks-stock")
    t.bolt("alerts", Step).global_("fraud-score")
    t.bolt("alerts-to-kafka", Step).shuffle("alerts")
    t.bolt("revenue-per-minute", Step, parallelism=2).fields("join-orders-clicks-stock", "region")
    t.bolt("revenue-to-redis", Step).shuffle("revenue-per-minute")
    t.bolt("stock-levels", Step, parallelism=2).fields("enrich-inventory", "sku")
    t.bolt("reorder", Step).shuffle("stock-levels")
    dead = t.bolt("dead-letters", Step)
    metrics = t.bolt("metrics", Step)
    for source in ("clicks", "orders", "inventory"):
        dead.shuffle(f"validate-{source}", stream="invalid")
        metrics.global_(source, stream="metrics")
    metrics.global_("join-orders-clicks-stock", stream="metrics")
    t.bolt("audit", Step).all("clicks").all("alerts")
    t.bolt("cache-warmer", Step).local_or_shuffle("stock-levels")
    return t


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    spec = etl_topology().build()
    components, streams = graph_of(spec, Chains(spec))
    assert len(components) >= 20
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as browser:
        page = browser.pages[0] if browser.pages else browser.new_page()
        page.set_content(
            f"<style>{(UI / 'style.css').read_text()}</style><div id='graph'></div>"
            f"<script>{(UI / 'graph.js').read_text()}</script>"
        )
        page.evaluate(
            "([c, s]) => { document.getElementById('graph').innerHTML ="
            " rayflowGraph.svg('etl', c, s); }",
            [components, streams],
        )
        yield page


def drawn(page: Any) -> dict[str, Any]:
    """Boxes, labels and edges as the browser laid them out (client pixels)."""
    return page.evaluate(
        """(() => {
        const rect = (el) => { const r = el.getBoundingClientRect();
            return [r.left, r.top, r.right, r.bottom]; };
        const svg = document.querySelector('svg.graph').getBoundingClientRect();
        return {
          boxes: Object.fromEntries([...document.querySelectorAll('g.node')].map(
            (g) => [g.dataset.id, rect(g.querySelector('rect'))])),
          edges: [...document.querySelectorAll('g.edge')].map((g) => ({
            from: g.dataset.from, to: g.dataset.to, label: rect(g.querySelector('text')),
            text: g.querySelector('text').textContent,
            points: g.querySelector('polyline').getAttribute('points').split(' ')
              .map((p) => p.split(',').map(Number)).map(([x, y]) => [x + svg.left, y + svg.top]),
          })),
          chains: [...document.querySelectorAll('g.chain')].map((g) => [g.dataset.head,
            rect(g.querySelector('rect'))]),
          size: [svg.width, svg.height],
        };
        })()"""
    )


def overlap(a: list[float], b: list[float], margin: float = 0.0) -> bool:
    return (
        a[0] < b[2] - margin
        and b[0] < a[2] - margin
        and a[1] < b[3] - margin
        and b[1] < a[3] - margin
    )


def inside(point: tuple[float, float], box: list[float]) -> bool:
    return box[0] + 1 < point[0] < box[2] - 1 and box[1] + 1 < point[1] < box[3] - 1


def along(points: list[list[float]], step: float = 2.0) -> Iterator[tuple[float, float]]:
    for (x1, y1), (x2, y2) in itertools.pairwise(points):
        n = max(1, int(math.dist((x1, y1), (x2, y2)) / step))
        for i in range(n + 1):
            yield x1 + (x2 - x1) * i / n, y1 + (y2 - y1) * i / n


def distance_to(points: list[list[float]], point: tuple[float, float]) -> float:
    return min(math.dist(p, point) for p in along(points, 1.0))


def test_every_component_and_stream_is_drawn(page: Any) -> None:
    spec = etl_topology().build()
    graph = drawn(page)
    assert sorted(graph["boxes"]) == sorted(c.id for c in spec.components)
    assert len(graph["edges"]) == len(spec.streams)
    labels = {e["text"] for e in graph["edges"]}
    assert {"fields(user)", "shuffle [invalid]", "global [metrics]", "forward · chained"} <= labels


def test_no_box_overlaps_another(page: Any) -> None:
    boxes = list(drawn(page)["boxes"].items())
    clashes = [
        (a, b) for i, (a, ra) in enumerate(boxes) for b, rb in boxes[i + 1 :] if overlap(ra, rb)
    ]
    assert clashes == []


def test_no_label_runs_under_a_box_or_another_label(page: Any) -> None:
    graph = drawn(page)
    under_boxes = [
        (e["text"], e["from"], e["to"], box)
        for e in graph["edges"]
        for box, rect in graph["boxes"].items()
        if overlap(e["label"], rect)
    ]
    assert under_boxes == []
    edges = graph["edges"]
    on_labels = [
        (a["from"], a["to"], b["from"], b["to"])
        for i, a in enumerate(edges)
        for b in edges[i + 1 :]
        if overlap(a["label"], b["label"], margin=1.0)
    ]
    assert on_labels == []


def test_no_edge_crosses_a_box_that_is_not_its_end(page: Any) -> None:
    graph = drawn(page)
    crossings = {
        (e["from"], e["to"], box)
        for e in graph["edges"]
        for point in along(e["points"])
        for box, rect in graph["boxes"].items()
        if box not in (e["from"], e["to"]) and inside(point, rect)
    }
    assert crossings == set()


def test_every_label_sits_by_its_own_edge(page: Any) -> None:
    far = []
    for e in drawn(page)["edges"]:
        x0, y0, x1, y1 = e["label"]
        gap = distance_to(e["points"], ((x0 + x1) / 2, (y0 + y1) / 2))
        if gap > 24:
            far.append((e["from"], e["to"], round(gap)))
    assert far == [], "labels more than 24 px from their edge"


def test_each_chain_is_boxed_around_its_members(page: Any) -> None:
    graph = drawn(page)
    chains = dict(graph["chains"])
    assert sorted(chains) == ["clicks", "inventory", "orders"]
    for head, rect in chains.items():
        for member in (head, f"parse-{head}"):
            box = graph["boxes"][member]
            assert rect[0] < box[0] and box[2] < rect[2] and rect[1] < box[1] and box[3] < rect[3]
