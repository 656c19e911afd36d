"""Cold build of recipes/resnet50_int8.yaml, stage by stage, then the fully cached rerun.

    .venv/bin/python benchmarks/int8_build.py [--repeat 5] [--base REV] [--set KEY=VALUE ...]

The cold build uses a fresh cache directory (TensorRT stages are skipped on a machine without a
GPU); the cached rerun is the whole `pipeline run` process, median of `--repeat`, beside
`python -c pass`. With `--base REV`, the same recipe is also built and rerun by the code at git
revision REV (checked out in a temporary worktree, byte-compiled like `make install` does), and
both cached reruns are measured interleaved in one run: the ratio says what this checkout's
changes cost a cached run. `--set` overrides go to every build and rerun, both trees alike (on a CPU
without bf16: `--set stages.openvino_int8.with.inference_precision=f32`, which a base that predates
bf16 being unavailable there needs to build at all).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import Variant, measure, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cold_build(cmd: list[str], recipe: str, env: dict[str, str], label: str, sets: list[str], cwd: Path) -> None:
    proc = subprocess.run(
        [*cmd, "run", recipe, "--skip-unavailable", "--json", "-q", *sets],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"cold build ({label}) failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    record = json.loads(proc.stdout)
    print(f"cold build of {Path(recipe).name} ({label}): {record['seconds']:.1f} s in all")
    for row in record["stages"]:
        secs = row.get("seconds")
        print(f"  {row['stage']:16} {row['status']:12} {secs if secs is not None else '-':>8}")


def base_checkout(rev: str) -> Path:
    """REV in a temporary git worktree, byte-compiled (as `make install` compiles this checkout), beside this
    checkout: both trees load their modules from the same filesystem (a checkout on a slower disk than /tmp
    imports some 15% slower, which would be measured as the change's cost)."""
    try:
        parent = Path(tempfile.mkdtemp(prefix=".int8-bench-base-", dir=ROOT.parent))
    except OSError:
        parent = Path(tempfile.mkdtemp(prefix="int8-bench-base-"))
    where = parent / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev], check=True, capture_output=True
    )
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(where / "pipeline"), str(where / "stages")], check=True
    )
    own_entry_points(where)
    return where


def own_entry_points(tree: Path) -> None:
    """The tree's own entry points (its stage and dataset kinds), as metadata first on its path: the installed
    checkout's would name modules the base may not have (importlib.metadata takes the first `pipeline`)."""
    import tomllib

    project = tomllib.loads((tree / "pyproject.toml").read_text())["project"]
    info = tree / f"pipeline-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: pipeline\nVersion: {project['version']}\n")
    groups = [
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
        for group, entries in project.get("entry-points", {}).items()
    ]
    (info / "entry_points.txt").write_text("\n".join(groups))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--base", help="also measure the code at this git revision, side by side")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe override, for both")
    args = ap.parse_args()
    sets = [arg for kv in args.set for arg in ("--set", kv)]
    python = str(ROOT / ".venv" / "bin" / "python")
    # `python -m <its CLI module>` started in the checkout (`-m` puts the working directory first on the path,
    # before PYTHONPATH and the editable install) runs that checkout's code, so both trees start the same way.
    # Byte-compiled as `make install` leaves it (PYTHONDONTWRITEBYTECODE may be set: a module added since would
    # be compiled from source on every start, and measured as the change's cost).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "pipeline"), str(ROOT / "stages")], check=True)
    trees = [("this checkout", ROOT)] + ([(f"base {args.base}", base_checkout(args.base))] if args.base else [])
    variants = [Variant("python -c pass", [python, "-c", "pass"])]
    try:
        for label, tree in trees:
            env = {"PIPELINE_CACHE": tempfile.mkdtemp(prefix="int8-bench-"), "PYTHONPATH": str(tree)}
            recipe = str(tree / "recipes" / "resnet50_int8.yaml")
            cli = "pipeline.cli.main" if (tree / "pipeline" / "cli" / "main.py").is_file() else "pipeline.cli"
            cold_build([python, "-m", cli], recipe, env, label, sets, tree)
            rerun = [python, "-m", cli, "run", recipe, "--skip-unavailable", *sets]
            variants.append(Variant(f"cached run ({label})", rerun, env, cwd=str(tree)))
        measure(variants, repeat=args.repeat)
        print(table(variants, baseline=variants[0]))
        print(f"\nfully cached rerun: {variants[1].median:.3f} s (target <= 0.5 s)")
        if args.base:
            print(f"this checkout / base {args.base}: {variants[1].median / variants[2].median:.3f} (target <= 1.10)")
    finally:
        if args.base:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees[1][1])], capture_output=True
            )
            shutil.rmtree(trees[1][1].parent, ignore_errors=True)


if __name__ == "__main__":
    main()
