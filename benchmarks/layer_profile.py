"""Per-layer profiling: what it adds to validate, and whether the layer times add up to the whole-model latency.

    .venv/bin/python benchmarks/layer_profile.py [--models digits,resnet18] [--repeat 3] [--min-seconds 3]

Models are built here with random weights (timing does not care about training): the digits recipe's
CNN (`recipes/digits_plugin.py:digits_net`, 1x8x8 inputs, ~30k parameters) and torchvision's ResNet-18 at
224x224. Each is exported to ONNX (opset 17, dynamic batch), converted to an FP32 IR, and quantized
to an INT8 IR by `nncf.quantize` on 32 random samples.

(a) Cost: validate (in-process, its defaults: latency at batch 1, throughput at batches 1 and 8,
`--min-seconds` each, `--samples` samples through both engines) with `layers: true` against `layers:
false`, interleaved round by round, OpenVINO FP32 and INT8 candidates; the difference of the medians,
and the profile step on its own (a fresh runner's `profile(feeds, 20)`, its compile included).

(b) Coverage: per engine (OpenVINO f32 FP32 IR, OpenVINO INT8 IR, ONNX Runtime FP32), the sum of the
layer times of `profile(runs=--runs)` against the latency p50 at batch 1 (`benchmark`, `--min-seconds`),
median over `--repeat` interleaved rounds; the issue asks for within 10% (0.9 <= ratio <= 1.1).
A round in which other processes took more than 8% of a core is measured again (up to `--retries` times).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from _timing import CONTENTION_LIMIT, _busy_seconds  # noqa: E402

MODELS = {"digits": (1, 8), "resnet18": (3, 224)}  # channels, side


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def disturbed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """fn()'s result and the CPU other processes took meanwhile, in cores."""
    busy0, own0, t0 = _busy_seconds(), cpu_seconds(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    return out, max(0.0, (_busy_seconds() - busy0) - (cpu_seconds() - own0)) / wall


def build(name: str, root: Path) -> dict[str, Path]:
    """ONNX, FP32 IR and NNCF INT8 IR of `name`, random weights."""
    os.environ.setdefault("NNCF_CI", "1")
    import nncf
    import openvino as ov
    import torch

    channels, side = MODELS[name]
    torch.manual_seed(0)
    if name == "digits":
        sys.path.insert(0, str(ROOT / "recipes"))
        from digits_plugin import digits_net

        net = digits_net().eval()
    else:
        import torchvision

        net = torchvision.models.resnet18(weights=None).eval()
    out = root / name
    out.mkdir(parents=True)
    onnx_path = out / "model.onnx"
    x = torch.zeros(1, channels, side, side)
    torch.onnx.export(
        net, (x,), str(onnx_path), input_names=["input"], output_names=["logits"], opset_version=17,
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
    )  # fmt: skip
    core = ov.Core()
    (out / "fp32").mkdir()
    ov.save_model(core.read_model(str(onnx_path)), str(out / "fp32" / "model.xml"), compress_to_fp16=False)
    rng = np.random.default_rng(1)
    calib = [rng.standard_normal((1, channels, side, side)).astype(np.float32) for _ in range(32)]
    quantized = nncf.quantize(core.read_model(str(onnx_path)), nncf.Dataset(calib), subset_size=32)
    (out / "int8").mkdir()
    ov.save_model(quantized, str(out / "int8" / "model.xml"), compress_to_fp16=False)
    np.savez(out / "val.npz", input=rng.standard_normal((256, channels, side, side)).astype(np.float32))
    return {"onnx": onnx_path, "fp32": out / "fp32", "int8": out / "int8", "dir": out}


def validate_seconds(paths: dict[str, Path], which: str, layers: bool, args: argparse.Namespace, n: int) -> float:
    """Wall seconds of one in-process validate of `which` against the ONNX, layers on or off."""
    from pipeline.schema import ModelSpec
    from pipeline.stage import DatasetInput, StageContext
    from stages.validate import Validate

    channels, side = MODELS[paths["dir"].name]
    spec = ModelSpec.model_validate(
        {
            "tensors": {"input": {"shape": ["batch", channels, side, side]}},
            "dims": {"batch": {"min": 1, "opt": 8, "max": 32}},
        }
    )
    params = {"gates": {}, "max_samples": args.samples, "min_seconds": args.min_seconds, "layers": layers}
    out = paths["dir"] / f"v_{which}_{layers}_{n}"
    out.mkdir()
    ctx = StageContext(
        stage="check",
        params=Validate.Params.model_validate(params),
        inputs={
            "candidate": paths[which],
            "reference": paths["onnx"],
            "data": DatasetInput("val", {"kind": "npz", "path": "val.npz"}, paths["dir"]),
        },
        outdir=out,
        recipe_dir=paths["dir"],
        model=spec,
        outputs=dict(Validate.outputs),
    )
    t0 = time.perf_counter()
    Validate().run(ctx)
    return time.perf_counter() - t0


def feeds_for(name: str) -> dict[str, np.ndarray]:
    channels, side = MODELS[name]
    return {"input": np.random.default_rng(0).standard_normal((1, channels, side, side)).astype(np.float32)}


def cost(paths: dict[str, Path], args: argparse.Namespace) -> None:
    from stages.runtimes.openvino.runner import OpenVinoRunner

    name = paths["dir"].name
    variants = [(which, layers) for which in ("fp32", "int8") for layers in (False, True)]
    secs: dict[tuple[str, bool], list[float]] = {v: [] for v in variants}
    prof: dict[str, list[float]] = {"fp32": [], "int8": []}
    for r in range(args.repeat):
        for attempt in range(args.retries + 1):
            round_ = {
                v: disturbed(lambda v=v: validate_seconds(paths, v[0], v[1], args, r * 10 + attempt)) for v in variants
            }

            def step(which: str) -> float:
                runner = OpenVinoRunner(paths[which], precision="f32")
                t0 = time.perf_counter()
                runner.profile(feeds_for(name), runs=20, warmup=3)
                return time.perf_counter() - t0

            steps = {w: disturbed(lambda w=w: step(w)) for w in prof}
            worst = max(o for _, o in [*round_.values(), *steps.values()])
            if worst <= CONTENTION_LIMIT or attempt == args.retries:
                break
            print(f"  round {r + 1}: others took {worst:.2f} cores; measuring again", flush=True)
        for v, (s, _) in round_.items():
            secs[v].append(s)
        for w, (s, _) in steps.items():
            prof[w].append(s)
    print(f"\n(a) {name}: validate wall time, layers off vs on (median of {args.repeat}, interleaved)")
    print(f"  {'candidate':10} {'off s':>8} {'on s':>8} {'on-off s':>9} {'on/off':>7} {'profile step s':>15}")
    for which in ("fp32", "int8"):
        off, on = statistics.median(secs[(which, False)]), statistics.median(secs[(which, True)])
        print(
            f"  {'OV ' + which:10} {off:8.2f} {on:8.2f} {on - off:9.2f} {on / off:7.3f} "
            f"{statistics.median(prof[which]):15.3f}"
        )


def coverage(paths: dict[str, Path], args: argparse.Namespace) -> None:
    from stages.runtimes.onnxrt.runner import OrtRunner
    from stages.runtimes.openvino.runner import OpenVinoRunner

    name = paths["dir"].name
    feeds = feeds_for(name)
    runners = {
        "OpenVINO FP32 (f32)": OpenVinoRunner(paths["fp32"], precision="f32"),
        "OpenVINO INT8": OpenVinoRunner(paths["int8"], precision="f32"),
        "ONNX Runtime FP32": OrtRunner(paths["onnx"]),
    }
    rows: dict[str, list[tuple[float, float]]] = {k: [] for k in runners}
    for _ in range(args.repeat):
        for attempt in range(args.retries + 1):

            def one(runner: Any) -> tuple[float, float]:
                p50 = runner.benchmark(feeds, "latency", min_seconds=args.min_seconds, warmup=5).p50_ms
                profile = runner.profile(feeds, runs=args.runs, warmup=5)
                return p50, sum(la.time_ms for la in profile.layers if la.time_ms is not None)

            round_ = {k: disturbed(lambda r=r: one(r)) for k, r in runners.items()}
            worst = max(o for _, o in round_.values())
            if worst <= CONTENTION_LIMIT or attempt == args.retries:
                break
            print(f"  others took {worst:.2f} cores; measuring again", flush=True)
        for k, (v, _) in round_.items():
            rows[k].append(v)
    print(f"\n(b) {name}: summed layer times vs latency p50 at batch 1 (median of {args.repeat}, interleaved)")
    print(f"  {'engine':22} {'latency p50 ms':>15} {'sum of layers ms':>17} {'ratio':>6}  within 10%")
    for k, values in rows.items():
        p50 = statistics.median(v[0] for v in values)
        total = statistics.median(v[1] for v in values)
        ratio = statistics.median(v[1] / v[0] for v in values)
        print(f"  {k:22} {p50:15.4f} {total:17.4f} {ratio:6.3f}  {'yes' if 0.9 <= ratio <= 1.1 else 'no'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="digits,resnet18")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=3.0, help="validate's min_seconds, and the latency timing's")
    ap.add_argument("--samples", type=int, default=64, help="validate's max_samples")
    ap.add_argument("--runs", type=int, default=50, help="profiled inferences for (b)")
    ap.add_argument("--retries", type=int, default=3, help="re-measurements of a disturbed round")
    ap.add_argument("--skip-cost", action="store_true", help="only (b)")
    args = ap.parse_args()
    import logging

    logging.disable(logging.WARNING)  # validate's noisy-timing warnings: this script re-measures such rounds itself
    with tempfile.TemporaryDirectory(prefix="layer-profile-") as tmp:
        for name in args.models.split(","):
            print(f"building {name} (ONNX, FP32 IR, NNCF INT8 IR) ...", flush=True)
            paths = build(name, Path(tmp))
            if not args.skip_cost:
                cost(paths, args)
            coverage(paths, args)


if __name__ == "__main__":
    main()
