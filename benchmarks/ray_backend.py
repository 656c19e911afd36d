"""`pipeline run --executor ray` on a local Ray cluster against the local worker pool: what a stage costs
through the cluster, what a real recipe costs, and that a cached rerun never needs the cluster.

    .venv/bin/python benchmarks/ray_backend.py [--repeat N] [--cached-repeat N] [--no-resnet]

Why: the Ray backend sends every stage as a task to a fresh worker process on a node, moving its inputs,
the recipe's folder and its outputs through the remote store by digest. That is paid per stage; this
measures how much, on this machine, next to the local executor given the same remote, so that only the
executor differs. Everything runs against a moto S3 server on 127.0.0.1 (fresh bucket) and a
`ray.cluster_utils.Cluster` started here: a head that takes no tasks (num_cpus=0) and two worker nodes
of 1 CPU each (the machine has 2 cores: 2 x 1 CPU is all of it, and matches `--jobs 2` of the local
executor). The S3 endpoint and credentials are in the environment before the cluster starts, so its
workers reach the remote as the CLI does. Every command is the real CLI in a subprocess
(`python -m pipeline.cli.main run ...`), the repository this file lives in first on PYTHONPATH.

1. One toy stage (`bench.noop`: writes one small file; a plugin beside a one-stage recipe in a temp
   folder), `--force` so it runs every time: `--executor ray --ray-address <cluster>` against the local
   executor, both `--remote s3://.../toy`. A warmup each, then `--repeat` rounds (default 5), interleaved;
   a round during which other processes took more than 8% of a core is measured again (3 times at most).
   Reported: median wall seconds, the ratio, and the seconds added per stage. (Not tests/e2e/raykinds.py's
   `ray.probe`: it imports ray inside the stage, which the local worker pays and a Ray worker does not.)
2. recipes/resnet50_int8.yaml cold (copied to a temp folder, so its lock is written there): an empty local
   cache and a fresh remote prefix each, `--skip-unavailable` (no TensorRT here), `--jobs 2` for both (the
   Ray executor submits at most --jobs stages at once too). One round each (minutes apiece), the cluster
   first; the heavy libraries are imported once beforehand so neither pays a cold page cache. One
   machine: the two nodes share its 2 cores, so no speed-up is expected; this is the price of the
   backend, not a scaling figure. The lock file's key of every stage whose kind is not validate or
   report.compare (they time things) must be the same after both. `--no-resnet` leaves out 2. and 3.
3. Fully cached reruns, after 2., each on its own warm cache and remote: `--executor ray` with the live
   cluster's address, `--executor ray --ray-address 127.0.0.1:9` (nothing listens there) and the local
   executor; `--cached-repeat` rounds (default 3) after a warmup, interleaved, then one more run each that
   counts the S3 server's requests. Every stage must be cached (or unavailable / skipped, as TensorRT's);
   the run against 127.0.0.1:9 exiting 0 is the proof that a cached rerun contacts no cluster (one that
   tries exits 2, "cannot reach a Ray cluster").

The "ours" column is the CPU this benchmark's process tree took while a command ran (the CLI, the Ray
cluster and its workers, the S3 server), in cores; "others" the rest of the machine's. A Ray task runs
outside the CLI's process, so only a machine-wide count sees it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _timing import CLK, CONTENTION_LIMIT, _busy_seconds  # noqa: E402
from remote_cache import S3Server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
RESNET = ROOT / "recipes" / "resnet50_int8.yaml"
NODE_ARGS: dict[str, Any] = {"object_store_memory": 80 * 1024 * 1024, "include_dashboard": False}
NODE_CPUS = 1
DEAD = "127.0.0.1:9"  # the discard port: nothing listens there
NOT_HERE = {"unavailable", "skipped"}  # TensorRT's stages and what follows them
TIMING_KINDS = {"validate", "report.compare"}
WIDTH = 33

NOOP_KIND = '''"""A stage kind for benchmarks/ray_backend.py: does nothing worth timing."""

from pydantic import Field

from pipeline.stage import OutputSpec, Params, Stage


class NoopParams(Params):
    tag: str = Field("", description="written to the output")


class Noop(Stage[NoopParams]):
    """Writes one small file."""

    kind = "bench.noop"
    outputs = {"out": OutputSpec("out.txt")}

    def run(self, ctx) -> dict:  # noqa: ANN001
        (ctx.outdir / "out.txt").write_text(ctx.params.tag)
        return {}
'''
TOY_RECIPE = "name: raybench\nplugins: [benchkinds]\nstages:\n  touch: {uses: bench.noop, with: {tag: toy}}\n"
# What every cold build imports, once, before the first one: neither variant pays a cold page cache.
WARM_IMPORTS = "import torch, torchvision, onnx, onnxruntime, openvino, nncf"


# -- CPU: this process tree against the rest of the machine --------------------------------------------------
def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and its reaped children)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        out[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / CLK)  # utime stime cutime cstime
    return out


def _others_cpu(procs: dict[int, tuple[int, float]]) -> dict[int, float]:
    """CPU seconds of every process that does not descend from this one (the neighbours)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    ours, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        ours.add(pid)
        todo.extend(children.get(pid, []))
    return {pid: cpu for pid, (_, cpu) in procs.items() if pid not in ours}


