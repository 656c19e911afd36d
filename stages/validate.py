"""validate: run a candidate engine and its FP32 reference on the same data, report, and gate.

Numerics: the dataset's samples (up to `max_samples`) go through both the
candidate and the reference (ONNX Runtime on the FP32 ONNX). With a dynamic
batch dim they are re-batched to cycle through the batch sizes of the declared
`shapes` points (min, opt, max), so each point runs on real samples; a point
the samples cannot fill (too few samples, or a dynamic non-batch dim) is still
run, on tiled or seeded random inputs, for the shape and finiteness checks.

Figures per output: max/mean abs error, cosine, centered cosine (after
removing the reference's dataset mean), top-1/top-5 agreement, and accuracy of
both engines when the data has labels; plus how sensitive the reference is to
its input, with a plain warning when agreement figures cannot tell a good
engine from a broken one. Gates come from `gates` (or the defaults for the
candidate's precision) with `per_output` overrides. Timing: latency at batch
1 and throughput at each of `throughput_batches`.

report.json and report.md are written before a failed gate raises GateFailed,
so the engine keeps them with the failed run.
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.errors import GateFailed, did_you_mean
from pipeline.schema import field_error
from pipeline.stage import InputSpec, OutputSpec, Params, Stage, StageContext

if TYPE_CHECKING:
    import numpy as np
    from pipeline.schema import ModelSpec
    from stages._metrics import GateResult

log = logging.getLogger("stages.validate")

Point = Literal["min", "opt", "max"]
_GATE_NAMES = ("cosine_min", "centered_cosine_min", "max_abs", "max_abs_rel", "mean_abs", "top1_agreement_min",
               "top5_agreement_min", "accuracy_min", "accuracy_drop_max", "finite", "shape")
_BOOL_GATES = ("finite", "shape")


class _GateError(ValueError):
    def __init__(self, gate: str, value: Any, message: str):
        super().__init__(message)
        self.gate, self.value = gate, value


def _check_gates(gates: Any, allow_none: bool) -> dict[str, Any]:
    if not isinstance(gates, dict):
        return gates  # not a mapping: the field's own type check says so
    out = {}
    for name, value in gates.items():
        if name not in _GATE_NAMES:
            raise _GateError(name, value, f"unknown gate{did_you_mean(str(name), list(_GATE_NAMES))} "
                                          f"(gates: {', '.join(_GATE_NAMES)})")
        if value is None and allow_none:
            out[name] = None
        elif name in _BOOL_GATES:
            if not isinstance(value, bool):
                raise _GateError(name, value, f"expected true or false (got {value!r})")
            out[name] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise _GateError(name, value, f"expected a finite number (got {value!r})")
            out[name] = float(value)
    return out


class ValidateParams(Params):
    gates: dict[str, Any] | None = Field(
        None, description="metric -> threshold, applied to every output: cosine_min, centered_cosine_min, max_abs, "
                          "max_abs_rel (max_abs relative to max |reference|), mean_abs, top1_agreement_min, "
                          "top5_agreement_min, accuracy_min, accuracy_drop_max, finite (bool), shape (bool). "
                          "Given: exactly these (finite and shape stay on unless false). Omitted: the defaults for "
                          "the candidate's precision (fp32 tight, bf16/fp16 looser, int8 loosest)")
    per_output: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="output name -> {gate: threshold} overriding `gates` for that output "
                                          "(null switches a gate off)")
    batch_size: int | None = Field(None, ge=1, description="batch size of the numerics pass; default: cycle through "
                                                           "the batch sizes of the `shapes` points")
    shapes: list[Point] = Field(["min", "opt", "max"], description="points of the dynamic dims to exercise: every "
                                                                   "one runs, at least for the shape and finite checks")
    max_samples: int | None = Field(256, ge=1, description="use at most this many samples of the dataset")
    labels_output: str | None = Field(None, description="output that labels score (default: the first "
                                                        "(batch, classes) output)")
    candidate_precision: str | None = Field(None, description="OpenVINO: the inference precision hint (f32, bf16, "
                                                              "f16; default from engine.json, else f32). ONNX: the "
                                                              "label that picks default tolerances (e.g. int8)")
    latency: bool = Field(True, description="measure latency (p50/p90/p99) at batch 1")
    throughput_batches: list[int] = Field([1, 8], description="batch sizes at which to measure throughput")
    time_reference: bool = Field(False, description="also time the reference (ONNX Runtime FP32)")
    min_seconds: float = Field(3.0, gt=0, description="each timing runs at least this long (after warm-up)")
    warmup: int = Field(3, ge=1, description="warm-up inferences (per request in flight) before each timing")
    threads: int | None = Field(None, ge=1, description="CPU threads per engine (None: all cores)")
    min_centered_spread: float = Field(1e-3, ge=0, description="below this centered/raw output spread, the "
                                                               "reference is called insensitive to its input")

    @model_validator(mode="before")
    @classmethod
    def _gates(cls, data: Any) -> Any:
        """Gate names and thresholds checked where they are written (`gates.cosine_mn`, its own line)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        where: tuple[Any, ...] = ("gates",)
        try:
            if data.get("gates") is not None:
                data["gates"] = _check_gates(data["gates"], allow_none=False)
            per_output = data.get("per_output")
            if isinstance(per_output, dict):
                checked = {}
                for name, gates in per_output.items():
                    where = ("per_output", name)
                    checked[name] = _check_gates(gates, allow_none=True)
                data["per_output"] = checked
        except _GateError as exc:
            raise field_error(cls, (*where, exc.gate), exc.value, str(exc)) from None
        return data

    @field_validator("throughput_batches")
    @classmethod
    def _batches(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v):
            raise ValueError("throughput batch sizes must be >= 1")
        return v


