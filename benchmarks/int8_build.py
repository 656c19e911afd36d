"""Cold build of recipes/resnet50_int8.yaml, stage by stage, then the fully cached rerun.

    .venv/bin/python benchmarks/int8_build.py [--repeat 5]

The cold build uses a fresh cache directory (TensorRT stages are skipped on a machine without a
GPU); the cached rerun is the whole `pipeline run` process, median of `--repeat`, beside
`python -c pass`.
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
RECIPE = str(ROOT / "recipes" / "resnet50_int8.yaml")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="int8-bench-")
    env = {**os.environ, "PIPELINE_CACHE": cache}
    proc = subprocess.run([PIPELINE, "run", RECIPE, "--skip-unavailable", "--json", "-q"], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"cold build failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    record = json.loads(proc.stdout)
    print(f"cold build of {Path(RECIPE).name}: {record['seconds']:.1f} s in all")
    for row in record["stages"]:
        secs = row.get("seconds")
        print(f"  {row['stage']:16} {row['status']:12} {secs if secs is not None else '-':>8}")
    base = Variant("python -c pass", [str(ROOT / ".venv" / "bin" / "python"), "-c", "pass"])
    cached = Variant("pipeline run (fully cached)", [PIPELINE, "run", RECIPE, "--skip-unavailable"], {"PIPELINE_CACHE": cache})
    measure([base, cached], repeat=args.repeat)
    print(table([base, cached], baseline=base))
    print(f"\nfully cached rerun: {cached.median:.3f} s (target <= 0.5 s)")


if __name__ == "__main__":
    main()
