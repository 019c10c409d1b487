"""The job master on a real two-node Ray (``ray start`` on 127.0.0.2 and 127.0.0.3): submit from
another folder, list, status, deactivate/activate, logs, task and master crashes, the REST API
with its errors and token, and kill. Driven through the ``rayflow`` CLI and HTTP, as users do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import Cluster, growing, master_cluster, wait_for


@pytest.fixture(scope="module")
def cluster(two_nodes: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with master_cluster(two_nodes, tmp_path_factory.mktemp("user_project")) as c:
        yield c


pytestmark = pytest.mark.ray


def test_submit_returns_at_once_and_the_topology_runs_on_both_nodes(cluster: Cluster) -> None:
    started = time.monotonic()
    done = cluster.cli("submit", "ticking.yaml", "--ui-port", str(cluster.port))
    assert "submitted topology 'ticking'" in done.stdout
    assert time.monotonic() - started < 120
    wait_for(lambda: cluster.counter("shout", "executed") > 100, "tuples through shout")
    listing = json.loads(cluster.cli("list", "--json").stdout)
    assert [(r["name"], r["status"], r["tasks"], r["workers"]) for r in listing] == [
        ("ticking", "ACTIVE", 4, 2)
    ]
    table = cluster.cli("list").stdout
    assert "ticking" in table and "ACTIVE" in table
    text = cluster.cli("status", "ticking").stdout
    assert "shout" in text and "EXECUTED" in text
    assert "shout.shouted (counter):" in text, "the bolt's own metric"
    again = cluster.cli("submit", "ticking.yaml", check=False)
    assert again.returncode != 0 and "already running" in again.stderr


def test_deactivate_stops_the_spouts_and_activate_resumes_them(cluster: Cluster) -> None:
    assert "INACTIVE" in cluster.cli("deactivate", "ticking").stdout
    time.sleep(1.5)  # let the last in-flight tuples land and the stats refresh
    before = wait_for(lambda: _steady(cluster, "ticks"), "the spout's emitted count to stop moving")
    time.sleep(2.0)
    assert cluster.counter("ticks") == before, "a deactivated spout emitted"
    assert "ACTIVE" in cluster.cli("activate", "ticking").stdout
    wait_for(growing(cluster, "ticks"), "emitted to grow after activate")


def _steady(cluster: Cluster, component: str) -> float | None:
    first = cluster.counter(component)
    time.sleep(1.2)
    return first if cluster.counter(component) == first else None


def test_logs_show_the_tasks_own_lines(cluster: Cluster) -> None:
    out = cluster.cli("logs", "ticking", "shout").stdout
    assert "shout[0] | shout task 0 ready" in out
    assert "shout[1] | shout task 1 ready" in out
    only = cluster.cli("logs", "ticking", "shout", "--task", "1").stdout
    assert "shout[0]" not in only and "shout task 1 ready" in only


def test_a_killed_task_actor_is_restarted_and_the_topology_goes_on(cluster: Cluster) -> None:
    before = cluster.counter("shout", "executed")
    cluster.ray(
        "ray.kill(ray.get_actor('ticking/shout/0/0', namespace='rayflow'), no_restart=True)"
    )
    wait_for(lambda: cluster.status()["restarts"] >= 1, "the master to replace shout[0]")
    # Counters cover all of a task's actors: the new shout[0] goes on from the old one's count.
    assert cluster.counter("shout", "executed") >= before
    task_pid = next(
        t["pid"]
        for t in _component(cluster, "shout")["task_stats"]
        if t["task"] == 1 and "pid" in t
    )
    before = cluster.counter("shout", "executed")
    os.kill(task_pid, signal.SIGKILL)  # an OS signal to the task's process
    wait_for(lambda: cluster.status()["restarts"] >= 2, "the master to replace shout[1]")
    assert cluster.counter("shout", "executed") >= before
    failures = cluster.status()["failures"]
    assert {(f["component"], f["task"]) for f in failures} == {("shout", 0), ("shout", 1)}
    wait_for(growing(cluster, "shout", "executed"), "shout to execute after the restarts")
    wait_for(growing(cluster, "sink", "executed"), "the sink to receive after the restarts")


def _component(cluster: Cluster, component: str) -> dict[str, Any]:
    status, body = cluster.http("GET", f"/api/v1/topologies/ticking/components/{component}")
    assert status == 200, body
    return body


def test_the_topology_survives_its_master_and_the_new_master_controls_it(
    cluster: Cluster,
) -> None:
    _, _info = cluster.http("GET", "/health")
    old_pid = int(
        cluster.ray(
            "print(ray.get(ray.get_actor('rayflow-master', "
            "namespace='rayflow').info.remote())['pid'])"
        ).strip()
    )
    os.kill(old_pid, signal.SIGKILL)
    new_pid = wait_for(lambda: _master_pid(cluster, old_pid), "Ray to restart the master", 90)
    assert new_pid != old_pid
    assert [r["name"] for r in json.loads(cluster.cli("list", "--json").stdout)] == ["ticking"]
    wait_for(growing(cluster, "shout", "executed"), "the topology to keep running")
    cluster.cli("deactivate", "ticking")
    assert cluster.status()["status"] == "INACTIVE"
    cluster.cli("activate", "ticking")


def _master_pid(cluster: Cluster, old: int) -> int | None:
    try:
        status, _body = cluster.http("GET", "/health")
    except OSError:
        return None
    if status != 200:
        return None
    out = cluster.ray(
        "print(ray.get(ray.get_actor('rayflow-master', namespace='rayflow').info.remote())['pid'])"
    )
    pid = int(out.strip())
    return pid if pid != old else None


def test_rest_api(cluster: Cluster) -> None:
    status, body = cluster.http("GET", "/api/v1/topologies")
    assert status == 200 and [t["name"] for t in body["topologies"]] == ["ticking"]
    status, body = cluster.http("GET", "/api/v1/topologies/ticking")
    assert status == 200
    assert [c["id"] for c in body["components"]] == ["ticks", "shout", "sink"]
    assert {(s["from"], s["to"], s["grouping"]) for s in body["streams"]} == {
        ("ticks", "shout", "SHUFFLE"),
        ("shout", "sink", "SHUFFLE"),
    }
    status, body = cluster.http("GET", "/api/v1/topologies/nope")
    assert status == 404 and "no topology named 'nope'" in body["error"]
    status, body = cluster.http("GET", "/api/v1/topologies/ticking/components/nope")
    assert status == 404 and "no component 'nope'" in body["error"]
    status, body = cluster.http("POST", "/api/v1/topologies/ticking/kill", b"{not json")
    assert status == 400 and "not JSON" in body["error"]
    status, body = cluster.http("POST", "/api/v1/topologies/ticking/kill", b'{"wait": "soon"}')
    assert status == 400 and "'wait'" in body["error"]
    status, body = cluster.http("POST", "/api/v1/topologies/ticking/deactivate", token=None)
    assert status == 401 and "Bearer" in body["error"]
    status, body = cluster.http("POST", "/api/v1/topologies/ticking/deactivate", token="wrong")
    assert status == 401
    status, body = cluster.http("POST", "/api/v1/topologies/ticking/deactivate")
    assert status == 200 and body["status"] == "INACTIVE"
    status, body = cluster.http("POST", "/api/v1/topologies/ticking/activate")
    assert status == 200 and body["status"] == "ACTIVE"
    # what a page on another site can send: a simple text/plain POST, or any with its Origin
    plain = {"Content-Type": "text/plain"}
    for verb in ("deactivate", "kill"):
        status, body = cluster.http("POST", f"/api/v1/topologies/ticking/{verb}", b"{}",
                                    headers=plain)  # fmt: skip
        assert status == 415 and "application/json" in body["error"]
        status, body = cluster.http("POST", f"/api/v1/topologies/ticking/{verb}", b"{}",
                                    headers={"Origin": "http://evil.example"})  # fmt: skip
        assert status == 403 and "cross-origin" in body["error"]
    status, body = cluster.http("GET", "/api/v1/topologies", headers={"Host": "evil.example"})
    assert status == 403, "a DNS rebinding page reads nothing"
    rows = cluster.http("GET", "/api/v1/topologies")[1]["topologies"]
    assert [(t["name"], t["status"]) for t in rows] == [("ticking", "ACTIVE")], "all refused"
    status, text = cluster.http("GET", "/metrics")
    assert status == 200
    assert 'rayflow_executed_total{component="shout",task="0",topology="ticking"}' in text
    assert 'rayflow_topology_up{status="ACTIVE",topology="ticking"} 1.0' in text
    assert 'rayflow_user_shouted_total{component="shout",task="1",topology="ticking"}' in text
    assert 'rayflow_execute_latency_seconds_bucket{component="shout",le="+Inf"' in text
    _, shout = cluster.http("GET", "/api/v1/topologies/ticking/components/shout")
    assert shout["metrics"]["shouted"]["value"] > 0, "the bolt's own counter, summed"


def test_history_timeline_and_metrics_that_promtool_accepts(cluster: Cluster) -> None:
    since = time.time() - 600
    path = "/api/v1/topologies/ticking/history"

    def samples_of_shout() -> dict[str, Any] | None:
        query = f"?component=shout&metrics=executed,capacity,user.shouted&since={since}"
        status, body = cluster.http("GET", path + query)
        assert status == 200, body
        executed = [v for v in body["series"][0]["values"] if v]
        return body if len(executed) >= 3 else None

    body = wait_for(samples_of_shout, "three samples of shout's rate in the history")
    assert body["step"] == 1.0 and body["times"] == sorted(body["times"])
    assert [(s["metric"], s["task"]) for s in body["series"]] == [
        ("executed", None),
        ("capacity", None),
        ("user.shouted", None),
    ]
    assert all(len(s["values"]) == len(body["times"]) for s in body["series"])
    assert max(v for v in body["series"][2]["values"] if v is not None) > 0, "the user's counter"
    _, tasks = cluster.http("GET", path + "?component=shout&task=*&metrics=executed")
    assert [s["task"] for s in tasks["series"]] == [0, 1]
    _, every = cluster.http("GET", path + "?metrics=emitted")
    assert [s["component"] for s in every["series"]] == ["ticks", "shout", "sink"]
    status, wrong = cluster.http("GET", path + "?metrics=executed,nonsense")
    assert status == 400 and "unknown metric 'nonsense'" in wrong["error"]
    status, wrong = cluster.http("GET", path + "?component=shout&task=9")
    assert status == 404 and "no task 9" in wrong["error"]

    kinds = [event["kind"] for event in cluster.status()["timeline"]]
    assert {"takeover", "deactivate", "activate"} <= set(kinds), kinds  # the tests above did those

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: bash scripts/ensure-promtool.sh installs it"
    _, text = cluster.http("GET", "/metrics")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr


def test_rebalance_changes_a_components_parallelism_while_it_runs(cluster: Cluster) -> None:
    done = cluster.cli("rebalance", "ticking", "--parallelism", "shout=3", "--wait", "5")
    assert "rebalanced topology 'ticking' (shout=3): 5 tasks, ACTIVE" in done.stdout
    shout = {c["id"]: c for c in cluster.status()["components"]}["shout"]
    assert shout["parallelism"] == 3

    def three_tasks_working() -> bool:
        code, body = cluster.http("GET", "/api/v1/topologies/ticking/components/shout")
        tasks = body["task_stats"] if code == 200 else []
        return len(tasks) == 3 and all(t["counters"].get("executed", 0) > 0 for t in tasks)

    wait_for(three_tasks_working, "three shout tasks to process tuples", timeout=90)
    bad = cluster.cli("rebalance", "ticking", "--parallelism", "nope=2", check=False)
    assert bad.returncode != 0 and "no component nope" in bad.stderr
    code, body = cluster.http(
        "POST", "/api/v1/topologies/ticking/rebalance", json.dumps({"parallelism": []}).encode()
    )
    assert code == 400 and "parallelism" in body["error"]
    cluster.cli("rebalance", "ticking", "-e", "shout=2", "-w", "5")  # back, as Storm spells it
    wait_for(lambda: len(cluster.http("GET", "/api/v1/topologies/ticking/components/shout")[1]
                         ["task_stats"]) == 2, "two shout tasks again")  # fmt: skip
    wait_for(growing(cluster, "shout", "executed"), "shout to go on after rebalancing back")


COUNTING = """
import time
from rayflow import Bolt, Spout

