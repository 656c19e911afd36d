"""Serving packages: what packaging costs against the engine builds it follows, and whether the matrix and the
packaging stages keep a fully cached rerun instant.

    .venv/bin/python benchmarks/serve_packaging.py [--repeat 5] [--cache DIR]

1. Builds recipes/digits_serve.yaml and recipes/digits_int8.yaml from nothing in a fresh cache (or DIR), and
   reads each stage's seconds from the run record: packaging (triton, ovms) against the engine builds.
2. Times, interleaved in one session (benchmarks/_timing.py), whole `pipeline run` processes: the fully cached
   rerun of digits_serve.yaml against digits_int8.yaml's, and a rerun after `instance_count` changes (only the
   Triton packaging runs again; no engine build does).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import Variant, measure, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = str(ROOT / ".venv" / "bin" / "pipeline")
SERVE = "recipes/digits_serve.yaml"
INT8 = "recipes/digits_int8.yaml"


def run_record(recipe: str, env: dict[str, str], *extra: str) -> dict:
    proc = subprocess.run(
        [PIPELINE, "run", recipe, "--json", *extra], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"{recipe} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def seconds(record: dict) -> dict[str, tuple[str, float]]:
    return {row["stage"]: (row["status"], row.get("seconds") or 0.0) for row in record["stages"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=None, help="a cache to use (default: a fresh one)")
    args = parser.parse_args()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="serve-bench-"))
    env = {"PIPELINE_CACHE": str(cache)}

    built = seconds(run_record(SERVE, env))
    run_record(INT8, env)
    engines = {n: s for n, (status, s) in built.items() if n.startswith("engine@")}
    packaging = {n: s for n, (status, s) in built.items() if n in ("triton", "ovms")}
    everything = sum(s for _, s in built.values())
    print(f"digits_serve.yaml from nothing ({cache}): {everything:.1f} s of stage time")
    for name, s in {**engines, **packaging}.items():
        print(f"  {name:<26} {s:6.2f} s")
    total_engines, total_packaging = sum(engines.values()), sum(packaging.values())
    if not total_engines:
        sys.exit(f"{cache} holds the recipe already: run without --cache for the build figures")
    print(
        f"packaging {total_packaging:.2f} s against engine builds {total_engines:.2f} s "
        f"(ratio {total_packaging / total_engines:.2f}; {total_packaging / everything:.1%} of the recipe's stage time)"
    )

    rerun = run_record(SERVE, env, "--set", "stages.triton.with.instance_count=2")
    ran = sorted(n for n, (status, _) in seconds(rerun).items() if status == "ran")
    print(f"instance_count 1 -> 2 reruns: {', '.join(ran)}")

    variants = [
        Variant("digits_int8.yaml, cached", [PIPELINE, "run", INT8], env=env, cwd=str(ROOT)),
        Variant("digits_serve.yaml, cached", [PIPELINE, "run", SERVE], env=env, cwd=str(ROOT)),
    ]
    measure(variants, repeat=args.repeat)
    print(table(variants, baseline=variants[0]))


if __name__ == "__main__":
    main()