@dataclass
class Sample:
    seconds: float
    ours: float  # cores: the CLI, the cluster and its workers, the S3 server
    others: float  # cores: the rest of the machine
    record: dict[str, Any]


@dataclass
class Variant:
    name: str
    cmd: list[str]
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    def stage_seconds(self, stage: str) -> float:
        """The stage's own seconds in the run records (worker start to end), median."""
        return statistics.median(rows(s.record)[stage].get("seconds", 0.0) for s in self.samples)


def rows(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["stage"]: row for row in record.get("stages", [])}


def run(cmd: list[str], cwd: Path) -> Sample:
    """One whole CLI process (`--json` on stdout); raises with its stderr's tail when it exits non-zero."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        others0, busy0 = _others_cpu(_processes()), _busy_seconds()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=err, check=False)
        wall = time.perf_counter() - t0
        busy, others1 = _busy_seconds() - busy0, _others_cpu(_processes())
        others = sum(max(0.0, cpu - others0.get(pid, 0.0)) for pid, cpu in others1.items())
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
        out.seek(0)
        record = json.loads(out.read() or b"{}")
    others = min(others, busy)
    return Sample(wall, max(0.0, busy - others) / wall, others / wall, record)


def interleaved(variants: list[Variant], cwd: Path, rounds: int, warmup: bool = True, retries: int = 3) -> None:
    """Round-robin `rounds` rounds after a warmup; a round during which others took > 8% of a core again."""
    if warmup:
        for v in variants:
            run(v.cmd, cwd)
    for i in range(rounds):
        for attempt in range(retries + 1):
            round_ = [run(v.cmd, cwd) for v in variants]
            busiest = max(s.others for s in round_)
            if busiest <= CONTENTION_LIMIT or attempt == retries:
                break
            say(f"  round {i + 1}: others took {busiest:.2f} cores, measuring it again")
            time.sleep(1.0)
        for v, s in zip(variants, round_):
            v.samples.append(s)


def say(text: str) -> None:
    """A line of the report, wrapped at 80 columns (continuations indented)."""
    print(textwrap.fill(text, 80, subsequent_indent="    ", break_on_hyphens=False), flush=True)


def table(variants: list[Variant], baseline: Variant) -> str:
    """80 columns: wall seconds, CPU in cores (ours, others), ratio to the baseline."""
    out = [
        f"{'variant':{WIDTH}} {'median s':>8} {'min s':>7} {'max s':>7} {'ours':>5} {'others':>6} {'x local':>7}",
        "-" * 79,
    ]
    for v in variants:
        secs = [s.seconds for s in v.samples]
        out.append(
            f"{v.name[:WIDTH]:{WIDTH}} {v.median:8.2f} {min(secs):7.2f} {max(secs):7.2f} "
            f"{statistics.median(s.ours for s in v.samples):5.2f} {max(s.others for s in v.samples):6.2f} "
            f"{v.median / baseline.median:7.2f}"
        )
    return "\n".join(out)


# -- the S3 server and the cluster ----------------------------------------------------------------------------
# moto's S3 server: the one benchmarks/remote_cache.py starts (env, request_count, new_bucket, close).
def start_cluster() -> tuple[Any, dict[str, str]]:
    """A head with no CPUs and two worker nodes; node id -> its name here. Call with the S3 env in os.environ."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **NODE_ARGS})
    labels = {}
    try:
        for name in ("node1", "node2"):
            node = cluster.add_node(num_cpus=NODE_CPUS, **NODE_ARGS)
            labels[node.node_id] = name
        cluster.wait_for_nodes()
    except BaseException:
        cluster.shutdown()
        raise
    return cluster, labels


