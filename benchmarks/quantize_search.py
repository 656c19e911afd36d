"""quantize.search against NNCF's quantize_with_accuracy_control, same data and budget, and a killed search resumed.

    .venv/bin/python benchmarks/quantize_search.py [--cases transformer,gelu,fcn] [--repeats 7]

For each case (a recipe with a `quantize.search` stage named `search`):
1. the search runs through the pipeline on a cache that holds its upstream stages (wall time, trials);
2. NNCF's accuracy control runs on the same float model, calibration samples and search samples, with
   `max_num_iterations` = the search's `max_trials` and, as its metric, the figure of the gate the default
   setting misses most (so it optimises what the gate reads, its best chance), `max_drop` = 1 - threshold;
3. the float engine, the default INT8 (the search's trial 0), the search's choice and AC's model are then
   timed side by side in one loop (same inference precision and batch as the search's objective,
   interleaved rounds, median; a round another process disturbs is measured again), and each model's
   gates are evaluated on the search and the held-out samples the way the search judges them.
Then, for the first case: a search killed right after its first trial (`PIPELINE_FAULT=trial:search`) and
rerun, against an uninterrupted search: trials recomputed (the goal is 0) and wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PIPELINE = [sys.executable, "-m", "pipeline.cli.main"]

CASES = {
    "transformer": ROOT / "recipes" / "digits_transformer_search.yaml",
    "gelu": ROOT / "examples" / "search" / "gelu_outliers_search.yaml",
    "fcn": ROOT / "examples" / "search" / "fcn_sizes_search.yaml",
}


def run(recipe: Path, cache: Path, *stages: str, env: dict[str, str] | None = None) -> tuple[int, dict, float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [*PIPELINE, "run", str(recipe), *stages, "--cache-dir", str(cache), "--json"],
        cwd=recipe.parent,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )
    record = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, record, time.perf_counter() - started


def row(record: dict, stage: str) -> dict:
    return next((s for s in record.get("stages", []) if s["stage"] == stage), {})


def upstream(recipe: Path, base: Path) -> None:
    """Build everything the search reads, once."""
    from pipeline.recipe.load import load_recipe

    parents = [r.target for r in load_recipe(recipe, []).stages["search"].inputs.values() if r.kind == "stage"]
    code, record, _ = run(recipe, base, *parents)
    if code != 0:
        raise SystemExit(f"{recipe.name}: building {parents} failed: {record}")


def accuracy_control(recipe: Path, cache: Path, report: dict) -> dict[str, Any]:
    """NNCF AC on the search's own float model, calibration and search samples, judged like the search."""
    import nncf
    import numpy as np
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from stages.quantization.calibration import inputs_of
    from stages.runtimes.openvino import io as ovio
    from stages.validation.gates import GATES

    run_, params = _search_run(recipe, cache)
    gates = report["default"]["search"]
    numeric = [g for g in gates if not isinstance(g["observed"], bool) and g["margin"] is not None]
    binding = min(numeric, key=lambda g: g["margin"])  # the gate the default setting misses most
    output, gate = binding["output"], binding["gate"]
    figure, threshold = GATES[gate].figure, float(binding["threshold"])
    items = [{k: v[i : i + 1] for k, v in g.inputs.items()} for g in run_.judge.splits.search for i in range(len(g))]
    reference = run_.judge.reference.runner

    def validate(compiled: Any, data: Any) -> tuple[float, list[float]]:
        per_item = []
        for feeds in data:
            ref = reference.infer(feeds)[output]
            got = compiled(feeds)[compiled.outputs[list(reference.output_names).index(output)]]
            per_item.append(_figure(figure, np.asarray(ref), np.asarray(got)))
        return (min(per_item) if gate in ("cosine_min", "iou_min") else float(np.mean(per_item))), per_item

    model = ovio.model_from_artifact(run_.core, run_.ctx.path("model"))
    started = time.perf_counter()
    quantized = nncf.quantize_with_accuracy_control(
        model,
        nncf.Dataset(run_.feed, inputs_of),
        nncf.Dataset(items),
        validate,
        max_drop=max(0.0, 1.0 - threshold),
        drop_type=nncf.DropType.ABSOLUTE,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(max_num_iterations=params.max_trials),
    )
    seconds = time.perf_counter() - started
    out = Path(tempfile.mkdtemp(prefix="ac-"))
    ovio.save_ir(quantized, out / "model", compress_to_fp16=False)
    return {"seconds": seconds, "ir": out / "model", "run": run_, "gate": gate, "output": output}


