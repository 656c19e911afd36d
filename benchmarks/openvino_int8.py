"""ResNet50 INT8 on this CPU: our pipeline's engine against the bare library calls, and the baselines.

    .venv/bin/python benchmarks/openvino_int8.py [--repeat 5] [--seconds 3]

Needs `make engines` (or `pipeline run recipes/resnet50_int8.yaml`) first: it reads the recipe's
engines from the cache. Every variant runs batch 8 on 2 threads with one synchronous request
(the setting of the reference figures), interleaved round by round, median of `--repeat`; a
round in which other processes took more than 8% of a core is measured again.

Variants: torch eager FP32, ONNX Runtime FP32, OpenVINO FP32 (f32 and default precision),
OpenVINO INT8 built by our pipeline, the same INT8 built here by the bare calls
(`nncf.quantize` on the same ONNX and calibration data, `ov.save_model`). Then our
validate runner's throughput mode against `benchmark_app -hint throughput` on the same IR.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from _timing import CONTENTION_LIMIT, throughput  # noqa: E402

BATCH, THREADS = 8, 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--cache", default=os.environ.get("PIPELINE_CACHE", str(ROOT / "artifacts")))
    args = ap.parse_args()
    views = Path(args.cache) / "resnet50_int8"
    onnx_path = views / "surgery" / "model.onnx"
    ours_int8 = views / "openvino_int8" / "model" / "model.xml"
    if not ours_int8.exists():
        sys.exit(f"no engine at {ours_int8}: run `make engines` first")

    import onnxruntime as ort
    import openvino as ov
    import torch
    import torchvision

    torch.set_num_threads(THREADS)
    x = np.random.default_rng(0).standard_normal((BATCH, 3, 224, 224)).astype(np.float32)
    core = ov.Core()

    print("bare calls: nncf.quantize on the same ONNX and calibration data ...", flush=True)
    bare_xml = bare_int8(core, onnx_path)

    def ov_fn(xml: Path, precision: str | None):
        config = {"INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        model = core.read_model(xml)
        model.reshape({model.inputs[0].get_any_name(): [BATCH, 3, 224, 224]})
        request = core.compile_model(model, "CPU", config).create_infer_request()
        return lambda: request.infer({0: x})

    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None).eval()
    tx = torch.from_numpy(x)

    def torch_fn():
        with torch.inference_mode():
            net(tx)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = THREADS, 1
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    fp32_xml = views / "openvino_fp32" / "model" / "model.xml"
    variants = {
        "torch eager FP32": torch_fn,
        "ONNX Runtime FP32": lambda: session.run(None, {"input": x}),
        "OpenVINO FP32, f32": ov_fn(fp32_xml, "f32"),
        "OpenVINO FP32, default (bf16 here)": ov_fn(fp32_xml, None),
        "OpenVINO INT8, our pipeline": ov_fn(ours_int8, None),
        "OpenVINO INT8, bare calls": ov_fn(bare_xml, None),
    }
    results: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.repeat):
        for attempt in range(4):
            round_ = {k: throughput(fn, args.seconds, BATCH) for k, fn in variants.items()}
            if max(o for _, o in round_.values()) <= CONTENTION_LIMIT or attempt == 3:
                break
            print(f"  round {r + 1}: others took {max(o for _, o in round_.values()):.2f} cores; measuring again")
        for k, (fps, _) in round_.items():
            results[k].append(fps)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nResNet50, batch {BATCH}, {THREADS} threads, one synchronous request, median of {args.repeat} (img/s):")
    for k, v in med.items():
        print(f"  {k:38} {v:8.1f}   (min {min(results[k]):.1f}, max {max(results[k]):.1f})")
    ours = med["OpenVINO INT8, our pipeline"]
    print("\nratios:")
    for label, base, target in [
        ("our INT8 / bare-calls INT8", "OpenVINO INT8, bare calls", ">= 0.95"),
        ("our INT8 / torch eager FP32", "torch eager FP32", ">= 5"),
        ("our INT8 / OpenVINO default precision", "OpenVINO FP32, default (bf16 here)", "~1.9"),
        ("our INT8 / OpenVINO f32", "OpenVINO FP32, f32", ">= 3.5"),
    ]:
        print(f"  {label:40} {ours / med[base]:6.2f}   (expected {target})")
    validate_vs_benchmark_app(ours_int8, args.seconds)


def bare_int8(core, onnx_path: Path) -> Path:
    """The INT8 IR from the bare calls: the recipe's calibration data (synthetic, 300 samples, seed 1)."""
    os.environ.setdefault("NNCF_CI", "1")
    import nncf
    import openvino as ov

    from pipeline.recipe.load import load_recipe
    from pipeline.stage import DatasetInput
    from stages.data import open_dataset

    recipe = load_recipe(ROOT / "recipes" / "resnet50_int8.yaml")
    spec = recipe.datasets["calib"].spec.model_dump(mode="json")
    ds = open_dataset(DatasetInput("calib", spec, recipe.dir), recipe.model)
    samples = [feeds["input"] for feeds, _ in ds.batches(1)]
    t0 = time.perf_counter()
    quantized = nncf.quantize(
        core.read_model(onnx_path),
        nncf.Dataset(samples),
        subset_size=len(samples),
        preset=nncf.QuantizationPreset.PERFORMANCE,
    )
    print(f"  nncf.quantize: {time.perf_counter() - t0:.1f} s", flush=True)
    out = Path(tempfile.mkdtemp(prefix="bare-int8-")) / "model.xml"
    ov.save_model(quantized, out, compress_to_fp16=False)
    return out


def validate_vs_benchmark_app(xml: Path, seconds: float) -> None:
    """Our validate runner's throughput mode vs benchmark_app -hint throughput, same IR, same precision."""
    from stages.runtimes.openvino.runner import OpenVinoRunner

    runner = OpenVinoRunner(xml.parent, precision="bf16")
    feeds = {"input": np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)}
    app = ROOT / ".venv" / "bin" / "benchmark_app"
    ours, theirs = [], []
    for _ in range(3):
        ours.append(runner.benchmark(feeds, mode="throughput", min_seconds=max(seconds, 5)).throughput)
        out = subprocess.run(
            [
                str(app),
                "-m",
                str(xml),
                "-hint",
                "throughput",
                "-infer_precision",
                "bf16",
                "-t",
                str(int(max(seconds, 5))),
                "-shape",
                "[1,3,224,224]",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        theirs.append(float(re.search(r"Throughput:\s+([\d.]+)\s+FPS", out).group(1)))
    o, t = statistics.median(ours), statistics.median(theirs)
    print("\nvalidate's throughput mode vs benchmark_app -hint throughput (INT8 IR, bf16, batch 1, median of 3):")
    print(f"  ours {o:.1f} FPS, benchmark_app {t:.1f} FPS, ratio {o / t:.3f} (target within 10%)")


if __name__ == "__main__":
    main()
