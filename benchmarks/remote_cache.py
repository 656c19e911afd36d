"""The shared remote cache on S3 (moto's server on 127.0.0.1, reached through s3fs): what it costs, what it saves.

    .venv/bin/python benchmarks/remote_cache.py [--recipe recipes/resnet50_int8.yaml] [--repeat N] [--cold-repeat 1]
        [--cold-retries 1]

Every `pipeline run` is given --skip-unavailable (TensorRT cannot run here); `--recipe recipes/digits_int8.yaml`
is a quick try. Everything is built into temporary local caches and fresh buckets, removed on exit. Three
measurements, each side by side in one run:

1. Cold build, write-through vs no remote: `pipeline run RECIPE -q` into an empty local cache, without a remote
   and with `--remote s3://<empty bucket>/cache` (objects then records uploaded by background threads; the CLI
   waits for them before it exits). The two alternate (ABAB), `--cold-repeat` rounds (default 1: a ResNet50
   cold build takes minutes); a round during which other processes took more than 8% of a core is measured
   again, `--cold-retries` times at most (default 1; the "others" column says how busy the kept one was).
   Target: write-through / no remote <= 1.10.
2. A fresh runner against the warm remote (the last write-through bucket): `pipeline run RECIPE --remote ...
   --json` with an empty local cache. Every stage must be "pulled" (or "unavailable", or "skipped" below an
   unavailable one): none executed. Timed against a bare download of exactly the objects it brought down (the
   files of its new `objects/` folder): a subprocess (`python -c`) that opens the remote with fsspec (s3fs) and
   calls `fs.get_file` for one object after another; its interpreter start and imports are timed, as the
   pipeline's are. Target: pipeline / bare <= 1.5. Also reported: bytes downloaded (the run record's "remote"
   dict) / bytes of every object the remote holds. `--repeat` rounds (default 5) after a warmup round, a fresh
   local cache each time.
3. Fully cached rerun (warm local cache), with `--remote s3://...` vs without: `--repeat` rounds (default 7)
   after a warmup, interleaved. The S3 server's request log must not grow while they run: a cached rerun
   touches no network. Target: with / without <= 1.10.

The S3 server runs on this machine: its CPU is left out of the "others, cores" column (it serves our runs,
it is not a neighbour) and printed on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))  # the tests' moto server
from _timing import CONTENTION_LIMIT, Sample, Variant, _busy_seconds, measure, table  # noqa: E402
from s3server import S3Server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
PY = str(VENV / "bin" / "python")
PIPELINE = str(VENV / "bin" / "pipeline")
# A stage that cannot run here is "unavailable", its descendants "skipped" (they cannot start): neither executes.
NOT_HERE = {"unavailable", "skipped"}
SERVED = {"pulled", *NOT_HERE}  # what a fresh runner may report against a warm remote
EXECUTED = {"ran", "failed", "gate failed", "interrupted"}  # a worker ran the stage
HEX = re.compile(r"[0-9a-f]+")

# The bare download: the same filesystem the pipeline opens, one get_file per object, nothing else.
BARE_GET = (
    "import sys, fsspec\n"
    "fs, root = fsspec.core.url_to_fs(sys.argv[1])\n"
    "for d in open(sys.argv[2]).read().split():\n"
    "    fs.get_file(f'{root}/objects/{d[:2]}/{d[2:]}', f'{sys.argv[3]}/{d}')\n"
)


def timed(server: S3Server, cmd: list[str], env: dict[str, str], stdout: Path | None = None) -> tuple[Sample, float]:
    """One whole process, as _timing.run_once, keeping stdout when asked; also the S3 server's CPU seconds."""
    with tempfile.TemporaryFile() as err, open(stdout or os.devnull, "wb") as out:
        busy0, server0 = _busy_seconds(), server.cpu_seconds()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        busy, served = _busy_seconds() - busy0, server.cpu_seconds() - server0
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{tail}")
    own = usage.ru_utime + usage.ru_stime
    return Sample(wall, usage.ru_maxrss / 1024, max(0.0, busy - own - served) / wall, code), served