def _figure(figure: str, ref: Any, got: Any) -> float:
    import numpy as np

    a, b = ref.reshape(-1).astype(np.float64), got.reshape(-1).astype(np.float64)
    if figure == "iou":
        x, y = a > 0.5, b > 0.5
        union = np.logical_or(x, y).sum()
        return 1.0 if union == 0 else float(np.logical_and(x, y).sum() / union)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def _search_run(recipe: Path, cache: Path) -> tuple[Any, Any]:
    """The search stage's SearchRun, opened on its recipe's inputs (the same calibration, val split and judge)."""
    from pipeline.cache import Cache
    from pipeline.recipe.load import load_recipe
    from pipeline.stage import DatasetInput, StageContext
    from stages.quantization.search_run import SearchRun

    r = load_recipe(recipe, [])
    node = r.stages["search"]
    c = Cache(cache)
    inputs: dict[str, Any] = {}
    for name, ref in node.inputs.items():
        if ref.kind == "stage":
            rec = c.records.latest(r.name, ref.target)
            assert rec is not None, f"{ref.target} not built in {cache}"
            out = rec.outputs[ref.output]
            dest = Path(tempfile.mkdtemp(prefix="in-")) / out.path
            c.objects.fetch(out.digest, out.is_dir, dest)
            inputs[name] = dest
        elif ref.kind == "data":
            d = r.datasets[ref.target]
            kind = f"{d.kind.__module__}:{d.kind.__qualname__}"
            inputs[name] = DatasetInput(ref.target, d.spec.model_dump(mode="json"), r.dir, kind)
        else:
            inputs[name] = r.dir / ref.target
    sys.path.insert(0, str(r.dir))
    ctx = StageContext("search", node.params, inputs, Path(tempfile.mkdtemp()), r.dir, r.model)
    return SearchRun.open(ctx), node.params


def side_by_side(runners: dict[str, Any], feeds: dict, mode: str, repeats: int, seconds: float) -> dict[str, float]:
    """Median ms of each runner, interleaved round by round (a disturbed round is measured again)."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            t = runner.benchmark(feeds, mode, seconds, 3)
            times[name].append(t.p50_ms if mode == "latency" else 1000.0 / t.throughput)
    return {k: statistics.median(v) for k, v in times.items()}


def case(name: str, recipe: Path, work: Path, repeats: int) -> dict[str, Any]:
    from stages.runtimes.openvino.runner import OpenVinoRunner

    base = work / f"{name}-base"
    upstream(recipe, base)
    cache = work / f"{name}-search"
    shutil.copytree(base, cache)
    code, record, wall = run(recipe, cache, "search")
    search = row(record, "search")
    report = json.loads((cache / record["recipe"] / "search" / "report.json").read_text()) if code == 0 else None
    if report is None:  # the search failed: its report is kept beside the run
        kept = Path(search.get("kept", ""))
        report = json.loads((kept / "report.json").read_text())
    ac = accuracy_control(recipe, cache, report)
    run_ = ac["run"]
    p = run_.ctx.params
    chosen_ir = cache / record["recipe"] / "search" / "model" if report["chosen"] else None
    default_ir = _trial_ir(cache, 0)
    runners = {
        "float": OpenVinoRunner(run_.ctx.path("model"), p.inference_precision, p.threads, model=_float(run_)),
        "default INT8": OpenVinoRunner(default_ir, p.inference_precision, p.threads),
        "NNCF AC": OpenVinoRunner(ac["ir"], p.inference_precision, p.threads),
    }
    if chosen_ir is not None:
        runners["search"] = OpenVinoRunner(chosen_ir, p.inference_precision, p.threads)
    ms = side_by_side(runners, run_.timing_feeds, p.objective, repeats, 0.5)
    gates = {}
    for who, runner in runners.items():
        if who == "float":
            continue
        figures = {}
        for split in ("search", "holdout"):
            verdicts = run_.judge.verdicts(run_.judge.entries(runner, split, lambda *a: None))
            v = next(v for v in verdicts if (v.gate, v.output) == (ac["gate"], ac["output"]))
            figures[split] = (v.observed, all(x.passed for x in verdicts))
        gates[who] = figures
    return {
        "case": name,
        "gate": f"{ac['gate']} on {ac['output']}",
        "search": {"wall_s": wall, "trials": len(report["trials"]), "exit": code},
        "ac": {"wall_s": ac["seconds"], "iterations": p.max_trials},
        "ms": ms,
        "gates": gates,
    }


def _float(run_: Any) -> Any:
    from stages.runtimes.openvino import io as ovio

    return ovio.model_from_artifact(run_.core, run_.ctx.path("model"))


def _trial_ir(cache: Path, index: int) -> Path:
    """Trial `index`'s IR, materialized from its record (label `trial N: ...`)."""
    from pipeline.cache import Cache

    c = Cache(cache)
    for path in (cache / "trials").glob("*/*.json"):
        data = json.loads(path.read_text())
        if data["label"].startswith(f"trial {index}:"):
            dest = Path(tempfile.mkdtemp(prefix="trial-"))
            c.objects.fetch(data["digest"], True, dest / "t")
            return dest / "t" / "model"
    raise SystemExit(f"trial {index} not found in {cache}")


