"""``rayflow yarn`` on a real YARN (Hadoop's MiniYARNCluster and its HDFS, from
scripts/yarn_cluster.py): Ray head and workers in YARN containers, the topology's exact output,
scaling, logs, kill."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.yarn_cluster import YarnCluster
from tests.cluster import free_port, wait_for
from tests.services import running

pytestmark = pytest.mark.ray
SENTENCES = ["the cow jumped over the moon", "an apple a day keeps the doctor away"]
LIMIT = 3000

MODULE = f'''
import json
from rayflow import Bolt, Spout

SENTENCES = {SENTENCES!r}


class Sentences(Spout):
    outputs = ["sentence"]

    def __init__(self, limit):
        self.limit = limit

    def open(self, context):
        self.i, self.step = context.task_index, context.parallelism

    def next_tuple(self):
        if self.i >= self.limit:
            self.finish()
            return
        self.emit([SENTENCES[self.i % len(SENTENCES)]])
        self.i += self.step


class Split(Bolt):
    outputs = ["word"]

    def process(self, tup):
        for word in tup["sentence"].split():
            self.emit([word])


class CountToFile(Bolt):
    """Counts words; at the end writes them to OUT.<task>.json."""

    def __init__(self, out):
        self.out = out

    def prepare(self, context):
        self.task, self.counts = context.task_index, {{}}

    def process(self, tup):
        self.counts[tup["word"]] = self.counts.get(tup["word"], 0) + 1

    def cleanup(self):
        with open(f"{{self.out}}.{{self.task}}.json", "w") as f:
            json.dump(self.counts, f)
'''

TOPOLOGY = """\
name: yarn-wordcount
spouts:
  - {id: sentences, className: yarnwc.Sentences, kwargs: {limit: ${LIMIT}}}
bolts:
  - {id: split, className: yarnwc.Split, parallelism: 2}
  - {id: count, className: yarnwc.CountToFile, parallelism: 2, kwargs: {out: "${OUT}"}}
streams:
  - {from: sentences, to: split, grouping: {type: SHUFFLE}}
  - {from: split, to: count, grouping: {type: FIELDS, args: [word]}}