def listening(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def cli(recipe: Path, cache: Path, remote: str, *extra: str) -> list[str]:
    return [PY, "-m", "pipeline.cli.main", "run", str(recipe), "--cache-dir", str(cache), "--remote", remote, "--json",
            "-q", *extra]  # fmt: skip


def counts(record: dict[str, Any]) -> str:
    c: dict[str, int] = {}
    for row in rows(record).values():
        c[row["status"]] = c.get(row["status"], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(c.items()))


def lock_stages(recipe: Path) -> dict[str, Any]:
    import yaml

    return (yaml.safe_load(recipe.with_suffix(".lock").read_text()) or {}).get("stages", {})


# -- 1. one toy stage ------------------------------------------------------------------------------------------
def toy(work: Path, address: str, remote: str, nodes: dict[str, str], repeat: int, problems: list[str]) -> dict:
    folder = work / "toy"
    folder.mkdir()
    (folder / "benchkinds.py").write_text(NOOP_KIND)
    recipe = folder / "raybench.yaml"
    recipe.write_text(TOY_RECIPE)
    ray = Variant(
        "toy stage: --executor ray",
        cli(recipe, work / "toy-ray", remote, "--force", "--executor", "ray", "--ray-address", address),
    )
    local = Variant("toy stage: local executor", cli(recipe, work / "toy-local", remote, "--force"))
    interleaved([ray, local], work, repeat)
    for v in (ray, local):
        for i, s in enumerate(v.samples):
            row = rows(s.record).get("touch", {})
            if row.get("status") != "ran":
                problems.append(f"{v.name}, round {i + 1}: status {row.get('status')!r}, not 'ran'")
            if v is ray and not any(n.startswith(row.get("node") or "?") for n in nodes):
                problems.append(f"{v.name}, round {i + 1}: node {row.get('node')!r} is none of the worker nodes")
            if v is local and row.get("node"):
                problems.append(f"{v.name}, round {i + 1}: a node ({row['node']!r}) in a local run")
    return {"variants": [ray, local]}


# -- 2. ResNet50 INT8 cold -------------------------------------------------------------------------------------
def resnet(work: Path, address: str, bucket: str, nodes: dict[str, str], problems: list[str]) -> dict:
    folder = work / "resnet"
    folder.mkdir()
    recipe = folder / RESNET.name
    shutil.copy(RESNET, recipe)
    common = ("--skip-unavailable", "--jobs", "2")
    ray = Variant(
        f"resnet cold: ray, 2 x {NODE_CPUS} CPU",
        cli(recipe, work / "rn-ray", f"s3://{bucket}/ray", *common, "--executor", "ray", "--ray-address", address),
    )
    local = Variant("resnet cold: local, --jobs 2", cli(recipe, work / "rn-local", f"s3://{bucket}/local", *common))
    print("  importing torch, onnx, openvino, nncf once (page cache) ...", flush=True)
    subprocess.run([PY, "-c", WARM_IMPORTS], check=True, cwd=work)
    locks = {}
    for v in (ray, local):
        print(f"  {v.name} ...", flush=True)
        v.samples.append(run(v.cmd, work))
        locks[v.name] = lock_stages(recipe)
    by_node: dict[str, int] = {}
    for name, row in rows(ray.samples[0].record).items():
        if row["status"] == "ran":
            node = row.get("node") or "none"
            label = next((lab for n, lab in nodes.items() if n.startswith(node)), f"not a worker node ({node})")
            by_node[label] = by_node.get(label, 0) + 1
            if label not in nodes.values():
                problems.append(f"{ray.name}: stage {name} ran on {label}")
    for v in (ray, local):
        odd = {n: r["status"] for n, r in rows(v.samples[0].record).items() if r["status"] not in {"ran", *NOT_HERE}}
        if odd:
            problems.append(f"{v.name}: {odd}")
    a, b = locks[ray.name], locks[local.name]
    compared = sorted(n for n in set(a) | set(b) if (a.get(n) or b[n])["kind"] not in TIMING_KINDS)
    differ = [n for n in compared if n not in a or n not in b or a[n]["key"] != b[n]["key"]]
    outputs_differ = [n for n in compared if n not in differ and a[n]["outputs"] != b[n]["outputs"]]
    for n in differ:
        ka, kb = (str(lock.get(n, {}).get("key"))[:16] for lock in (a, b))
        problems.append(f"lock key of {n} differs: ray {ka}, local {kb}")
    timing = sorted(n for n in set(a) | set(b) if (a.get(n) or b[n])["kind"] in TIMING_KINDS)
    return {
        "variants": [ray, local],
        "recipe": recipe,
        "by_node": by_node,
        "compared": compared,
        "differ": differ,
        "outputs_differ": outputs_differ,
        "timing": timing,
    }


# -- 3. fully cached reruns ------------------------------------------------------------------------------------
def cached(server: S3Server, work: Path, r: dict, rounds: int, problems: list[str]) -> dict:
    ray_cold, local_cold = r["variants"]
    ray = Variant("cached: --executor ray", ray_cold.cmd)
    dead = Variant(f"cached: ray, address {DEAD}", [*ray_cold.cmd, "--ray-address", DEAD])
    local = Variant("cached: local executor", local_cold.cmd)
    if listening(DEAD):
        problems.append(f"something listens at {DEAD}: the unreachable-cluster check proves nothing")
    contacted = "no"
    try:
        interleaved([ray, dead, local], work, rounds)
        requests = {}
        for v in (ray, dead, local):  # one more run each, counting what it asks of the S3 server
            before = server.request_count()
            v.samples.append(run(v.cmd, work))
            requests[v.name] = server.request_count() - before
    except RuntimeError as exc:
        problems.append(f"a cached rerun failed: {exc}")
        contacted = "yes" if "cannot reach a Ray cluster" in str(exc) else "unknown (it failed otherwise)"
        return {"variants": [], "contacted": contacted, "all_cached": "no"}
    all_cached = "yes"
    for v in (ray, dead, local):
        odd: dict[tuple[str, str], int] = {}
        for s in v.samples:
            for n, row in rows(s.record).items():
                if row["status"] not in {"cached", *NOT_HERE}:
                    extra = f", {row.get('downloaded')} B down" if row["status"] == "pulled" else ""
                    odd[(n, row["status"] + extra)] = odd.get((n, row["status"] + extra), 0) + 1
        if odd:
            all_cached = "no"
            shown = ", ".join(f"{n} {st} ({k}/{len(v.samples)} runs)" for (n, st), k in odd.items())
            problems.append(f"{v.name}: not cached: {shown}")
    return {
        "variants": [ray, dead, local],
        "contacted": contacted,
        "all_cached": all_cached,
        "statuses": {v.name: counts(v.samples[-1].record) for v in (ray, dead, local)},
        "requests": requests,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="rounds of 1. (default 5)")
    ap.add_argument("--cached-repeat", type=int, default=3, help="rounds of 3. (default 3)")
    ap.add_argument("--resnet", action=argparse.BooleanOptionalAction, default=True, help="run 2. and 3. (default on)")
    args = ap.parse_args()

    for var in (
        "PIPELINE_REMOTE",
        "PIPELINE_REMOTE_READ_ONLY",
        "PIPELINE_REMOTE_TRUST",
        "PIPELINE_REMOTE_SIGNING_KEY",
        "PIPELINE_CACHE",
        "PIPELINE_RAY_ADDRESS",
        "RAY_ADDRESS",
    ):
        os.environ.pop(var, None)  # every command says what it uses
    # This repository's `pipeline` for the CLI and for the cluster's workers, wherever this is run from.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["COLUMNS"] = "200"

    problems: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    server = cluster = None
    summary: list[str] = []
    try:
        server = S3Server(work)
        os.environ.update(server.env)  # before the cluster starts: its nodes inherit the environment
        t0 = time.perf_counter()
        cluster, nodes = start_cluster()
        say(
            f"S3: moto at {server.endpoint}; Ray cluster at {cluster.address} (head num_cpus=0, 2 worker nodes "
            f"x {NODE_CPUS} CPU, started in {time.perf_counter() - t0:.1f} s); {os.cpu_count()} cores"
        )
        bucket = server.new_bucket("raybench")

        print(f"\n1. one toy stage, --force, ray vs local ({args.repeat} rounds + warmup, interleaved)", flush=True)
        t = toy(work, cluster.address, f"s3://{bucket}/toy", nodes, args.repeat, problems)
        ray, local = t["variants"]
        print(table([ray, local], baseline=local))
        added = ray.median - local.median
        say(
            f"stage's own seconds (run record, median): ray {ray.stage_seconds('touch'):.2f}, "
            f"local {local.stage_seconds('touch'):.2f}"
        )
        summary += [
            f"toy stage, ray / local = {ray.median / local.median:.2f}",
            f"added per stage by the Ray backend = {added:+.2f} s",
        ]

        if args.resnet:
            print(f"\n2. {RESNET.relative_to(ROOT)} cold, ray vs local (one round each)", flush=True)
            r = resnet(work, cluster.address, bucket, nodes, problems)
            ray, local = r["variants"]
            print(table([ray, local], baseline=local))
            say(f"statuses: ray: {counts(ray.samples[0].record)}; local: {counts(local.samples[0].record)}")
            sums = [sum(row.get("seconds") or 0.0 for row in rows(v.samples[0].record).values()) for v in (ray, local)]
            say(f"sum of the stages' own seconds (run record): ray {sums[0]:.1f}, local {sums[1]:.1f}")
            busy = [v.name for v in (ray, local) if v.samples[0].others > CONTENTION_LIMIT]
            if busy:
                say(f"WARNING: other processes took more than {CONTENTION_LIMIT} cores during: {', '.join(busy)}")
            say(f"stages the ray run ran, by node: {', '.join(f'{k} {n}' for k, n in sorted(r['by_node'].items()))}")
            say(
                f"lock keys equal for {len(r['compared']) - len(r['differ'])}/{len(r['compared'])} stages "
                f"(left out, they time things: {', '.join(r['timing'])})"
            )
            if r["outputs_differ"]:
                say(f"  same keys, other output digests: {', '.join(r['outputs_differ'])}")
            summary += [
                f"resnet cold, ray / local = {ray.median / local.median:.2f} (one machine: no speed-up expected)",
                f"lock keys equal, ray vs local (not validate/report.compare) = {'no' if r['differ'] else 'yes'}",
            ]

            print(f"\n3. fully cached rerun ({args.cached_repeat} rounds + warmup, interleaved)", flush=True)
            c = cached(server, work, r, args.cached_repeat, problems)
            if c["variants"]:
                ray, dead, local = c["variants"]
                print(table(c["variants"], baseline=local))
                say(f"(each has a last, extra run that counts S3 requests; {DEAD} is the discard port)")
                for v in c["variants"]:
                    say(f"  {v.name}: {c['statuses'][v.name]}; S3 requests: {c['requests'][v.name]}")
                summary.append(f"cached rerun, ray / local = {ray.median / local.median:.2f}")
            summary.append(f"cached rerun contacted a cluster = {c['contacted']} (exit 0 against {DEAD})")
            summary.append(f"cached rerun with --executor ray: every stage cached = {c['all_cached']}")

        print()
        for line in summary:
            say(line)
        for p in problems:
            say(f"PROBLEM: {p}")
    finally:
        if cluster is not None:
            cluster.shutdown()
        if server is not None:
            server.close()
        shutil.rmtree(work, ignore_errors=True)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
