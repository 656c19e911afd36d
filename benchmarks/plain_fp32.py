"""The resnet50_fp32 recipe as a plain script: the same library calls, no engine.

Runs export.onnx -> onnx.simplify -> onnx.surgery by calling each kind's
run() in this one process (same exporter, same ONNX Runtime self-checks),
with no hashing, caching, worker processes, views or records. It is the
baseline for benchmarks/cold_overhead.py.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.recipe.load import load_recipe  # noqa: E402
from pipeline.stage import StageContext  # noqa: E402


def main() -> None:
    recipe = load_recipe(ROOT / "recipes" / "resnet50_fp32.yaml")
    work = Path(tempfile.mkdtemp(prefix="plain-fp32-"))
    previous: Path | None = None
    for name in ("export", "simplify", "surgery"):
        node = recipe.stages[name]
        outdir = work / name
        outdir.mkdir()
        inputs = {"model": previous} if previous is not None else {}
        ctx = StageContext(
            stage=name,
            params=node.params,
            inputs=inputs,
            outdir=outdir,
            recipe_dir=recipe.dir,
            model=recipe.model,
            outputs=dict(node.kind.outputs),
        )
        node.kind().run(ctx)
        previous = outdir / node.kind.outputs["model"].path
    print(previous)


if __name__ == "__main__":
    main()
