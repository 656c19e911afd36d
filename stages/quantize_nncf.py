"""quantize.nncf: NNCF post-training INT8 quantization of an OpenVINO model (ONNX file or IR).

The model is read with OpenVINO (`core.read_model`), quantized with
`nncf.quantize` (or `nncf.quantize_with_accuracy_control` when `max_drop` is set
and `val` data is given) on batches streamed from the `data` input (batches of
one shape each, so text of several lengths or images of several sizes
calibrate a dynamic-shape model), and saved as an IR with FP32 float weights
(`compress_to_fp16=False`): the INT8 weights are already compressed, and
whether the rest goes FP16 is build.openvino's decision.

Calibration that quantizes fine but ships a broken engine warns (synthetic,
too few samples, nearly constant inputs: `stages.quantization.calibration`), in the
summary, quantize.json and the log. `model_type: auto` looks for attention
(MatMul -> Softmax -> MatMul) and uses NNCF's transformer mode when it finds
it; with `nncf.ModelType.TRANSFORMER` NNCF's own pipeline
(`post_training/pipeline.py`) runs SmoothQuant on MatMuls first (alpha 0.95 by
default in `AdvancedSmoothQuantParameters`, OpenVINO backend included), so no
extra switch is needed. `max_drop` keeps the figure that suits the metric
output's role (`stages.quantization.control_metric`): top-1 for a classifier, worst-sample
cosine for an embedding or regression, mean IoU for a dense map.

Reproducibility: NNCF's post-training algorithms are deterministic given the
same data, and NNCF collects statistics with FP32 inference; the one source of
byte differences we found is OpenVINO's process-wide node counter in
auto-generated names, which `ovio.save_ir` renumbers. NNCF's telemetry is
switched off (`NNCF_CI`) before nncf is first imported.

`run` is its steps, each returning a small frozen result (`Calibration`, `ModelType`, `Quantized`, `Accuracy`);
quantize.json and the summary row both come from the one `NncfReport` they make.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field

from pipeline.stage import InputSpec, KeyContext, OutputSpec, Params, Stage, StageContext

FP32 = {"INFERENCE_PRECISION_HINT": "f32"}  # OpenVINO runs bf16 by default on CPUs that have it

if TYPE_CHECKING:
    import openvino as ov

    from pipeline.schema import ModelSpec
    from stages.data import Dataset
    from stages.quantization.calibration import Feed
    from stages.quantization.control_metric import ControlMetric
    from stages.quantization.nncf_setup import ModelType


class IgnoredScope(BaseModel):
    """Nodes NNCF must leave in floating point (nncf.IgnoredScope)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    names: list[str] = Field(default_factory=list, description="exact node names")
    types: list[str] = Field(default_factory=list, description="OpenVINO op types, e.g. [Multiply, Softmax]")
    patterns: list[str] = Field(default_factory=list, description="regular expressions matched against node names")
    strict: bool = Field(default=True, description="fail when a name, type or pattern matches no node in the model")


class QuantizeNncfParams(Params):
    preset: Literal["performance", "mixed"] = Field(
        "performance", description="performance: symmetric activations and weights; mixed: asymmetric activations"
    )
    subset_size: int = Field(300, ge=1, description="calibration samples used (fewer if the dataset is smaller)")
    fast_bias_correction: bool = Field(
        True,
        description="NNCF's fast bias correction (false: the slower, sometimes more accurate full bias correction)",
    )
    model_type: Literal["auto", "transformer", "none"] = Field(
        "auto",
        description="transformer: NNCF's transformer mode (attention-sensitive ops kept in float, SmoothQuant "
        "on MatMuls); auto: transformer when the graph has attention (MatMul -> Softmax -> "
        "MatMul); none: the default CNN rules",
    )
    ignored_scope: IgnoredScope = Field(default_factory=lambda: IgnoredScope(), description="nodes left in float")
    target_device: Literal["ANY", "CPU", "GPU", "NPU"] = Field("CPU", description="device whose INT8 rules apply")
    overflow_fix: Literal["first_layer_only", "enable", "disable"] = Field(
        "first_layer_only",
        description="NNCF's fix for int8 overflow on CPUs without VNNI (AVX2's u8 x s8 multiply-add saturates): "
        "`enable` stores every layer's weights in 7 bits, which keeps such CPUs accurate at a small cost elsewhere",
    )
    batch_size: int = Field(
        1, ge=1, description="samples per calibration inference (>1 turns on NNCF's batch-wise statistics)"
    )
    max_drop: float | None = Field(
        None,
        ge=0,
        description="with `val` data: keep the metric output's figure "
        "within this drop of the float model's, reverting layers "
        "to float (nncf.quantize_with_accuracy_control); the "
        "figure follows the role: top-1 accuracy (classification, "
        "labels needed), worst-sample cosine to the float model "
        "(embedding, regression), mean IoU at 0.5 (dense)",
    )
    drop_type: Literal["absolute", "relative"] = Field("absolute", description="how max_drop is measured")
    metric_output: str | None = Field(
        None,
        description="the output whose figure max_drop keeps (default: the "
        "labels output when val has labels, else the first output)",
    )