WORDS = [f"w{i}" for i in range(13)]


class Words(Spout):
    outputs = ["word"]

    def open(self, context):
        self.n = 0

    def next_tuple(self):
        if self.n >= 3000:
            self.finish()
            return
        self.emit([WORDS[self.n % 13]])
        self.n += 1
        time.sleep(0.003)

    def snapshot(self):
        return self.n

    def restore(self, snapshot):
        self.n = snapshot


class Count(Bolt):
    outputs = ["word", "count"]

    def process(self, tup):
        count = self.state.value("count", default=0)
        count.set(count.get() + 1)
        self.emit([tup[0], count.get()])
"""


def _counting_yaml(folder: str, parallelism: int) -> str:
    return f"""\
name: counting
config: {{reliability: exactly_once, checkpoint.interval: 1s,
         checkpoint.storage: {folder}/checkpoints}}
spouts:
  - {{id: words, className: counting.Words}}
bolts:
  - {{id: count, className: counting.Count, parallelism: {parallelism}}}
  - id: sink
    className: rayflow.connectors.files.FileSink
    kwargs: {{path: {folder}/out}}
streams:
  - {{from: words, to: count, grouping: {{type: FIELDS, args: [word]}}}}
  - {{from: count, to: sink, grouping: {{type: SHUFFLE}}}}