"""


@pytest.fixture(scope="module")
def yarn_cluster() -> Iterator[YarnCluster]:
    yield from running(YarnCluster(nm_memory_mb=6144), "YARN")


def rayflow(cluster: YarnCluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "rayflow.cli", "yarn", *args],
        capture_output=True, text=True, timeout=timeout, env=cluster.env(),
    )  # fmt: skip
    assert done.returncode == 0, f"rayflow yarn {' '.join(args)}:\n{done.stderr}\n{done.stdout}"
    return done


def status(cluster: YarnCluster, app_id: str) -> dict[str, Any]:
    return json.loads(rayflow(cluster, "status", app_id, "--json").stdout)


def test_submit_runs_ray_and_the_topology_in_yarn_containers(
    yarn_cluster: YarnCluster, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "yarnwc.py").write_text(textwrap.dedent(MODULE))
    (project / "wc.yaml").write_text(TOPOLOGY)
    out = tmp_path / "counts"
    submitted = rayflow(
        yarn_cluster, "submit", str(project / "wc.yaml"),
        "-D", f"OUT={out}", "-D", f"LIMIT={LIMIT}",
        "--workers", "1", "--worker-memory", "1 GiB", "--head-memory", "1536 MiB",
        "--object-store-fraction", "0.1", "--python", sys.executable, "--loopback-ips", "127.0.0.",
        "--ray-port", str(free_port()), "--ui-port", str(free_port()), "--wait", "240",
    )  # fmt: skip
    app_id = submitted.stdout.split()[1]
    assert app_id.startswith("application_"), submitted.stdout
    try:
        assert "UI http://127.0.0.2:" in submitted.stdout

        def counted() -> Counter | None:
            files = sorted(tmp_path.glob("counts.*.json"))
            if len(files) < 2:
                return None
            total: Counter = Counter()
            for f in files:
                total.update(json.loads(f.read_text()))
            return total

        counts = wait_for(counted, "the topology's counts", timeout=180)
        expected = Counter(w for i in range(LIMIT) for w in SENTENCES[i % 2].split())
        assert counts == expected

        info = status(yarn_cluster, app_id)
        assert info["state"] == "RUNNING"
        up = {c["service"] for c in info["containers"] if c["state"] == "RUNNING"}
        assert up == {"ray-head", "ray-worker"}
        assert sorted(n["address"] for n in info["ray_nodes"] if n["alive"]) == [
            "127.0.0.2", "127.0.0.3"
        ]  # fmt: skip

        rayflow(yarn_cluster, "scale", app_id, "--workers", "2")

        def three_nodes() -> bool:
            nodes = status(yarn_cluster, app_id).get("ray_nodes") or []
            return sum(1 for n in nodes if n["alive"]) == 3

        wait_for(three_nodes, "the new worker container to join Ray", timeout=180)

        logs = rayflow(yarn_cluster, "logs", app_id, "--service", "ray-head").stdout
        assert "rayflow: topology submitted" in logs
    finally:
        subprocess.run(
            [sys.executable, "-m", "rayflow.cli", "yarn", "kill", app_id],
            capture_output=True, timeout=120, env=yarn_cluster.env(),
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while status(yarn_cluster, app_id)["state"] not in ("KILLED", "FINISHED", "FAILED"):
        assert time.monotonic() < deadline, "the application did not end after kill"
        time.sleep(1)
    assert status(yarn_cluster, app_id)["state"] == "KILLED"


def test_a_packed_environment_travels_to_the_containers(
    yarn_cluster: YarnCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--env`` on a tiny venv (packing Ray itself would take minutes and hundreds of MB): the
    archive is unpacked in the container and its Python is the one the service runs."""
    import skein
    import venv_pack

    from rayflow.launchers.yarn import YarnOptions, client, environment

    tiny = tmp_path / "tiny"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tiny)], check=True)
    (tiny / "lib" / "marker.txt").write_text("packed")
    archive = tmp_path / "tiny.tar.gz"
    venv_pack.pack(prefix=str(tiny), output=str(archive))
    files, setup = environment(YarnOptions(env_archive=str(archive)))
    out = tmp_path / "prefix.txt"
    code = (
        f"import sys; marker = open(sys.prefix + '/lib/marker.txt').read(); "
        f"open({str(out)!r}, 'w').write(sys.prefix + ' ' + marker)"
    )
    script = f"{setup}python -c {shlex.quote(code)}\n"
    for key, value in yarn_cluster.env().items():
        monkeypatch.setenv(key, value)
    spec = skein.ApplicationSpec(
        name="rayflow-env-check",
        services={"check": skein.Service(
            resources=skein.Resources(memory=128, vcores=1), files=files, script=script)},
    )  # fmt: skip
    with client() as c:
        app_id = c.submit(spec)
        wait_for(
            lambda: str(c.application_report(app_id).state) in ("FINISHED", "FAILED", "KILLED"),
            "the application to end",
            timeout=120,
        )
        assert str(c.application_report(app_id).final_status) == "SUCCEEDED"
    prefix, marker = out.read_text().split()
    assert Path(prefix).name == "environment"  # the unpacked archive, not the source venv
    assert marker == "packed"


def test_the_commented_template_is_a_valid_skein_spec_like_the_generated_one(
    tmp_path: Path,
) -> None:
    import skein

    from rayflow.launchers.yarn import YarnOptions, build_spec
    from rayflow.spec.yaml_loader import load_topology

    root = Path(__file__).resolve().parents[2]
    template = skein.ApplicationSpec.from_file(str(root / "yarn" / "rayflow.skein.yaml"))
    spec = load_topology(str(root / "examples" / "wordcount.yaml"))
    generated = build_spec(spec, str(root / "examples" / "wordcount.yaml"), YarnOptions(), tmp_path)
    assert set(template.services) == set(generated.services) == {"ray-head", "ray-worker"}
    for name, service in generated.services.items():
        documented = template.services[name]
        assert set(documented.files) == set(service.files)
        assert documented.depends == service.depends
        for line in service.script.splitlines():  # every generated command is in the template
            command = line.split()[0] if line.split() else ""
            if command in ("ray", "rayflow", "exec", "python"):
                assert line.split()[1] in documented.script, line


def test_a_flow_file_travels_under_its_own_name_and_the_head_submits_it(tmp_path: Path) -> None:
    import zipfile

    from rayflow.cli.common import load_flow
    from rayflow.launchers.yarn import YarnOptions, build_spec

    root = Path(__file__).resolve().parents[2]
    flow_file = root / "examples" / "streams_wordcount.py"
    spec = load_flow(str(flow_file)).topology().build()
    generated = build_spec(spec, f"{flow_file}:flow", YarnOptions(), tmp_path)
    head = generated.services["ray-head"].script
    assert "rayflow submit topology/streams_wordcount.py:flow --address" in head
    with zipfile.ZipFile(tmp_path / "topology.zip") as archive:
        names = set(archive.namelist())
    assert "streams_wordcount.py" in names and "topology.yaml" not in names