class QuantizeNncf(Stage[QuantizeNncfParams]):
    kind = "quantize.nncf"
    version = "1"
    summary = "Post-training INT8 quantization of an OpenVINO model with NNCF"
    inputs = {
        "model": InputSpec(description="an .onnx file or an OpenVINO IR directory (model.xml + model.bin)"),
        "data": InputSpec("data", description="calibration data"),
        "val": InputSpec(
            "data", optional=True, description="validation data, for accuracy control and the float/INT8 figures"
        ),
    }
    outputs = {
        "model": OutputSpec("model", is_dir=True, description="INT8 IR: model.xml + model.bin (FP32 float weights)"),
        "report": OutputSpec(
            "quantize.json",
            description="settings, calibration samples, warnings, model type, INT8 ops, float/INT8 figures",
        ),
    }
    packages = ("openvino", "nncf")
    extra = "openvino"
    model_fields = ("tensors", "dims")  # roles enter through `fingerprint` (only the metric output's, when named)

    def fingerprint(self, params: QuantizeNncfParams, model: "ModelSpec | None", keys: KeyContext) -> dict[str, Any]:
        """The declared roles pick the figure accuracy control keeps (with `max_drop`, so the INT8 model
        depends on them) and the float/INT8 figures reported on `val` data: the role of `metric_output`
        when it is named, else every role (the metric output is found in the graph). Whether `val` is wired
        is not known here, so roles enter the key even without `max_drop`: editing them requantizes, and
        early cutoff keeps the identical INT8 model's dependents cached."""
        roles = {k: v for k, v in (model.roles if model else {}).items() if params.metric_output in (None, k)}
        return {"model.roles": dict(sorted(roles.items()))} if roles else {}

    def run(self, ctx: StageContext[QuantizeNncfParams]) -> dict[str, Any]:
        from stages.quantization.calibration import CalibrationStats, Feed, calibration_warnings, fit_static_batch
        from stages.quantization.nncf_setup import import_nncf, resolve_model_type
        from stages.runtimes.openvino import io as ovio

        p = ctx.params
        calib, val, synthetic = _open_data(ctx)
        nncf = import_nncf()
        import openvino as ov

        core = ov.Core()
        model = ovio.model_from_artifact(core, ctx.path("model"))
        inputs, _ = ovio.io_names(model)
        samples = min(p.subset_size, calib.count) if calib.count is not None else p.subset_size
        samples = fit_static_batch(model, p.batch_size, samples)
        stats = CalibrationStats()
        source = Feed(calib, p.batch_size, samples, inputs, ctx.progress, stats)
        control = _control(core, model, val, inputs, ctx) if val is not None else None
        model_type = resolve_model_type(p.model_type, model)
        quantized = _quantize(nncf, model, source, control, model_type, p)
        calibration = Calibration(
            info=calib.info(),
            samples=source.samples_seen,
            synthetic=calib.synthetic,
            warnings=tuple(calibration_warnings(calib, stats, p.subset_size, synthetic)),
        )
        for line in calibration.warnings:  # the synthetic one again is kept once
            ctx.warn(line)
        accuracy = _accuracy(core, model, quantized.model, control, p) if control is not None else None
        _check_quantized(quantized, p, control)
        ovio.save_ir(quantized.model, ctx.output("model"), compress_to_fp16=False)
        report = NncfReport(p.model_dump(mode="json"), calibration, model_type, quantized, accuracy)
        ctx.output("report").write_text(json.dumps(report.to_json(), indent=1, sort_keys=True) + "\n")
        return report.summary()


