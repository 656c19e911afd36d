"""Fully cached rerun of recipes/resnet50_fp32.yaml, whole process, against `dvc repro` and `python -c pass`.

    .venv/bin/python benchmarks/cached_rerun.py [--repeat 5]

Builds the recipe once if needed, builds an equivalent three-stage dvc.yaml
over the same ONNX files in a temporary DVC project (dvc is installed into
.venv-dvc on first use), then times every variant interleaved. Our commands
are timed twice: with the project's modules precompiled (what `make install`
leaves, and what a user sees) and with the project's own modules recompiled on
every start (an editable install under PYTHONDONTWRITEBYTECODE=1 without
`make install`'s compileall step).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import Variant, measure, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
DVC_VENV = ROOT / ".venv-dvc"
RECIPE = ROOT / "recipes" / "resnet50_fp32.yaml"


def ensure_dvc() -> Path:
    dvc = DVC_VENV / "bin" / "dvc"
    if not dvc.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DVC_VENV)], check=True)
        subprocess.run(
            [str(DVC_VENV / "bin" / "pip"), "install", "--quiet", "dvc"], check=True, stderr=subprocess.DEVNULL
        )
    return dvc


def dvc_project(cache: Path, dvc: Path) -> Path:
    """A DVC project whose stages copy our stage outputs: same files, same sizes, same DAG."""
    work = Path(tempfile.mkdtemp(prefix="dvc-bench-"))
    views = {s: cache / "resnet50_fp32" / s / "model.onnx" for s in ("export", "simplify", "surgery")}
    shutil.copy(views["export"], work / "source.onnx")
    (work / "dvc.yaml").write_text(
        "stages:\n"
        f"  export:\n    cmd: cp source.onnx export.onnx\n    deps: [source.onnx]\n    outs: [export.onnx]\n"
        f"  simplify:\n    cmd: cp {views['simplify']} simplify.onnx\n"
        "    deps: [export.onnx]\n    outs: [simplify.onnx]\n"
        f"  surgery:\n    cmd: cp {views['surgery']} surgery.onnx\n"
        "    deps: [simplify.onnx]\n    outs: [surgery.onnx]\n"
    )
    subprocess.run([str(dvc), "init", "--no-scm", "-q"], cwd=work, check=True)
    subprocess.run([str(dvc), "repro", "-q"], cwd=work, check=True)
    return work


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-dvc", action="store_true", help="skip the DVC comparison")
    args = ap.parse_args()
    cache = Path(os.environ.get("PIPELINE_CACHE", ROOT / "artifacts")).resolve()
    env = {"PIPELINE_CACHE": str(cache)}
    pipeline = str(VENV / "bin" / "pipeline")
    print(f"building {RECIPE.name} once (cached after the first time) ...", flush=True)
    subprocess.run(
        [pipeline, "run", str(RECIPE), "-q"], env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL
    )
    subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "compileall", "-q", str(ROOT / "pipeline"), str(ROOT / "stages")],
        check=True,
    )
    # The project's own modules without bytecode (site-packages keep theirs): a copy of the sources
    # first on PYTHONPATH, with bytecode writing off, so every start recompiles them.
    source_copy = Path(tempfile.mkdtemp(prefix="no-pyc-"))
    for pkg in ("pipeline", "stages"):
        shutil.copytree(ROOT / pkg, source_copy / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    nopyc = {**env, "PYTHONPATH": str(source_copy), "PYTHONDONTWRITEBYTECODE": "1"}
    base = Variant("python -c pass (venv python)", [str(VENV / "bin" / "python"), "-c", "pass"])
    variants = [base]
    for cmd in ("run", "plan", "status"):
        variants.append(Variant(f"pipeline {cmd} (cached, .pyc present)", [pipeline, cmd, str(RECIPE)], env))
    variants.append(Variant("pipeline run (cached, project not compiled)", [pipeline, "run", str(RECIPE)], nopyc))
    if not args.no_dvc:
        dvc = ensure_dvc()
        work = dvc_project(cache, dvc)
        variants.append(Variant("dvc repro (no-op, same 3 stages and files)", [str(dvc), "repro", "-q"], cwd=str(work)))
    measure(variants, repeat=args.repeat)
    print(table(variants, baseline=base))
    ours = variants[1]
    print(
        f"\ncached `pipeline run`: {ours.median:.3f} s (target <= 0.5 s), "
        f"peak RSS {ours.max_rss:.0f} MB (target <= 100 MB)"
    )
    if not args.no_dvc:
        dvc_v = variants[-1]
        print(f"pipeline run / dvc repro = {ours.median / dvc_v.median:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