def local_objects(cache: Path) -> dict[str, int]:
    """digest -> size of every object file `objects/<2 hex>/<62 hex>` of a local cache."""
    out = {}
    for f in (cache / "objects").glob("*/*"):
        if len(f.parent.name) == 2 and len(f.name) == 62 and HEX.fullmatch(f.parent.name + f.name):
            out[f.parent.name + f.name] = f.stat().st_size
    return out


def sources(recipe: Path) -> dict[str, int]:
    """mtime of every file a key can depend on: the engine, the stage kinds, the recipe and its plugins."""
    files = [*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "stages").rglob("*.py"), *recipe.parent.glob("*.py"), recipe]
    out = {}
    for f in files:
        try:
            out[str(f.relative_to(ROOT) if f.is_relative_to(ROOT) else f)] = f.stat().st_mtime_ns
        except FileNotFoundError:
            pass  # removed meanwhile: it shows up as changed
    return out


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def run_cmd(recipe: Path, cache: Path, *extra: str) -> list[str]:
    return [PIPELINE, "run", str(recipe), "--skip-unavailable", "-q", "--cache-dir", str(cache), *extra]


# -- 1. cold build ------------------------------------------------------------------------------------------------
def cold(
    server: S3Server, recipe: Path, rounds: int, work: Path, retries: int
) -> tuple[list[Variant], str, Path, dict]:
    """ABAB rounds; returns the variants, the last round's (warm) bucket and its fully built local cache.

    A round during which other processes took more than 8% of a core is measured again, `retries` times at most.
    """
    local = Variant("cold, no remote", [], server.env)
    wt = Variant("cold, --remote s3 (write-through)", [], server.env)
    served: dict[str, list[float]] = {local.name: [], wt.name: []}
    bucket, cache = "", Path()
    for i in range(rounds):
        for attempt in range(retries + 1):
            round_ = []
            for v in (local, wt):
                if v is wt:
                    shutil.rmtree(cache)  # the no-remote build's
                cache = work / f"cold-{i}-{attempt}-{'wt' if v is wt else 'local'}"
                cache.mkdir()
                if v is wt:
                    bucket = server.new_bucket(f"cold{i}-{attempt}")
                    v.cmd = run_cmd(recipe, cache, "--remote", f"s3://{bucket}/cache")
                else:
                    v.cmd = run_cmd(recipe, cache)
                print(f"  round {i + 1}/{rounds}{f' (again, {attempt})' if attempt else ''}: {v.name} ...", flush=True)
                round_.append(timed(server, v.cmd, v.env))
            busy = max(sample.other_cpu for sample, _ in round_)
            if i < rounds - 1 or (busy > CONTENTION_LIMIT and attempt < retries):
                shutil.rmtree(cache)  # only the last round's write-through cache and bucket are kept
                server.drop_bucket(bucket)
            if busy <= CONTENTION_LIMIT or attempt == retries:
                break
            print(f"  others took {busy:.2f} cores: measuring the round again", flush=True)
            time.sleep(1.0)
        for v, (sample, cpu) in zip((local, wt), round_):
            v.samples.append(sample)
            served[v.name].append(cpu)
    return [local, wt], bucket, cache, served