"""


def test_savepoint_stop_and_resume_with_other_parallelism(cluster: Cluster) -> None:
    """Exactly-once through the CLI and REST: checkpoints complete, a savepoint over REST, stop
    with a savepoint, resume from it with the keyed count's parallelism 2 -> 3, rebalance to 2
    while it runs: the committed output holds every (word, running count) exactly once."""
    folder = cluster.cwd
    (folder / "counting.py").write_text(COUNTING)
    (folder / "counting.yaml").write_text(_counting_yaml(str(folder), 2))
    (folder / "counting3.yaml").write_text(_counting_yaml(str(folder), 3))
    cluster.cli("submit", "counting.yaml")
    wait_for(
        lambda: (cluster.status("counting")["checkpoints"] or {}).get("completed", 0) >= 1,
        "a completed checkpoint",
    )
    code, body = cluster.http("POST", "/api/v1/topologies/counting/savepoint", b"{}")
    assert code == 200, body
    assert os.path.exists(os.path.join(body["savepoint"], "_metadata"))
    assert "checkpoints: " in cluster.cli("status", "counting").stdout
    stopped = cluster.cli("kill", "counting", "--savepoint").stdout
    url = stopped.rsplit(": ", 1)[1].strip()
    assert os.path.exists(os.path.join(url, "_metadata")), stopped
    wait_for(lambda: "counting" not in cluster.cli("list").stdout, "the stopped topology gone")
    cluster.cli("submit", "counting3.yaml", "--from-savepoint", url)
    # and a rebalance while it runs: keyed state moves through a savepoint (3 -> 2 tasks)
    cluster.cli("rebalance", "counting", "-e", "count=2")
    assert [c["parallelism"] for c in cluster.status("counting")["components"]] == [1, 2, 1]
    wait_for(
        lambda: cluster.status("counting")["status"] == "FINISHED", "the resumed run to end", 120
    )
    rows: list[tuple[str, int]] = []
    for name in os.listdir(folder / "out"):
        assert not name.startswith("."), f"a staged file was left: {name}"
        with open(folder / "out" / name) as f:
            rows.extend(tuple(json.loads(line)) for line in f)
    expected = [(f"w{w}", c) for w in range(13) for c in range(1, 3000 // 13 + (w < 3000 % 13) + 1)]
    assert sorted(rows) == sorted(expected)
    cluster.cli("kill", "counting", "--wait", "0")


def test_kill_drains_and_removes_the_topology(cluster: Cluster) -> None:
    done = cluster.cli("kill", "ticking", "--wait", "5")
    assert "topology 'ticking' killed" in done.stdout
    assert json.loads(cluster.cli("list", "--json").stdout) == []
    gone = cluster.ray(
        "try:\n    ray.get_actor('ticking/ticks/0/0', namespace='rayflow'); print('alive')\n"
        "except ValueError:\n    print('gone')"
    )
    assert gone.strip() == "gone"
    status, _body = cluster.http("POST", "/api/v1/topologies/ticking/kill")
    assert status == 404


STREAMS_COUNTING = """
import os
import time
from rayflow import Flow, Spout
from rayflow.connectors.files import FileSink