@dataclass(frozen=True)
class Calibration:
    """The calibration quantize used: the dataset as it describes itself, the samples NNCF saw, and what makes
    them doubtful (`stages.quantization.calibration`)."""

    info: Mapping[str, Any]
    samples: int
    synthetic: bool
    warnings: tuple[str, ...]

    @property
    def warning(self) -> str | None:
        return "; ".join(self.warnings) or None

    def to_json(self) -> dict[str, Any]:
        return {**self.info, "samples": self.samples}


@dataclass(frozen=True)
class Quantized:
    """What quantize did: the INT8 model, in how many seconds, with how many INT8 ops and weight constants."""

    model: "ov.Model"
    seconds: float
    int8_ops: int
    int8_weights: int


@dataclass(frozen=True)
class Control:
    """The figure accuracy control keeps (and the float/INT8 figures report) and the val feed it runs on."""

    metric: "ControlMetric"
    feed: "Feed"


@dataclass(frozen=True)
class Accuracy:
    """The control figure of the float and the INT8 model on the val data (`figures`: float, int8, drop)."""

    data: str
    samples: int
    max_drop: float | None
    drop_type: str
    output: str
    role: str
    figure: str
    figures: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        fields = asdict(self)
        figures = fields.pop("figures")
        return {**fields, **figures}

    def summary(self) -> dict[str, Any]:
        return {"metric": f"{self.figure} of {self.output} ({self.role})", **self.figures}


@dataclass(frozen=True)
class NncfReport:
    """One quantization, whole: quantize.json is `to_json()`, the run's summary row `summary()`."""

    settings: Mapping[str, Any]
    calibration: Calibration
    model_type: ModelType
    quantized: Quantized
    accuracy: Accuracy | None

    def to_json(self) -> dict[str, Any]:
        c = self.calibration
        return {
            "settings": dict(self.settings),
            "calibration": c.to_json(),
            "synthetic": c.synthetic,
            "warning": c.warning,
            "warnings": list(c.warnings),
            "model_type": self.model_type.to_json(),
            "int8_ops": self.quantized.int8_ops,
            "int8_weights": self.quantized.int8_weights,
            "accuracy": self.accuracy.to_json() if self.accuracy is not None else None,
        }

    def summary(self) -> dict[str, Any]:
        c, q = self.calibration, self.quantized
        row: dict[str, Any] = {
            "samples": c.samples,
            "seconds": round(q.seconds, 2),
            "synthetic": c.synthetic,
            "model_type": str(self.model_type),
            "int8_ops": q.int8_ops,
            "int8_weights": q.int8_weights,
        }
        if c.warnings:
            row["warnings"] = len(c.warnings)
            row["warning"] = c.warning
        if self.accuracy is not None:
            row.update(self.accuracy.summary())
        return row


def _open_data(ctx: StageContext[QuantizeNncfParams]) -> "tuple[Dataset, Dataset | None, str | None]":
    """The calibration and val datasets, checked before anything loads; the synthetic-data warning, said now."""
    from stages import data
    from stages.quantization.calibration import no_samples

    calib = data.open_dataset(ctx.dataset("data"), ctx.model)
    val = data.open_dataset(val_input, ctx.model) if (val_input := ctx.optional_dataset("val")) else None
    if calib.count == 0:
        raise no_samples(calib)  # a python source of unknown length is caught by `limited_batches`
    if ctx.params.max_drop is not None and val is None:
        raise ValueError("max_drop is set but no `val` input was given: accuracy control needs validation data")
    synthetic = data.warn_if_synthetic(calib)
    if synthetic:
        ctx.warn(synthetic)
    return calib, val, synthetic


def _control(
    core: "ov.Core", model: "ov.Model", val: "Dataset", inputs: list[str], ctx: StageContext[QuantizeNncfParams]
) -> Control | None:
    """The control figure on `val`; None (with a note) when it needs labels `val` lacks and max_drop is unset."""
    from stages.quantization.calibration import Feed, fit_static_batch, no_samples, sample_count
    from stages.quantization.control_metric import NeedsLabels, control_metric

    p = ctx.params
    count = sample_count(val)
    if count == 0:
        raise no_samples(val)
    feed = Feed(val, p.batch_size, fit_static_batch(model, p.batch_size, count), inputs)
    roles = dict(ctx.model.roles) if ctx.model is not None else {}
    try:
        metric = control_metric(core, model, feed, p.metric_output, roles, val.has_labels)
    except NeedsLabels as exc:
        if p.max_drop is not None:
            raise ValueError(f"max_drop is set but {val.label} has no labels: {exc}") from None
        print(f"note: {val.label} has no labels: {exc}; the float/INT8 figures are not measured", flush=True)
        return None
    return Control(metric, feed)