# -- 2. a fresh runner against the warm remote ------------------------------------------------------------------
def pull(server: S3Server, recipe: Path, bucket: str, rounds: int, work: Path, retries: int = 3) -> dict[str, Any]:
    url = f"s3://{bucket}/cache"
    ours = Variant("fresh runner: pipeline run --remote (pull)", [], server.env)
    bare = Variant("bare fsspec get_file of the same objects", [], server.env)
    served: dict[str, list[float]] = {ours.name: [], bare.name: []}
    facts: list[dict[str, Any]] = []
    problems: list[str] = []
    for r in range(-1, rounds):  # round -1 is the warmup
        for attempt in range(retries + 1):
            cache, dest, out = work / f"pull-{r}-{attempt}", work / f"bare-{r}-{attempt}", work / "pull.json"
            cache.mkdir()
            dest.mkdir()
            ours.cmd = [*run_cmd(recipe, cache, "--remote", url), "--json"]
            s_ours, cpu_ours = timed(server, ours.cmd, ours.env, stdout=out)
            record = json.loads(out.read_text())
            statuses = {row["stage"]: row["status"] for row in record["stages"]}
            got = local_objects(cache)
            listing = work / "digests.txt"
            listing.write_text("\n".join(sorted(got)) + "\n")
            bare.cmd = [PY, "-c", BARE_GET, url, str(listing), str(dest)]
            s_bare, cpu_bare = timed(server, bare.cmd, bare.env)
            fetched = {f.name: f.stat().st_size for f in dest.iterdir()}
            shutil.rmtree(cache)
            shutil.rmtree(dest)
            if fetched != got:
                problems.append(f"round {r}: the bare download got {len(fetched)} objects, the pipeline {len(got)}")
            if max(s_ours.other_cpu, s_bare.other_cpu) <= CONTENTION_LIMIT or attempt == retries:
                break
            time.sleep(1.0)
        odd = {s: st for s, st in statuses.items() if st not in SERVED}
        if odd:
            problems.append(f"round {r}: not served by the remote: {odd}")
        facts.append(
            {
                "executed": sum(1 for st in statuses.values() if st in EXECUTED),
                "statuses": statuses,
                "remote": record.get("remote", {}),
                "local_objects": len(got),
                "local_bytes": sum(got.values()),
            }
        )
        if r >= 0:
            ours.samples.append(s_ours)
            bare.samples.append(s_bare)
            served[ours.name].append(cpu_ours)
            served[bare.name].append(cpu_bare)
    return {"variants": [ours, bare], "served": served, "facts": facts, "problems": problems}


# -- 3. fully cached rerun ----------------------------------------------------------------------------------------
def cached(server: S3Server, recipe: Path, bucket: str, cache: Path, repeat: int, work: Path) -> dict[str, Any]:
    url = f"s3://{bucket}/cache"
    without = Variant("cached rerun, no remote", run_cmd(recipe, cache), server.env)
    with_remote = Variant("cached rerun, --remote s3 configured", run_cmd(recipe, cache, "--remote", url), server.env)
    # One look at what the rerun with the remote reports, and what it asks of the server.
    before = server.request_count()
    out = work / "cached.json"
    timed(server, [*with_remote.cmd, "--json"], server.env, stdout=out)
    checked = server.request_count() - before
    record = json.loads(out.read_text())
    statuses = {row["stage"]: row["status"] for row in record["stages"]}
    before = server.request_count()
    measure([without, with_remote], repeat=repeat)
    during = server.request_count() - before
    return {
        "variants": [without, with_remote],
        "statuses": statuses,
        "remote": record.get("remote", {}),
        "requests": checked + during,
        "runs": 1 + 1 + repeat,  # the --json run, the warmup, the rounds
    }