WORDS = [f"w{i}" for i in range(13)]
HERE = os.path.dirname(os.path.abspath(__file__))


class Words(Spout):
    outputs = ["word", "ts"]

    def open(self, context):
        self.n = 0

    def next_tuple(self):
        if self.n >= 4000:
            self.finish()
            return
        self.emit([WORDS[self.n % 13], 10 * self.n])
        self.n += 1
        time.sleep(0.004)

    def snapshot(self):
        return self.n

    def restore(self, snapshot):
        self.n = snapshot


def running(count, item):
    count = (count or 0) + 1
    return count, count


def build(parallelism):
    flow = Flow("streamcount", config={"reliability": "exactly_once",
        "checkpoint.interval": "1s", "checkpoint.storage": os.path.join(HERE, "checkpoints"),
        "watermark.interval": "50ms"})
    keyed = (flow.source(Words, name="words").with_timestamps(lambda w: w[1])
             .key_by(lambda w: w[0]))
    keyed.map_state(running, name="running", parallelism=parallelism).sink(
        FileSink, kwargs={"path": os.path.join(HERE, "running")}, name="running_out")
    keyed.window({"type": "tumbling", "size": "1s"}, name="per_second",
                 parallelism=parallelism).count().map(lambda r: (r[0], r[1].start, r[2])).sink(
        FileSink, kwargs={"path": os.path.join(HERE, "windows")}, name="windows_out")
    return flow