def resume(recipe: Path, work: Path) -> dict[str, Any]:
    """Uninterrupted search against one killed after its first trial and rerun."""
    name = "resume"
    base = next(work.glob("*-base"))
    whole, killed = work / f"{name}-whole", work / f"{name}-killed"
    shutil.copytree(base, whole)
    shutil.copytree(base, killed)
    _, record, wall_whole = run(recipe, whole, "search")
    total = row(record, "search").get("trials", {})
    code, _, wall_kill = run(recipe, killed, "search", env={"PIPELINE_FAULT": "trial:search"})
    stored = {p.stem for p in (killed / "trials").glob("*/*.json")}
    _, again, wall_rerun = run(recipe, killed, "search")
    trials = row(again, "search").get("trials", {})
    keys_before = {s[:10] for s in stored}
    recomputed = [t for t in trials.get("list", []) if not t["cached"] and t["key"][2:12] in keys_before]
    return {
        "uninterrupted_s": wall_whole,
        "killed_s": wall_kill,
        "killed_exit": code,
        "rerun_s": wall_rerun,
        "trials": total.get("computed", 0) + total.get("cached", 0),
        "rerun_computed": trials.get("computed"),
        "rerun_cached": trials.get("cached"),
        "recomputed": len(recomputed),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--work", type=Path, default=None, help="keep the caches here (default: a temp folder)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="search-bench-"))
    results = []
    for name in args.cases.split(","):
        recipe = CASES[name]
        if not recipe.exists():
            print(f"{name}: {recipe} missing, skipped")
            continue
        print(f"{name}: running (caches in {work})", flush=True)
        results.append(case(name, recipe, work, args.repeats))
        _print(results[-1])
    first = CASES[args.cases.split(",")[0]]
    r = resume(first, work)
    print(
        f"\nkilled after its first trial, then rerun ({first.name}): {r['recomputed']} trials recomputed "
        f"(goal 0); rerun {r['rerun_computed']} computed + {r['rerun_cached']} from the cache of {r['trials']}; "
        f"wall: killed run {r['killed_s']:.1f} s + rerun {r['rerun_s']:.1f} s against uninterrupted "
        f"{r['uninterrupted_s']:.1f} s (ratio {(r['killed_s'] + r['rerun_s']) / r['uninterrupted_s']:.2f})"
    )


def _print(r: dict[str, Any]) -> None:
    ms = r["ms"]
    print(
        f"\n{r['case']}: gate {r['gate']}; latency ms side by side: " + ", ".join(f"{k} {v:.3f}" for k, v in ms.items())
    )
    head = ("model", "search fig", "held-out", "all gates", "vs FP32", "vs INT8", "wall s", "trials")
    print("  {:<13} {:>10} {:>9} {:>9} {:>8} {:>8} {:>7} {:>6}".format(*head))
    for who in ("default INT8", "search", "NNCF AC"):
        if who not in r["gates"]:
            print(f"  {who:<13} (no model: the search found no passing trial)")
            continue
        g = r["gates"][who]
        (fs, ok_s), (fh, ok_h) = g["search"], g["holdout"]
        wall = {"search": r["search"]["wall_s"], "NNCF AC": r["ac"]["wall_s"]}.get(who)
        trials = {"search": r["search"]["trials"], "NNCF AC": r["ac"]["iterations"]}.get(who)
        shown_wall = "" if wall is None else f"{wall:.1f}"
        shown_trials = "" if trials is None else str(trials) + ("*" if who == "NNCF AC" else "")
        verdict = "pass" if ok_s and ok_h else "FAIL"
        print(
            f"  {who:<13} {fs:>10.4f} {fh:>9.4f} {verdict:>9} {ms['float'] / ms[who]:>7.2f}x "
            f"{ms['default INT8'] / ms[who]:>7.2f}x {shown_wall:>7} {shown_trials:>6}"
        )
    print("  (* NNCF AC: its max_num_iterations, the search's max_trials)")


if __name__ == "__main__":
    main()