def _quantize(
    nncf: Any, model: "ov.Model", source: "Feed", control: Control | None, model_type: ModelType, p: QuantizeNncfParams
) -> Quantized:
    """nncf.quantize, or nncf.quantize_with_accuracy_control when max_drop is set (and `control` found)."""
    from stages.quantization.calibration import inputs_of
    from stages.runtimes.openvino import io as ovio

    dataset = nncf.Dataset(source, inputs_of)
    options: dict[str, Any] = dict(
        preset=nncf.QuantizationPreset(p.preset),
        target_device=nncf.TargetDevice(p.target_device),
        subset_size=len(source),
        fast_bias_correction=p.fast_bias_correction,
        model_type=nncf.ModelType.TRANSFORMER if model_type.used == "transformer" else None,
        ignored_scope=_ignored_scope(nncf, p.ignored_scope),
    )
    advanced = _advanced(p.overflow_fix)
    started = time.perf_counter()
    if p.max_drop is not None and control is not None:
        int8 = nncf.quantize_with_accuracy_control(
            model,
            dataset,
            nncf.Dataset(control.feed, inputs_of),
            control.metric,
            max_drop=p.max_drop,
            drop_type=nncf.DropType(p.drop_type),
            advanced_quantization_parameters=advanced,
            **options,
        )
    else:
        int8 = nncf.quantize(model, dataset, advanced_parameters=advanced, **options)
    seconds = time.perf_counter() - started
    return Quantized(int8, seconds, ovio.count_ops(int8), ovio.int8_constants(int8))


def _accuracy(
    core: "ov.Core", model: "ov.Model", int8: "ov.Model", control: Control, p: QuantizeNncfParams
) -> Accuracy:
    """The control figure of the float and the INT8 model, with the settings it was kept under."""
    m = control.metric
    return Accuracy(
        data=control.feed.ds.name,
        samples=control.feed.limit,
        max_drop=p.max_drop,
        drop_type=p.drop_type,
        output=m.output,
        role=m.role,
        figure=m.figure,
        figures=_figures(core, model, int8, m, control.feed),
    )


def _check_quantized(quantized: Quantized, p: QuantizeNncfParams, control: Control | None) -> None:
    """ValueError when NNCF left nothing in INT8: accuracy control reverted every layer, or nothing matched."""
    if quantized.int8_ops:
        return
    if p.max_drop is not None and control is not None:
        m = control.metric
        raise ValueError(
            f"accuracy control reverted every quantized layer to float: no INT8 model keeps "
            f"the {m.figure} drop of {m.output!r} within {p.max_drop} ({p.drop_type}); "
            "check the calibration data"
        )
    raise ValueError(
        "NNCF inserted no FakeQuantize nodes: nothing in this model was quantized (check ignored_scope and model_type)"
    )


def _advanced(overflow_fix: str) -> Any:
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    return AdvancedQuantizationParameters(overflow_fix=OverflowFix(overflow_fix))


def _ignored_scope(nncf: Any, scope: IgnoredScope) -> Any:
    if not (scope.names or scope.types or scope.patterns):
        return None
    return nncf.IgnoredScope(
        names=list(scope.names), types=list(scope.types), patterns=list(scope.patterns), validate=scope.strict
    )


def _figures(
    core: "ov.Core", original: "ov.Model", quantized: "ov.Model", metric: "ControlMetric", feed: "Feed"
) -> dict[str, float]:
    """The metric's figure for the float and the INT8 model on the val data, both run with FP32 inference."""
    before = metric(core.compile_model(original, "CPU", FP32), feed)
    after = metric(core.compile_model(quantized, "CPU", FP32), feed)
    name = "accuracy" if metric.role == "classification" else metric.figure
    return {f"{name}_float": round(before, 6), f"{name}_int8": round(after, 6), "drop": round(before - after, 6)}
