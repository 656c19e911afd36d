"""`--executor ray` on a real local cluster (raycluster.py): placement by accelerator label, a target
no node offers, parallel branches on two nodes, a node killed mid-stage, Ctrl-C, a recipe whose local
code travels by digest, and keys equal to the local executor's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from harness import RECIPES, Project, rows
from raycluster import RayCluster
from s3server import Bucket

HERE = Path(__file__).parent


def recipe(root: Path, stages: dict) -> Path:
    """A recipe of `ray.probe` stages in `root` (the plugin beside it); its path."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "raykinds.py", root / "raykinds.py")
    path = root / "probe.yaml"
    path.write_text(yaml.safe_dump({"name": "probe", "plugins": ["raykinds"], "stages": stages}))
    return path


def cli(path: Path, cluster: RayCluster, bucket: Bucket, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli.main", "run", str(path), "--executor", "ray", "--ray-address",
            cluster.address, "--remote", bucket.url, "--json", *args]  # fmt: skip


def env(path: Path, bucket: Bucket, cache: str = "cache") -> dict[str, str]:
    return {**os.environ, **bucket.env, "PIPELINE_CACHE": str(path.parent / cache), "COLUMNS": "200"}


def run(path: Path, cluster: RayCluster, bucket: Bucket, *args: str, cache: str = "cache", cwd: Path | None = None):
    proc = subprocess.run(
        cli(path, cluster, bucket, *args),
        cwd=cwd or path.parent,
        env=env(path, bucket, cache),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, (rows(json.loads(proc.stdout)) if proc.stdout.strip() else {})


def where(row: dict) -> dict:
    return json.loads(Path(row["outputs"]["where"]).read_text())


def test_a_targeted_stage_lands_on_its_labels_node_and_a_missing_target_is_unavailable(
    ray_cluster: RayCluster, bucket: Bucket, tmp_path: Path
) -> None:
    path = recipe(
        tmp_path / "r",
        {
            "h100": {"uses": "ray.probe", "with": {"target": "H100"}},
            "l4": {"uses": "ray.probe", "with": {"target": "L4"}},
            "b200": {"uses": "ray.probe", "with": {"target": "B200"}},
        },
    )
    proc, r = run(path, ray_cluster, bucket)
    assert proc.returncode == 4, proc.stderr[-2000:]
    for label in ("H100", "L4"):
        row = r[label.lower()]
        assert row["status"] == "ran" and row["node"] == ray_cluster.node_id(label)[:12]
        assert where(row)["label"] == label
    assert r["b200"]["status"] == "unavailable"
    assert "offers B200 (it has: H100, L4)" in proc.stderr
    skipped, _ = run(path, ray_cluster, bucket, "--skip-unavailable")
    assert skipped.returncode == 0, skipped.stderr[-2000:]


def test_a_cached_rerun_contacts_no_cluster(ray_cluster: RayCluster, bucket: Bucket, tmp_path: Path) -> None:
    path = recipe(tmp_path / "r", {"a": {"uses": "ray.probe", "with": {"tag": "a", "read": "table.txt"}}})
    (path.parent / "table.txt").write_text("t1\n")
    first, _ = run(path, ray_cluster, bucket)
    assert first.returncode == 0, first.stderr[-2000:]
    # The node read table.txt from its copy of the recipe's folder: the record names it as the recipe does.
    lock = yaml.safe_load((path.parent / "probe.lock").read_text())["stages"]
    assert list(lock["a"]["discovered"]) == ["file:table.txt"]
    dead = subprocess.run(
        [*cli(path, ray_cluster, bucket), "--ray-address", "127.0.0.1:9"],
        cwd=path.parent, env=env(path, bucket), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert dead.returncode == 0, dead.stderr[-2000:]
    assert rows(json.loads(dead.stdout))["a"]["status"] == "cached"
    fresh = subprocess.run(
        [*cli(path, ray_cluster, bucket), "--ray-address", "127.0.0.1:9"],
        cwd=path.parent, env=env(path, bucket, "fresh"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert fresh.returncode == 0 and rows(json.loads(fresh.stdout))["a"]["status"] == "pulled", fresh.stderr
    forced = subprocess.run(
        [*cli(path, ray_cluster, bucket), "--ray-address", "127.0.0.1:9", "--force"],
        cwd=path.parent, env=env(path, bucket), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert forced.returncode == 2 and "cannot reach a Ray cluster at 127.0.0.1:9" in forced.stderr
    (path.parent / "table.txt").write_text("t2\n")  # the file the node read changed: no cache serves it now
    changed = subprocess.run(
        [*cli(path, ray_cluster, bucket), "--ray-address", "127.0.0.1:9"],
        cwd=path.parent, env=env(path, bucket, "fresh"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert changed.returncode == 2 and "cannot reach a Ray cluster at 127.0.0.1:9" in changed.stderr


def test_two_branches_run_on_two_nodes_at_once(ray_cluster: RayCluster, bucket: Bucket, tmp_path: Path) -> None:
    meet = tmp_path / "meet"
    meet.mkdir()
    common = {"meet": str(meet), "expect": 2}
    path = recipe(
        tmp_path / "r",
        {
            "x": {"uses": "ray.probe", "with": {"target": "H100", "tag": "x", **common}},
            "y": {"uses": "ray.probe", "with": {"target": "L4", "tag": "y", **common}},
        },
    )
    proc, r = run(path, ray_cluster, bucket, "--jobs", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {r["x"]["node"], r["y"]["node"]} == {ray_cluster.node_id("H100")[:12], ray_cluster.node_id("L4")[:12]}


def test_a_node_killed_mid_stage_sends_the_stage_to_another_matching_node(
    ray_cluster: RayCluster, bucket: Bucket, tmp_path: Path
) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    nodes = [ray_cluster.add("A10G"), ray_cluster.add("A10G")]
    try:
        path = recipe(tmp_path / "r", {"build": {"uses": "ray.probe", "with": {"target": "A10G", "hold": str(hold)}}})
        proc = subprocess.Popen(
            cli(path, ray_cluster, bucket), cwd=path.parent, env=env(path, bucket),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not any(hold.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.2)
        first = next(hold.iterdir()).name
        victim = next(n for n in nodes if n.node_id == first)
        ray_cluster.cluster.remove_node(victim, allow_graceful=False)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        row = rows(json.loads(out))["build"]
        survivor = next(n for n in nodes if n is not victim)
        assert row["status"] == "ran" and row["node"] == survivor.node_id[:12]
        assert where(row)["node"] == survivor.node_id
    finally:
        for n in nodes:
            if n in ray_cluster.cluster.worker_nodes:
                ray_cluster.cluster.remove_node(n)


def test_a_cluster_tasks_progress_reaches_the_console(ray_cluster: RayCluster, bucket: Bucket, tmp_path: Path) -> None:
    """A stage on a node reports progress; the driver's live display shows it as it happens (a terminal is
    what shows a live display: TTY_COMPATIBLE makes rich treat the captured stderr as one)."""
    path = recipe(tmp_path / "r", {"long": {"uses": "ray.probe", "with": {"target": "L4", "steps": 4}}})
    proc = subprocess.run(
        cli(path, ray_cluster, bucket),
        cwd=path.parent, env={**env(path, bucket), "TTY_COMPATIBLE": "1"}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    shown = {f"step {n} of 4" for n in range(1, 5) if f"probing, step {n} of 4" in proc.stderr}
    assert len(shown) >= 2, [ln for ln in proc.stderr.splitlines() if "━" not in ln][-20:]


def test_ctrl_c_cancels_the_clusters_task(ray_cluster: RayCluster, bucket: Bucket, tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    path = recipe(tmp_path / "r", {"slow": {"uses": "ray.probe", "with": {"target": "L4", "hold": str(hold)}}})
    proc = subprocess.Popen(
        cli(path, ray_cluster, bucket), cwd=path.parent, env=env(path, bucket),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip  # noqa: PLW1509 - no threads here
    deadline = time.monotonic() + 120
    while not any(hold.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    pid = int(next(hold.iterdir()).read_text())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    deadline = time.monotonic() + 30
    while _alive(pid):
        assert time.monotonic() < deadline, f"the task's worker (pid {pid}) outlived the interrupted run"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.slow
@pytest.mark.parametrize(
    "files",
    [("digits_int8.yaml", "digits_plugin.py"), ("resnet50_int8.yaml",)],
    ids=["digits_int8", "resnet50_int8"],
)
def test_a_recipes_keys_and_outputs_on_the_cluster_match_the_local_executor(
    files: tuple[str, ...], ray_cluster: RayCluster, bucket: Bucket, tmp_path: Path
) -> None:
    """A main recipe run from another working directory (digits: a plugin kind, a factory and Python
    datasets beside it, which travel by digest; resnet50_int8: the full-size model, TensorRT unavailable):
    the cluster's keys and output digests equal the local executor's, stage by stage, except what times
    things (validate, report.compare)."""
    root = Project.copy(tmp_path, *files, source=RECIPES).root
    path = root / files[0]
    doc = yaml.safe_load(path.read_text())
    for stage in doc["stages"].values():
        if stage["uses"] == "validate":  # quick timing, in the recipe itself: a run with --set keeps no lock
            stage.setdefault("with", {}).update(min_seconds=0.2, throughput_batches=[1])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    lock = path.with_suffix(".lock")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cluster, r = run(path, ray_cluster, bucket, "--skip-unavailable", cwd=elsewhere)
    assert cluster.returncode == 0, cluster.stderr[-3000:]
    ran = {name for name, row in r.items() if row["status"] == "ran"}
    assert all(r[n].get("node") for n in ran) and {"train", "export"} & ran
    on_cluster = yaml.safe_load(lock.read_text())["stages"]
    local = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "run", str(path), "--json", "--skip-unavailable"],
        cwd=root, env={**os.environ, "PIPELINE_CACHE": str(tmp_path / "local")}, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    assert {row["status"] for row in rows(json.loads(local.stdout)).values()} <= {"ran", "unavailable", "skipped"}
    here = yaml.safe_load(lock.read_text())["stages"]
    timing = {name for name, entry in here.items() if entry["kind"] in ("validate", "report.compare")}
    assert timing and set(here) == set(on_cluster)
    same = {n for n in here if (here[n]["key"], here[n]["outputs"]) == (on_cluster[n]["key"], on_cluster[n]["outputs"])}
    differ = set(here) - timing - same
    assert not differ, f"keys or output digests differ for {sorted(differ)}"
    assert len(same) >= 4


def test_a_read_only_run_keeps_its_intermediates_in_a_scratch_prefix_it_deletes(
    ray_cluster: RayCluster, bucket: Bucket, tmp_path: Path
) -> None:
    """A pull-request run (--remote-read-only) on the cluster: its nodes share a scratch prefix of the
    store; the remote itself gets no record and no object, and the scratch prefix is gone afterwards."""
    path = recipe(
        tmp_path / "r",
        {
            "first": {"uses": "ray.probe", "with": {"tag": "first"}},
            "second": {"uses": "ray.probe", "with": {"target": "L4", "tag": "second"}},
        },
    )
    proc, r = run(path, ray_cluster, bucket, "--remote-read-only")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {row["status"] for row in r.values()} == {"ran"} and where(r["second"])["label"] == "L4"
    assert bucket.keys() == [], "a read-only run wrote to the remote"
    usage = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "run", str(path), "--executor", "ray"],
        cwd=path.parent, env={**env(path, bucket), "PIPELINE_REMOTE": ""}, capture_output=True, text=True,
    )  # fmt: skip
    assert usage.returncode == 2 and "--executor ray needs a remote store" in usage.stderr
