"""Discovered inputs: what recording the files a stage opens costs, and what it records on real recipes.

    .venv/bin/python benchmarks/discovered_inputs.py [--repeat 5] [--recipe recipes/digits_int8.yaml ...]

1. The audit hook's cost on heavy Python code: a torch.onnx.export of torchvision's ResNet18 (the export
   stage's own call), timed inside the process (imports excluded), with the recorder active and with no
   hook installed, in fresh processes, interleaved, median of `--repeat`.
2. For each `--recipe`: a cold `pipeline run` on a fresh cache, then the discovered inputs each stage's
   record holds (a handful at most, each a file a user would recognise; nothing from torch's or OpenVINO's
   own installation).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")

WORKLOAD = """
import sys, tempfile, time, warnings
import torch, torchvision
warnings.simplefilter("ignore")
torch.manual_seed(0)
model = torchvision.models.resnet18(weights=None).eval()
x = torch.randn(1, 3, 224, 224)
out = tempfile.mkdtemp() + "/m.onnx"
def export():
    torch.onnx.export(model, (x,), out, opset_version=20, dynamo=True, optimize=False, verbose=False)
if sys.argv[1] == "hook":
    from pipeline.keys import discovered
    with discovered.recording():
        start = time.perf_counter(); export(); seconds = time.perf_counter() - start
else:
    start = time.perf_counter(); export(); seconds = time.perf_counter() - start
print(seconds)
"""


def hook_cost(repeat: int) -> None:
    times: dict[str, list[float]] = {"plain": [], "hook": []}
    for _ in range(repeat):
        for variant in times:
            proc = subprocess.run(
                [PYTHON, "-c", WORKLOAD, variant],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
                check=True,
            )
            times[variant].append(float(proc.stdout.strip().splitlines()[-1]))
    plain, hook = statistics.median(times["plain"]), statistics.median(times["hook"])
    print(f"torch.onnx.export(resnet18), median of {repeat}, interleaved:")
    print(f"  no audit hook     {plain:7.2f} s  {sorted(round(t, 2) for t in times['plain'])}")
    print(f"  recording active  {hook:7.2f} s  {sorted(round(t, 2) for t in times['hook'])}")
    print(f"  recording / none: {hook / plain:.3f}")


def recorded(recipe: Path) -> None:
    cache = tempfile.mkdtemp(prefix="discovered-bench-")
    proc = subprocess.run(
        [PYTHON, "-m", "pipeline.cli.main", "run", str(recipe), "--skip-unavailable", "--json", "-q"],
        env={**os.environ, "PIPELINE_CACHE": cache, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    if proc.returncode not in (0, 3):
        sys.exit(f"{recipe}: run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    run = json.loads(proc.stdout)
    keys = {}
    for path in Path(cache, "records").glob("??/*.json"):
        record = json.loads(path.read_text())
        keys[record["key"]] = record
    print(f"{recipe.name} (exit {proc.returncode}, {run['seconds']:.0f} s): discovered inputs per stage")
    for row in run["stages"]:
        record = keys.get(row.get("key", ""), {}) if row.get("key") else None
        if record is None:  # the run record names no key: find the stage's own record
            record = next((r for r in keys.values() if r["stage"] == row["stage"]), {})
        found = record.get("discovered", {})
        print(f"  {row['stage']:16} {row['status']:12} {len(found):3}  {', '.join(sorted(found))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--recipe", action="append", default=[], type=Path)
    args = ap.parse_args()
    hook_cost(args.repeat)
    for recipe in args.recipe:
        recorded(recipe.resolve())


if __name__ == "__main__":
    main()
