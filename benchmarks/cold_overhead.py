"""Cold build of recipes/resnet50_fp32.yaml: `pipeline run --force` vs the same calls in a plain script.

    .venv/bin/python benchmarks/cold_overhead.py [--repeat 5]

Both variants export with the same exporter and run the same ONNX Runtime
self-checks; the difference is the engine: key computation, a worker
process, publishing objects, records, views and the lock file. Target:
pipeline / plain <= 1.10.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import Variant, measure, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="cold-bench-")
    plain = Variant("plain script (same calls, one process)", [PY, str(ROOT / "benchmarks" / "plain_fp32.py")])
    ours = Variant(
        "pipeline run --force (cold)",
        [
            str(ROOT / ".venv" / "bin" / "pipeline"),
            "run",
            "-q",
            str(ROOT / "recipes" / "resnet50_fp32.yaml"),
            "--force",
            "--cache-dir",
            cache,
        ],
    )
    measure([plain, ours], repeat=args.repeat, warmup=False)
    print(table([plain, ours], baseline=plain))
    print(f"\npipeline / plain = {ours.median / plain.median:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