class Validate(Stage):
    kind = "validate"
    version = "1"
    summary = "Compare a candidate engine with the FP32 reference on a dataset, time it, and gate on the figures"
    Params = ValidateParams
    inputs = {"candidate": InputSpec(description="the engine to check: an OpenVINO IR directory or an .onnx file"),
              "reference": InputSpec(description="the FP32 ONNX model it must agree with"),
              "data": InputSpec(kind="data", description="the samples to run (labels make accuracy figures)")}
    outputs = {"report": OutputSpec("report.json", description="every figure, gate and timing, machine-readable"),
               "markdown": OutputSpec("report.md", description="the same, for people: warnings first")}
    packages = ("onnx", "onnxruntime")
    extra = "onnx"
    uses_model = True
    model_fields = ("tensors", "dims")
    exclusive = True
    helpers = ("stages._cpu", "stages._gpu_probe", "stages._trt_runner", "stages._refs", "stages._runners", "stages._metrics", "stages._validation_report", "stages._data", "stages._onnxio")

    def toolchain(self) -> dict[str, str]:
        """Library versions plus the CPU model, its kernel-selecting ISA flags and core count, and the GPU
        if any: they change both numerics (bf16/VNNI paths) and timings."""
        from stages._cpu import cpu_identity

        tc = {}
        for dist in ("onnx", "onnxruntime", "openvino", "numpy"):
            try:
                tc[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                tc[dist] = "missing"
        tc.update(cpu_identity())
        # A TensorRT candidate runs on the GPU: its timings (and kernels) depend on which one.
        from stages._gpu_probe import probe_gpu

        gpu = probe_gpu()
        tc["gpu"] = f"{gpu.gpu} ({gpu.sm})" if gpu.has_gpu else "none"
        return tc

    def run(self, ctx: StageContext) -> dict[str, Any]:
        import numpy as np
        from stages import _metrics as M
        from stages import _runners as R
        from stages import _validation_report as VR
        from stages._data import open_dataset, warn_if_synthetic

        p: ValidateParams = ctx.params
        model = ctx.model
        if model is None or not model.tensors:
            raise ValueError("validate needs model.tensors (and dims) in the recipe: they shape the data and the "
                             "points to check")
        warnings: list[str] = []
        ds = open_dataset(ctx.inputs["data"], model)
        if warn_if_synthetic(ds) is not None:
            warnings.append(f"data.{ds.name} is synthetic random data: agreement figures describe random inputs, "
                            "not the data the engine will serve, and accuracy means nothing")
        reference = R.OrtRunner(ctx.inputs["reference"], threads=p.threads)
        candidate = R.runner_for(ctx.inputs["candidate"], precision=p.candidate_precision, threads=p.threads)
        for name in p.per_output:
            if name not in reference.output_names:
                raise ValueError(f"per_output: {name!r} is not an output of the reference"
                                 f"{did_you_mean(name, reference.output_names)} (has: {', '.join(reference.output_names)})")
        names = _match_outputs(reference.output_names, list(candidate.output_names), warnings)

        inputs, labels = _load_samples(ds, p.max_samples)
        n = len(next(iter(inputs.values())))
        batch_dim = _batch_dim(model)
        sizes = _batch_sizes(model, batch_dim, p)
        plan = _schedule(n, sizes, batch_dim, model)

        # -- numerics ----------------------------------------------------------------------------
        ref_out: dict[str, list[np.ndarray]] = {o: [] for o in reference.output_names}
        cand_out: dict[str, list[np.ndarray]] = {o: [] for o in reference.output_names}
        per_sample = dict.fromkeys(reference.output_names, True)
        finite = dict.fromkeys(reference.output_names, True)
        shape_notes: dict[str, str] = {}
        for i, (start, count, size) in enumerate(plan):
            feeds = {k: _take(v, start, count, size) for k, v in inputs.items()}
            r = reference.infer(feeds)
            try:
                c = _renamed(candidate.infer(feeds), names)
            except Exception as exc:  # noqa: BLE001 - an engine that rejects a declared shape fails the shape gate
                c = {}
                for o in reference.output_names:
                    shape_notes.setdefault(o, f"batch {size}: the candidate raised {_one_line(exc)}")
            for o in reference.output_names:
                if o not in c:
                    shape_notes.setdefault(o, "missing from the candidate")
                    continue
                ro, co = np.asarray(r[o]), np.asarray(c[o])
                if co.dtype.kind in "fc" and not np.isfinite(co).all():
                    finite[o] = False
                if ro.shape != co.shape:
                    shape_notes.setdefault(o, f"batch {size}: shape {co.shape} != reference {ro.shape}")
                    continue
                if ro.ndim and ro.shape[0] == size:
                    ro, co = ro[:count], co[:count]
                else:
                    per_sample[o] = False
                ref_out[o].append(ro)
                cand_out[o].append(co)
            ctx.progress(i + 1, len(plan), "numerics")

        labels_output = _labels_output(p.labels_output, reference.output_names, ref_out, per_sample)
        outputs: dict[str, dict[str, Any]] = {}
        for o in reference.output_names:
            ref, cand = _stack(ref_out[o], per_sample[o]), _stack(cand_out[o], per_sample[o])
            if o in shape_notes or ref is None or cand is None:
                figs = {"shape": False, "finite": finite[o], "note": shape_notes.get(o, "no batch ran")}
                sens = None
            else:
                figs = M.output_figures(ref, cand, labels if o == labels_output else None)
                sens = M.sensitivity(ref) if per_sample[o] else None
                if not figs["reference_finite"]:
                    warnings.append(f"{o}: the reference itself produced non-finite values")
            reason = M.insensitive_reason(sens, p.min_centered_spread) if sens else None
            if reason:
                warnings.append(f"{o}: {reason}")
            outputs[o] = {"figures": figs, "sensitivity": sens.as_dict() if sens else None, "insensitive": reason,
                          "_sens": sens}

        # -- points the dataset could not fill ---------------------------------------------------
        point_results = _check_points(p.shapes, plan, inputs, model, batch_dim, reference, candidate, names)

        # -- gates -------------------------------------------------------------------------------
        results = _evaluate_gates(p, candidate.precision, outputs, point_results, warnings)
        for o in outputs.values():
            o.pop("_sens", None)

        # -- timing ------------------------------------------------------------------------------
        timing = _time(p, candidate, reference, inputs, batch_dim, model, warnings, ctx)

        env = _environment(p, candidate, reference)
        passed = [g for g in results if g.passed]
        size_mb = round(_artifact_bytes(Path(ctx.inputs["candidate"])) / 1e6, 2)
        report = {
            "stage": ctx.stage, "passed": len(passed) == len(results), "gates_passed": len(passed),
            "gates_total": len(results),
            "candidate": {"artifact": Path(ctx.inputs["candidate"]).name, "size_mb": size_mb, **candidate.describe()},
            "reference": {"artifact": Path(ctx.inputs["reference"]).name, **reference.describe()},
            "data": {**ds.info(), "samples_used": n, "labels_output": labels_output},
            "warnings": warnings,
            "gates": [g.as_dict() for g in results],
            "outputs": outputs,
            "numerics_batches": [size for _, _, size in plan],
            "points": point_results,
            "timing": timing,
            "environment": env,
        }
        ctx.outdir.mkdir(parents=True, exist_ok=True)
        ctx.output("report", type(self)).write_text(json.dumps(VR.jsonable(report), indent=2) + "\n")
        ctx.output("markdown", type(self)).write_text(VR.markdown(report, results))
        for w in warnings:
            log.warning("validate: %s", w)
        for g in results:
            (log.info if g.passed else log.error)("%s", g)

        summary = VR.summary_row(candidate.precision, outputs, labels_output, timing, passed, results)
        summary["size_mb"] = size_mb
        failed = [g.failure() for g in results if not g.passed]
        if failed:
            raise GateFailed(failed)
        return summary


def _artifact_bytes(path: Path) -> int:
    """On-disk size of the candidate (an IR directory counts model.xml + model.bin + sidecars)."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


# -- samples and batches -----------------------------------------------------------------------------


def _load_samples(ds: Any, max_samples: int | None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    import numpy as np
    chunks: list[dict[str, np.ndarray]] = []
    labels: list[np.ndarray] = []
    have = 0
    for feeds, lab in ds.batches(64):
        if max_samples is not None and have + len(next(iter(feeds.values()))) > max_samples:
            keep = max_samples - have
            feeds, lab = {k: v[:keep] for k, v in feeds.items()}, None if lab is None else lab[:keep]
        chunks.append(feeds)
        if lab is not None:
            labels.append(lab)
        have += len(next(iter(feeds.values())))
        if max_samples is not None and have >= max_samples:
            break
    if not have:
        raise ValueError(f"data.{ds.name} gave no samples")
    inputs = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return inputs, (np.concatenate(labels) if labels and sum(map(len, labels)) == have else None)


def _batch_dim(model: "ModelSpec") -> str | int | None:
    """The dim every input leads with: its name (dynamic), its size (static), or None (no shared batch)."""
    firsts = {t.shape[0] if t.shape else None for t in model.tensors.values()}
    return firsts.pop() if len(firsts) == 1 else None


def _batch_sizes(model: "ModelSpec", batch_dim: str | int | None, p: ValidateParams) -> list[int]:
    if isinstance(batch_dim, int):
        if p.batch_size not in (None, batch_dim):
            raise ValueError(f"batch_size {p.batch_size}: the model's batch is fixed at {batch_dim}")
        return [batch_dim]
    if isinstance(batch_dim, str):
        r = model.dims[batch_dim]
        if p.batch_size is not None:
            if not r.min <= p.batch_size <= r.max:
                raise ValueError(f"batch_size {p.batch_size} is outside {batch_dim}'s range [{r.min}, {r.max}]")
            return [p.batch_size]
        return sorted({getattr(r, point) for point in (p.shapes or ["opt"])})
    return [1]


def _schedule(n: int, sizes: list[int], batch_dim: str | int | None, model: "ModelSpec"
              ) -> list[tuple[int, int, int]]:
    """(start, samples, batch size) per batch: cycle through `sizes` while the next one fits; the remainder
    runs as one batch of its own size when the dim allows it, else padded up to the smallest size."""
    low = model.dims[batch_dim].min if isinstance(batch_dim, str) else sizes[0]
    plan: list[tuple[int, int, int]] = []
    start, i = 0, 0
    while start < n:
        left, size = n - start, sizes[i % len(sizes)]
        i += 1
        if size <= left:
            plan.append((start, size, size))
            start += size
        elif isinstance(batch_dim, str) and left >= low:
            plan.append((start, left, left))
            start = n
        elif any(s <= left for s in sizes):
            continue  # a smaller size later in the cycle fits
        else:
            plan.append((start, left, min(sizes)))  # padded; the padding's outputs are dropped
            start = n
    return plan


def _take(array: np.ndarray, start: int, count: int, size: int) -> np.ndarray:
    """Samples [start, start+count), padded to `size` by repeating them (padded outputs are dropped)."""
    import numpy as np
    part = array[start:start + count]
    return part if count == size else np.resize(part, (size, *part.shape[1:])).astype(part.dtype)


def _tile(inputs: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    import numpy as np
    return {k: np.resize(v, (size, *v.shape[1:])).astype(v.dtype) for k, v in inputs.items()}


def _stack(parts: list[np.ndarray], per_sample: bool) -> np.ndarray | None:
    import numpy as np
    if not parts:
        return None
    if per_sample:
        return np.concatenate(parts)
    return np.concatenate([x.reshape(-1) for x in parts]).reshape(1, -1)


def _match_outputs(ref_names: list[str], cand_names: list[str], warnings: list[str]) -> dict[str, str]:
    """candidate output name -> reference output name."""
    if not cand_names or set(ref_names) <= set(cand_names):
        return {n: n for n in cand_names}
    if len(cand_names) == len(ref_names):
        warnings.append(f"candidate outputs {cand_names} matched to reference outputs {ref_names} by position")
        return dict(zip(cand_names, ref_names))
    return {n: n for n in cand_names}


def _renamed(outputs: dict[str, np.ndarray], names: dict[str, str]) -> dict[str, np.ndarray]:
    return {names.get(k, k): v for k, v in outputs.items()}


def _labels_output(wanted: str | None, names: list[str], ref_out: dict[str, list[np.ndarray]],
                   per_sample: dict[str, bool]) -> str | None:
    if wanted is not None:
        if wanted not in names:
            raise ValueError(f"labels_output {wanted!r} is not an output{did_you_mean(wanted, names)}")
        return wanted
    for o in names:
        if per_sample[o] and ref_out[o] and ref_out[o][0].ndim == 2 and ref_out[o][0].shape[1] >= 2:
            return o
    return None


def _check_points(points: list[str], plan: list[tuple[int, int, int]], inputs: dict[str, np.ndarray],
                  model: "ModelSpec", batch_dim: str | int | None, reference: Any, candidate: Any,
                  names: dict[str, str]) -> dict[str, Any]:
    """Run every declared point; those the numerics pass already ran on real samples are only recorded."""
    import numpy as np
    from stages import _metrics as M
    from stages._onnxio import random_array

    ran = {size for _, _, size in plan}
    result: dict[str, Any] = {}
    for point in points:
        shapes = {t: model.shape(t, point) for t in model.tensors}  # type: ignore[arg-type]
        batch = next(iter(shapes.values()))[0] if shapes and next(iter(shapes.values())) else 1
        same_samples = all(s[1:] == inputs[t].shape[1:] for t, s in shapes.items())
        if same_samples and batch in ran and batch_dim is not None:
            result[point] = {"shapes": shapes, "source": "dataset"}
            continue
        if same_samples:
            feeds, source = _tile(inputs, batch), "dataset samples, tiled"
        else:
            rng = np.random.default_rng(0)
            feeds = {t: random_array(rng, s, inputs[t].dtype) for t, s in shapes.items()}
            source = "seeded random inputs (the samples have other dims)"
        r = reference.infer(feeds)
        try:
            c, error = _renamed(candidate.infer(feeds), names), ""
        except Exception as exc:  # noqa: BLE001 - recorded as a failed shape check
            c, error = {}, f"the candidate raised {_one_line(exc)}"
        outs = {}
        for o, ro in r.items():
            co = c.get(o)
            ok = co is not None and np.shape(co) == np.shape(ro)
            outs[o] = {"shape": ok, "candidate_shape": None if co is None else list(np.shape(co)),
                       "reference_shape": list(np.shape(ro)),
                       "finite": bool(np.isfinite(co).all()) if co is not None and np.asarray(co).dtype.kind in "fc"
                       else co is not None,
                       "max_abs": M.max_abs(ro, co) if ok else None,
                       "cosine": M.cosine(np.asarray(ro).reshape(1, -1), np.asarray(co).reshape(1, -1)) if ok else None,
                       "error": error}
        result[point] = {"shapes": shapes, "source": source, "outputs": outs}
    return result


# -- gates -------------------------------------------------------------------------------------------


def _evaluate_gates(p: ValidateParams, precision: str, outputs: dict[str, dict[str, Any]],
                    points: dict[str, Any], warnings: list[str]) -> list["GateResult"]:
    from stages import _metrics as M

    user_set = p.gates is not None
    base = dict(p.gates) if user_set else M.default_gates(precision)
    if user_set:
        base.setdefault("finite", True)
        base.setdefault("shape", True)
    results: list[GateResult] = []
    not_applicable: dict[str, list[str]] = {}
    evaluated: set[str] = set()
    for o, entry in outputs.items():
        figs, sens = entry["figures"], entry["_sens"]
        override = p.per_output.get(o, {})
        gates = M.resolve_gates(base, override, figs.get("output_scale"))
        entry["gates"] = gates
        uninformative = M.uninformative_gates(sens, p.min_centered_spread) if sens else set()
        for metric, threshold in gates.items():
            observed = figs.get(M.GATE_FIGURE[metric])
            note = ""
            merged = {**base, **override}
            if metric == "max_abs" and merged.get("max_abs") is None and merged.get("max_abs_rel") is not None:
                note = f"{merged['max_abs_rel']:g} x max|reference| {figs.get('output_scale') or 0:.3g}"
            if metric == "shape" and figs.get("note"):
                note = figs["note"]
            if observed is None and figs.get("shape") is not False:
                explicit = metric in override or user_set
                if explicit and metric in override:
                    note = _why_na(metric, figs)
                elif explicit:
                    not_applicable.setdefault(metric, []).append(o)
                    continue
                else:
                    continue  # a default gate that does not apply to this output
            elif observed is None:
                note = note or "not computed: the shape check failed"
            evaluated.add(metric)
            results.append(M.check_gate(metric, o, observed, threshold, note))
            if metric in uninformative:
                warnings.append(f"gate {metric} on {o} is uninformative: {entry['insensitive']}")
        for point, info in points.items():
            for key in ("shape", "finite"):
                if key in gates and "outputs" in info and o in info["outputs"]:
                    po = info["outputs"][o]
                    note = po["error"] or (f"{po['candidate_shape']} vs reference {po['reference_shape']}"
                                           if key == "shape" else "")
                    results.append(M.check_gate(key, f"{o} @{point}", po[key], True, note))
    for metric, outs in not_applicable.items():
        if metric in evaluated:
            warnings.append(f"gate {metric} does not apply to {', '.join(outs)}: {_why_na(metric, outputs[outs[0]]['figures'])}")
        else:
            results.append(M.check_gate(metric, ", ".join(outs), None, base[metric],
                                        "no output could be evaluated: " + _why_na(metric, outputs[outs[0]]["figures"])))
    return results


def _why_na(metric: str, figs: dict[str, Any]) -> str:
    if metric.startswith("accuracy"):
        return "the dataset has no labels, or this is not the output labels score"
    if metric.startswith("top"):
        return "not a (batch, classes) output"
    return "the figure could not be computed"


# -- timing ------------------------------------------------------------------------------------------


def _time(p: ValidateParams, candidate: Any, reference: Any, inputs: dict[str, np.ndarray],
          batch_dim: str | int | None, model: "ModelSpec", warnings: list[str], ctx: StageContext
          ) -> dict[str, list[dict[str, Any]]]:
    from stages._runners import OTHER_CPU_LIMIT

    def allowed(b: int) -> bool:
        if isinstance(batch_dim, int):
            return b == batch_dim
        if isinstance(batch_dim, str):
            r = model.dims[batch_dim]
            return r.min <= b <= r.max
        return b == 1

    jobs: list[tuple[str, Any, str, int]] = []
    runners = [("candidate", candidate)] + ([("reference", reference)] if p.time_reference else [])
    for who, runner in runners:
        if p.latency:
            b = 1 if allowed(1) else (batch_dim if isinstance(batch_dim, int) else model.dims[batch_dim].min)  # type: ignore[index]
            jobs.append((who, runner, "latency", int(b)))
        for b in p.throughput_batches:
            if allowed(b):
                jobs.append((who, runner, "throughput", b))
            elif who == "candidate":
                warnings.append(f"throughput at batch {b} skipped: outside the model's batch range")
    timing: dict[str, list[dict[str, Any]]] = {"candidate": [], "reference": []}
    for i, (who, runner, mode, b) in enumerate(jobs):
        ctx.progress(i, len(jobs), f"timing {who} {mode} b{b}")
        try:
            t = runner.benchmark(_tile(inputs, b), mode, p.min_seconds, p.warmup)
        except Exception as exc:  # noqa: BLE001 - a timing that cannot run is reported, not fatal
            warnings.append(f"timing of the {who} ({mode}, batch {b}) failed: {_one_line(exc)}")
            continue
        timing[who].append(t.as_dict())
        if t.cpu_other_fraction > OTHER_CPU_LIMIT:
            warnings.append(f"timing of the {who} ({mode}, batch {b}) is noisy: other processes used "
                            f"{t.cpu_other_fraction:.2f} of a core meanwhile (best of {t.attempts} attempts)")
    ctx.progress(len(jobs), len(jobs), "timing")
    return timing


def _environment(p: ValidateParams, candidate: Any, reference: Any) -> dict[str, Any]:
    from stages._runners import available_cpus, cpu_identity

    env: dict[str, Any] = dict(cpu_identity())
    env["threads"] = p.threads or available_cpus()
    for dist in ("onnxruntime", "openvino"):
        try:
            env[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            env[dist] = None
    env["candidate_precision"] = candidate.precision
    env["reference_precision"] = reference.precision
    return env


def _one_line(exc: BaseException) -> str:
    """The line of an error that says what went wrong (OpenVINO puts it last, after source locations)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from ", "Check '"))]
    text = (useful[-1] if useful else lines[0]) if lines and lines[0].startswith("Exception from ") else \
        (lines[0] if lines else "")
    return f"{type(exc).__name__}: {text}"[:300]