flow = build(2)
flow3 = build(3)
"""


def _committed(folder: Any) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for name in os.listdir(folder):
        assert not name.startswith("."), f"a staged file was left: {name}"
        with open(folder / name) as f:
            rows.extend(tuple(json.loads(line)[0]) for line in f)
    return rows


def test_a_flow_file_survives_its_master_and_resumes_from_a_savepoint_at_other_parallelism(
    cluster: Cluster,
) -> None:
    """A flow submitted from its Python file: the restarted master still holds it (its
    functions travel as bytes), then stop with a savepoint and resume with the keyed operators'
    parallelism 2 -> 3: map_state and window state move by key group, output exact."""
    folder = cluster.cwd / "streams_project"
    folder.mkdir()
    (folder / "streams_counting.py").write_text(STREAMS_COUNTING)
    done = cluster.cli("submit", "streams_project/streams_counting.py")
    assert "submitted topology 'streamcount'" in done.stdout
    old_pid = int(
        cluster.ray(
            "print(ray.get(ray.get_actor('rayflow-master', "
            "namespace='rayflow').info.remote())['pid'])"
        ).strip()
    )
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: _master_pid(cluster, old_pid), "Ray to restart the master", 90)
    wait_for(
        lambda: (cluster.status("streamcount")["checkpoints"] or {}).get("completed", 0) >= 1,
        "a completed checkpoint",
    )
    stopped = cluster.cli("kill", "streamcount", "--savepoint").stdout
    url = stopped.rsplit(": ", 1)[1].strip()
    wait_for(lambda: "streamcount" not in cluster.cli("list").stdout, "the stopped flow gone")
    cluster.cli("submit", "streams_project/streams_counting.py:flow3", "--from-savepoint", url)
    components = {c["id"]: c["parallelism"] for c in cluster.status("streamcount")["components"]}
    assert components["running"] == 3 and components["per_second.map"] == 3, components
    wait_for(
        lambda: cluster.status("streamcount")["status"] == "FINISHED", "the resumed run to end", 120
    )
    words = [f"w{i % 13}" for i in range(4000)]
    running = [(w, c) for w in set(words) for c in range(1, words.count(w) + 1)]
    assert sorted(_committed(folder / "running")) == sorted(running)
    per_second: dict[tuple[str, int], int] = {}
    for i, w in enumerate(words):
        start = 10 * i - (10 * i) % 1000
        per_second[(w, start)] = per_second.get((w, start), 0) + 1
    expected = sorted((w, start, n) for (w, start), n in per_second.items())
    assert sorted(_committed(folder / "windows")) == expected
    cluster.cli("kill", "streamcount", "--wait", "0")