def served_line(served: dict[str, list[float]]) -> str:
    return "S3 server CPU per run (median): " + ", ".join(
        f"{name}: {statistics.median(cpu):.2f} s" for name, cpu in served.items()
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/resnet50_int8.yaml")
    ap.add_argument("--repeat", type=int, default=None, help="rounds of 2. and 3. (default 5 and 7)")
    ap.add_argument("--cold-repeat", type=int, default=1, help="rounds of 1. (default 1)")
    ap.add_argument(
        "--cold-retries", type=int, default=1, help="measure a busy round of 1. again, at most this often (default 1)"
    )
    args = ap.parse_args()
    recipe = Path(args.recipe)
    recipe = (recipe if recipe.exists() else ROOT / recipe).resolve()
    pull_repeat = args.repeat if args.repeat is not None else 5
    cached_repeat = args.repeat if args.repeat is not None else 7
    for var in ("PIPELINE_REMOTE", "PIPELINE_REMOTE_READ_ONLY", "PIPELINE_REMOTE_TRUST", "PIPELINE_REMOTE_SIGNING_KEY"):
        os.environ.pop(var, None)  # "no remote" must mean no remote

    at_start = sources(recipe)
    failed = True
    work = Path(tempfile.mkdtemp(prefix="remote-bench-"))
    server = None
    try:
        server = S3Server(work, python=PY)
        shown = recipe.relative_to(ROOT) if recipe.is_relative_to(ROOT) else recipe
        print(f"recipe {shown}, S3: moto at {server.endpoint}")

        print(f"\n1. cold build, write-through vs no remote ({args.cold_repeat} round(s), ABAB)", flush=True)
        cold_vs, bucket, warm_cache, cold_served = cold(server, recipe, args.cold_repeat, work, args.cold_retries)
        print(table(cold_vs, baseline=cold_vs[0]))
        print(served_line(cold_served))

        print(f"\n2. fresh runner against the warm remote ({pull_repeat} rounds + warmup)", flush=True)
        remote_objects = server.object_sizes(bucket)
        remote_bytes = sum(remote_objects.values())
        p = pull(server, recipe, bucket, pull_repeat, work)
        ours, bare = p["variants"]
        print(table([ours, bare], baseline=bare))
        print(served_line(p["served"]))
        print("bare download: a subprocess `python -c` (interpreter start, fsspec/s3fs import, sequential get_file)")
        facts = p["facts"][1:] or p["facts"]
        down = [f["remote"].get("downloaded", 0) for f in facts]
        executed = max(f["executed"] for f in p["facts"])
        counts: dict[str, int] = {}
        for st in p["facts"][-1]["statuses"].values():
            counts[st] = counts.get(st, 0) + 1
        last = p["facts"][-1]
        print(
            f"stage statuses (last round): {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}; "
            f"executed (any round): {executed}"
        )
        print(
            f"run record 'remote': {last['remote']}\n"
            f"new local objects/: {last['local_objects']} files, {mb(last['local_bytes'])}; "
            f"the remote holds {len(remote_objects)} objects, {mb(remote_bytes)}"
        )
        for problem in p["problems"]:
            print(f"PROBLEM: {problem}")

        print(f"\n3. fully cached rerun, with vs without a remote ({cached_repeat} rounds + warmup)", flush=True)
        c = cached(server, recipe, bucket, warm_cache, cached_repeat, work)
        without, with_remote = c["variants"]
        print(table(c["variants"], baseline=without))
        c_counts: dict[str, int] = {}
        for st in c["statuses"].values():
            c_counts[st] = c_counts.get(st, 0) + 1
        print(
            f"stage statuses (with the remote): {', '.join(f'{n} {s}' for s, n in sorted(c_counts.items()))}; "
            f"run record 'remote': {c['remote']}"
        )
        print(f"requests in the S3 server's log during the {c['runs']} runs with the remote: {c['requests']}")
        not_cached = {s: st for s, st in c["statuses"].items() if st not in {"cached", *NOT_HERE}}
        if not_cached:
            print(f"PROBLEM: the warm local cache did not serve: {not_cached}")

        print()
        print(f"write-through cold / no remote = {cold_vs[1].median / cold_vs[0].median:.2f} (target <= 1.10)")
        print(f"fresh runner pull / bare fsspec download = {ours.median / bare.median:.2f} (target <= 1.5)")
        print(f"stages executed by the fresh runner = {executed} (target 0)")
        print(
            f"bytes downloaded / bytes on the remote = {statistics.median(down) / remote_bytes:.3f} "
            f"({mb(statistics.median(down))} of {mb(remote_bytes)})"
        )
        print(f"cached rerun with remote / without = {with_remote.median / without.median:.2f} (target <= 1.10)")
        print(f"S3 requests by cached reruns with the remote = {c['requests']} (target 0)")
        failed = bool(executed > 0 or c["requests"] > 0 or p["problems"] or not_cached)
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(work, ignore_errors=True)
        changed = sorted(f for f, t in sources(recipe).items() if at_start.get(f) != t)
        if changed:
            print(
                f"WARNING: {len(changed)} source file(s) changed during the run ({', '.join(changed[:6])}"
                f"{', ...' if len(changed) > 6 else ''}): stage keys may have moved under it, and the checks "
                "above can fail for that reason alone; run it again on a quiet tree",
                flush=True,
            )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
