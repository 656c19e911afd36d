"""validate: run a candidate engine and its FP32 reference on the same data, report, and gate.

The steps, one module each: samples are read and kept apart by shape
(`validation.samples`); each shape group runs through both engines, re-batched
within the group (`validation.numerics`); each output gets a role (`common.roles`) and its
figures per sample, over all samples and per group (`validation.figures`, built on
`common.metrics`); gates come from one table (`validation.gates`) and are evaluated per output
(`validation.gate_eval`); then timing (`validation.timing`), the candidate's per-layer profile
(`validation.layers`: after the timed runs, on an engine instance of its own, so it never slows
them) and the report (`validation.report`).

report.json, report.md and the plots (`validation.plots`: each gated per-sample
figure's distribution against its gate, latency against batch size; drawn by
`common.plots`, the numbers drawn in report.json's `plots`) are written before a
failed gate raises GateFailed, so the engine keeps them with the failed run.

The candidate is described by the runner that ran it (`candidate.runner`,
`precision`, versions and settings) and, when it has a typed engine.json
(`runtimes.engine_info`), by that too: `candidate.engine_info` holds the build's
EngineInfo (backend, precision, I/O, toolchain, device, the command that
rebuilds it; its backend-specific `details` left out) and `candidate.backend`
names the runtime either way. A pipeline hands a stage one output per input, so
build.tensorrt's engine arrives without its sidecar: the optional `engine`
input takes it (`engine: tensorrt_int8.info`).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.errors import GateFailed, did_you_mean
from pipeline.stage import HardwareTarget, InputSpec, OutputSpec, Params, Stage, StageContext, installed_version
from stages.runtimes.tensorrt.targets import Target
from stages.validation.gates import GATES, checked_gate_params

log = logging.getLogger("stages.validate")

Point = Literal["min", "opt", "max"]


class ValidateParams(Params):
    gates: dict[str, Any] | None = Field(
        None,
        description="gate -> threshold, applied to every output whose role it fits: "
        + ", ".join(GATES)
        + " (see Gates in the README). Given: exactly these (finite and "
        "shape stay on unless false). Omitted: the defaults for each output's role and the "
        "candidate's precision",
    )
    per_output: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="output name -> {gate: threshold} overriding `gates` for that output (null switches a gate off)",
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        description="batch size of the numerics pass; default: cycle through the batch sizes of the `shapes` points",
    )
    shapes: list[Point] = Field(
        ["min", "opt", "max"],
        description="points of the dynamic dims to exercise: every one runs, at least for the shape and finite checks",
    )
    max_samples: int | None = Field(256, ge=1, description="use at most this many samples of the dataset")
    labels_output: str | None = Field(
        None,
        description="output that labels score, a classification output "
        "(default: with labels, the one output declared "
        "classification in model.roles, else the first (batch, "
        "classes) output not declared with another role)",
    )
    mask_input: str | bool | None = Field(
        None,
        description="input whose zeros mark padded positions, left out of every figure of any output "
        "whose leading dims are the mask's (batch, seq), per-token (batch, seq) outputs included "
        "(default: an input named attention_mask, if any; false: none)",
    )
    dense_threshold: float = Field(
        0.5,
        description="dense outputs: IoU compares the maps thresholded here "
        "(value > threshold), applied to the outputs as they are",
    )
    candidate_precision: str | None = Field(
        None,
        description="OpenVINO: the inference precision hint (f32, bf16, "
        "f16; default from engine.json, else f32). ONNX: the "
        "label that picks default tolerances (e.g. int8)",
    )
    latency: bool = Field(True, description="measure latency (p50/p90/p99) at batch 1")
    throughput_batches: list[int] = Field([1, 8], description="batch sizes at which to measure throughput")
    time_reference: bool = Field(False, description="also time the reference (ONNX Runtime FP32)")
    layers: bool = Field(
        True,
        description="profile every layer of the candidate at the latency batch, on an engine instance of its "
        "own after the timed runs (OpenVINO PERF_COUNT, ONNX Runtime profiling, TensorRT inspector + "
        "IProfiler): report.json `layers`, report.md's top layers, time per precision, float layers after INT8",
    )
    profile_runs: int = Field(20, ge=1, description="inferences profiled per layer (each layer's median is kept)")
    min_seconds: float = Field(3.0, gt=0, description="each timing runs at least this long (after warm-up)")
    warmup: int = Field(3, ge=1, description="warm-up inferences (per request in flight) before each timing")
    threads: int | None = Field(None, ge=1, description="CPU threads per engine (None: all cores)")
    streams: int | None = Field(
        None,
        ge=1,
        description="TensorRT: execution contexts in flight when timing throughput, each on its own CUDA stream "
        "(trtexec's --infStreams; None: two, fewer when the engine's profiles or device memory cannot hold them)",
    )
    target: Target | None = Field(
        None,
        description="the GPU target of a TensorRT candidate: the key holds it instead of the machine, and only a "
        "matching node validates (None: taken from a targeted build.tensorrt it reads, else this machine)",
    )
    min_centered_spread: float = Field(
        1e-3,
        ge=0,
        description="below this centered/raw output spread, the reference is called insensitive to its input",
    )

    @model_validator(mode="before")
    @classmethod
    def _gates(cls, data: Any) -> Any:
        """Gate names and thresholds checked where they are written (`gates.cosine_mn`, its own line)."""
        return checked_gate_params(cls, data)

    @field_validator("mask_input")
    @classmethod
    def _mask(cls, v: str | bool | None) -> str | bool | None:
        if v is True:
            raise ValueError("expected an input name, or false for no mask (the default finds attention_mask)")
        return v

    @field_validator("throughput_batches")
    @classmethod
    def _batches(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v):
            raise ValueError("throughput batch sizes must be >= 1")
        return v


class Validate(Stage[ValidateParams]):
    kind = "validate"
    version = "4"
    summary = "Compare a candidate engine with the FP32 reference on a dataset, time it, and gate on the figures"
    inputs = {
        "candidate": InputSpec(
            description="the engine to check: an OpenVINO IR directory, a TensorRT engine or an .onnx file"
        ),
        "reference": InputSpec(description="the FP32 ONNX model it must agree with"),
        "data": InputSpec(kind="data", description="the samples to run (labels make accuracy figures)"),
    }
    outputs = {
        "report": OutputSpec("report.json", description="every figure, gate and timing, machine-readable"),
        "markdown": OutputSpec("report.md", description="the same, for people: warnings first"),
        "plots": OutputSpec(
            "plots",
            is_dir=True,
            description="SVG plots report.md embeds: errors.svg (each gated per-sample figure's distribution, "
            "its gate drawn), latency.svg (latency against batch size, when timed)",
        ),
    }
    packages = ("onnx", "onnxruntime", "matplotlib")
    extra = "onnx"
    model_fields = ("tensors", "dims", "roles")
    exclusive = True
    deliverable = True  # the reports that vouch for an engine travel with it

    def target(self, params: ValidateParams) -> Target | None:
        """With a target, only a node of it validates (its figures are that GPU's), and the key holds it:
        a CPU-only runner computes the key of a validation done on the GPU."""
        return params.target

    def with_target(self, params: ValidateParams, target: HardwareTarget) -> ValidateParams | None:
        """A check of an engine built for a target runs on that target (a TensorRT build's)."""
        return params.model_copy(update={"target": target}) if isinstance(target, Target) else None

    def toolchain(self, params: ValidateParams | None = None) -> dict[str, str]:
        """The runtimes' versions (they change numerics) and matplotlib's (it changes the plots' bytes)."""
        return {dist: installed_version(dist) for dist in ("onnx", "onnxruntime", "openvino", "numpy", "matplotlib")}

    def hardware(self, params: ValidateParams) -> dict[str, str]:
        """The CPU model, its kernel-selecting ISA flags and core count, and the GPU if any: they change both
        numerics (bf16/VNNI paths) and timings."""
        from stages.runtimes.cpu import cpu_identity
        from stages.runtimes.tensorrt.probe import probe_gpu

        gpu = probe_gpu()  # a TensorRT candidate runs on the GPU: its timings (and kernels) depend on which one
        return {**cpu_identity(), "gpu": f"{gpu.gpu} ({gpu.sm})" if gpu.has_gpu else "none"}

    def run(self, ctx: StageContext[ValidateParams]) -> dict[str, Any]:
        from stages.data import open_dataset
        from stages.runtimes import runners as R
        from stages.runtimes.onnxrt.runner import OrtRunner
        from stages.validation import layers as VL
        from stages.validation import numerics as N
        from stages.validation import plots as VP
        from stages.validation import report as VR
        from stages.validation import samples as SG
        from stages.validation import timing as T
        from stages.validation.gate_eval import evaluate
        from stages.validation.outputs import judge_outputs
        from stages.validation.samples import tile

        p = ctx.params
        model = ctx.model
        if model is None or not model.tensors:
            raise ValueError(
                "validate needs model.tensors (and dims) in the recipe: they shape the data and the points to check"
            )
        ds = open_dataset(ctx.dataset("data"), model)
        reference = OrtRunner(ctx.path("reference"), threads=p.threads)
        info = R.engine_info_for(ctx.path("candidate"))
        candidate = R.runner_for(
            ctx.path("candidate"), precision=p.candidate_precision, threads=p.threads, info=info, streams=p.streams
        )
        _check_per_output(p.per_output, list(reference.output_names))
        match = N.match_outputs(list(reference.output_names), list(candidate.output_names))
        mask = N.mask_name(p.mask_input, list(model.tensors))

        groups = SG.load_groups(ds, model, p.max_samples)
        bdim = SG.batch_dim(model)
        sizes = SG.batch_sizes(model, bdim, p.batch_size, p.shapes)
        col = N.run(groups, sizes, bdim, model, reference, candidate, match.names, mask, ctx.progress)
        outputs = judge_outputs(col, groups, model, p.labels_output, p.dense_threshold, p.min_centered_spread)
        points = N.check_points(p.shapes, col.ran, groups, model, reference, candidate, match.names)
        verdicts = evaluate(
            p.gates,
            p.per_output,
            candidate.precision,
            outputs.entries,
            points,
            outputs.uninformative,
            declared=model.roles,
            labels_output=p.labels_output,
        )
        largest = max(groups, key=len)
        timings = T.time_engines(p, candidate, reference, largest.inputs, bdim, model, ctx)
        layers = VL.off("per-layer profiling off (layers: false)")
        if p.layers:  # after the timings, on an engine instance of its own: never inside a timed loop
            ctx.progress(0, 1, "profiling layers")
            b = T.latency_batch(bdim, model)
            layers = VL.profile_candidate(
                candidate, tile(largest.inputs, b), b, p.profile_runs, p.warmup, timings.timing
            )
        warnings = [*_data_warnings(ds), *match.warnings, *outputs.warnings, *verdicts.warnings, *timings.warnings]
        warnings += layers.warnings

        size_mb = round(T.artifact_bytes(ctx.path("candidate")) / 1e6, 2)
        report = VR.ValidationReport(
            stage=ctx.stage,
            candidate={
                "artifact": ctx.path("candidate").name,
                "size_mb": size_mb,
                **candidate.describe(),
                "backend": candidate.name,
                "engine_info": info.as_json(details=False) if info else None,
            },
            reference={"artifact": ctx.path("reference").name, **reference.describe()},
            data={
                **ds.info(),
                "samples_used": sum(len(g) for g in groups),
                "labels_output": outputs.labels_output,
                "mask_input": mask,
                "groups": {g.key: len(g) for g in groups},
            },
            precision=candidate.precision,
            numerics_batches=col.batches,
            outputs=outputs.entries,
            labels_output=outputs.labels_output,
            points=points,
            verdicts=verdicts,
            timing=timings.timing,
            layers=layers.layers,
            layer_summary=layers.summary,
            plots=VP.plots_section(outputs.entries, verdicts.results, timings.timing, self.outputs["plots"].path),
            environment=T.environment(p.threads, candidate, reference),
            warnings=tuple(warnings),
        )
        written = report.to_json()
        ctx.output("report").write_text(json.dumps(written, indent=1, sort_keys=True) + "\n")
        ctx.output("markdown").write_text(report.markdown())
        VP.draw(written["plots"], ctx.outdir, ctx.stage)  # from the JSON-safe numbers: report.json's
        for w in warnings:  # before a failed gate raises: a warning is often why it failed
            ctx.warn(w)
        for g in verdicts.results:
            (log.info if g.passed else log.error)("%s", g)
        if verdicts.failures:
            raise GateFailed(verdicts.failures)
        return report.summary()


def _data_warnings(ds: Any) -> list[str]:
    """What the data itself makes doubtful: random inputs."""
    from stages.data import warn_if_synthetic

    if warn_if_synthetic(ds) is None:
        return []
    return [
        f"data.{ds.name} is synthetic random data: agreement figures describe random inputs, "
        "not the data the engine will serve, and accuracy means nothing"
    ]


def _check_per_output(per_output: dict[str, dict[str, Any]], ref_names: list[str]) -> None:
    """ValueError, one line, for a `per_output` entry naming no output of the reference."""
    for name in per_output:
        if name not in ref_names:
            raise ValueError(
                f"per_output: {name!r} is not an output of the reference"
                f"{did_you_mean(name, ref_names)} (has: {', '.join(ref_names)})"
            )
