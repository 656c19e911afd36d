"""quantize.nncf: NNCF post-training INT8 quantization of an OpenVINO model (ONNX file or IR).

The model is read with OpenVINO (`core.read_model`), quantized with
`nncf.quantize` (or `nncf.quantize_with_accuracy_control` when `max_drop` is set
and labelled `val` data is given) on batches streamed from the `data` input,
and saved as an IR with FP32 float weights (`compress_to_fp16=False`): the
INT8 weights are already compressed, and whether the rest goes FP16 is
build.openvino's decision. Calibrating on synthetic data works but warns
loudly: random inputs give INT8 scales that have nothing to do with real data.

Reproducibility: NNCF's post-training algorithms are deterministic given the
same data, and NNCF collects statistics with FP32 inference; the one source of
byte differences we found is OpenVINO's process-wide node counter in
auto-generated names, which `_ovio.save_ir` renumbers. NNCF's telemetry is
switched off (`NNCF_CI`) before nncf is first imported.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.stage import DatasetInput, InputSpec, OutputSpec, Params, Stage, StageContext

if TYPE_CHECKING:
    import numpy as np
    import openvino as ov

    from stages._data import Batch, Dataset


class IgnoredScope(BaseModel):
    """Nodes NNCF must leave in floating point (nncf.IgnoredScope)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    names: list[str] = Field(default_factory=list, description="exact node names")
    types: list[str] = Field(default_factory=list, description="OpenVINO op types, e.g. [Multiply, Softmax]")
    patterns: list[str] = Field(default_factory=list, description="regular expressions matched against node names")
    strict: bool = Field(True, description="fail when a name, type or pattern matches no node in the model")


class QuantizeNncfParams(Params):
    preset: Literal["performance", "mixed"] = Field(
        "performance", description="performance: symmetric activations and weights; mixed: asymmetric activations")
    subset_size: int = Field(300, ge=1, description="calibration samples used (fewer if the dataset is smaller)")
    fast_bias_correction: bool = Field(True, description="NNCF's fast bias correction (false: the slower, "
                                                         "sometimes more accurate full bias correction)")
    model_type: Literal["transformer"] | None = Field(None, description="transformer: keep attention-sensitive ops "
                                                                        "in float (nncf.ModelType.TRANSFORMER)")
    ignored_scope: IgnoredScope = Field(default_factory=IgnoredScope, description="nodes left in float")
    target_device: Literal["ANY", "CPU", "GPU", "NPU"] = Field("CPU", description="device whose INT8 rules apply")
    batch_size: int = Field(1, ge=1, description="samples per calibration inference (>1 turns on NNCF's "
                                                  "batch-wise statistics)")
    max_drop: float | None = Field(None, ge=0, description="with labelled `val` data: keep the top-1 accuracy "
                                                           "(of the first output) within this drop of the float "
                                                           "model, reverting layers to float "
                                                           "(nncf.quantize_with_accuracy_control)")
    drop_type: Literal["absolute", "relative"] = Field("absolute", description="how max_drop is measured")


class QuantizeNncf(Stage):
    kind = "quantize.nncf"
    version = "1"
    summary = "Post-training INT8 quantization of an OpenVINO model with NNCF"
    Params = QuantizeNncfParams
    inputs = {
        "model": InputSpec(description="an .onnx file or an OpenVINO IR directory (model.xml + model.bin)"),
        "data": InputSpec("data", description="calibration data"),
        "val": InputSpec("data", optional=True, description="labelled validation data, for accuracy control"),
    }
    outputs = {
        "model": OutputSpec("model", is_dir=True, description="INT8 IR: model.xml + model.bin (FP32 float weights)"),
        "report": OutputSpec("quantize.json", description="settings, calibration samples, synthetic flag, INT8 ops"),
    }
    packages = ("openvino", "nncf")
    extra = "openvino"
    uses_model = True
    model_fields = ("tensors", "dims")
    helpers = ("stages._data", "stages._ovio", "stages._refs")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from stages import _data, _ovio

        p: QuantizeNncfParams = ctx.params
        calib = _data.open_dataset(_anchored(ctx.inputs["data"], ctx), ctx.model)
        val = _data.open_dataset(_anchored(ctx.inputs["val"], ctx), ctx.model) if ctx.inputs.get("val") else None
        if p.max_drop is not None:
            if val is None:
                raise ValueError("max_drop is set but no `val` input was given: accuracy control needs labelled data")
            if not val.has_labels:
                raise ValueError(f"max_drop is set but {val.label} has no labels: accuracy control needs them")
        warning = _data.warn_if_synthetic(calib)
        if warning:
            print(f"WARNING: {ctx.stage}: {warning}", flush=True)
        if val is not None and not val.has_labels:
            print(f"note: {val.label} has no labels: accuracy is not measured", flush=True)

        nncf = _import_nncf()
        import openvino as ov

        core = ov.Core()
        model = _ovio.model_from_artifact(core, ctx.inputs["model"])
        inputs, _ = _ovio.io_names(model)
        samples = min(p.subset_size, calib.count) if calib.count is not None else p.subset_size
        samples = _fit_static_batch(model, p.batch_size, samples)
        source = _Feed(calib, p.batch_size, samples, inputs, ctx.progress)
        val_feed = None
        if val is not None and val.has_labels:
            val_feed = _Feed(val, p.batch_size, _fit_static_batch(model, p.batch_size, _count(val)), inputs)
        dataset = nncf.Dataset(source, _inputs_of)
        options: dict[str, Any] = dict(
            preset=nncf.QuantizationPreset(p.preset), target_device=nncf.TargetDevice(p.target_device),
            subset_size=math.ceil(samples / p.batch_size), fast_bias_correction=p.fast_bias_correction,
            model_type=nncf.ModelType(p.model_type) if p.model_type else None,
            ignored_scope=_ignored_scope(nncf, p.ignored_scope),
        )
        started = time.perf_counter()
        accuracy: dict[str, Any] | None = None
        if p.max_drop is not None and val_feed is not None:
            quantized = nncf.quantize_with_accuracy_control(
                model, dataset, nncf.Dataset(val_feed, _inputs_of), _top1,
                max_drop=p.max_drop, drop_type=nncf.DropType(p.drop_type), **options)
        else:
            quantized = nncf.quantize(model, dataset, **options)
        seconds = time.perf_counter() - started
        if val_feed is not None:
            accuracy = {"data": val_feed.ds.name, "samples": val_feed.limit, "max_drop": p.max_drop,
                        "drop_type": p.drop_type, **_accuracies(core, model, quantized, val_feed)}

        int8_ops = _ovio.count_ops(quantized)
        if int8_ops == 0:
            if p.max_drop is not None:
                raise ValueError(f"accuracy control reverted every quantized layer to float: no INT8 model keeps "
                                 f"the top-1 drop within {p.max_drop} ({p.drop_type}); check the calibration data")
            raise ValueError("NNCF inserted no FakeQuantize nodes: nothing in this model was quantized "
                             "(check ignored_scope and model_type)")
        int8_weights = _ovio.int8_constants(quantized)
        _ovio.save_ir(quantized, ctx.output("model", type(self)), compress_to_fp16=False)
        used = source.samples_seen
        report = {"settings": p.model_dump(mode="json"), "calibration": {**calib.info(), "samples": used},
                  "synthetic": calib.synthetic, "warning": warning, "int8_ops": int8_ops, "int8_weights": int8_weights,
                  "accuracy": accuracy}
        ctx.output("report", type(self)).write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        summary: dict[str, Any] = {"samples": used, "seconds": round(seconds, 2), "synthetic": calib.synthetic,
                                   "int8_ops": int8_ops, "int8_weights": int8_weights}
        if warning:
            summary["warning"] = warning
        if accuracy is not None:
            summary.update({k: accuracy[k] for k in ("accuracy_float", "accuracy_int8", "drop")})
        return summary


def _import_nncf() -> Any:
    """nncf with its telemetry off: NNCF_CI must be set before nncf.telemetry is first imported."""
    os.environ.setdefault("NNCF_CI", "1")
    import nncf

    return nncf


def _anchored(data: DatasetInput, ctx: StageContext) -> DatasetInput:
    """`data` with an absolute base dir: a relative one means the recipe's folder, which ctx.recipe_dir resolves.

    (The worker runs in the output directory, so a relative base dir would be read from there.)
    """
    if Path(data.base_dir).is_absolute():
        return data
    return dataclasses.replace(data, base_dir=Path(ctx.recipe_dir).resolve())


def _fit_static_batch(model: "ov.Model", batch_size: int, samples: int) -> int:
    """Samples to use so every batch fits the model: all of them unless its batch dim is static."""
    from stages._data import whole_batches

    shapes = [i.get_partial_shape() for i in model.inputs]
    fixed = {s[0].get_length() for s in shapes if s.rank.is_static and s.rank.get_length() > 0 and s[0].is_static}
    return whole_batches(fixed, batch_size, samples, "quantize the model with a dynamic batch")


def _ignored_scope(nncf: Any, scope: IgnoredScope) -> Any:
    if not (scope.names or scope.types or scope.patterns):
        return None
    return nncf.IgnoredScope(names=list(scope.names), types=list(scope.types), patterns=list(scope.patterns),
                             validate=scope.strict)


def _inputs_of(item: "Batch") -> dict[str, np.ndarray]:
    return item[0]


class _Feed:
    """A re-iterable view of a dataset for NNCF: its first `limit` samples in batches, input names checked.

    `__len__` (in batches) and `batch_size` are what nncf.Dataset looks for:
    the length bounds its loops, a batch size above 1 turns on batch-wise statistics.
    """

    def __init__(self, ds: "Dataset", batch_size: int, limit: int,
                 model_inputs: list[str], progress: Callable[..., None] | None = None) -> None:
        self.ds, self.batch_size, self.limit, self.model_inputs = ds, batch_size, limit, model_inputs
        self.progress = progress
        self.samples_seen = 0
        self._passes = 0

    def __len__(self) -> int:
        return math.ceil(self.limit / self.batch_size)

    def __iter__(self) -> Iterator["Batch"]:
        self._passes += 1
        seen = 0
        for inputs, labels in self.ds.batches(self.batch_size):
            if set(inputs) != set(self.model_inputs):
                raise ValueError(f"{self.ds.label}: gives inputs {sorted(inputs)}, "
                                 f"the model takes {sorted(self.model_inputs)}")
            keep = min(len(next(iter(inputs.values()))), self.limit - seen)
            inputs = {k: v[:keep] for k, v in inputs.items()}
            labels = None if labels is None else labels[:keep]
            seen += keep
            self.samples_seen = max(self.samples_seen, seen)
            if self.progress is not None:
                self.progress(seen, self.limit, f"calibration pass {self._passes}")
            yield inputs, labels
            if seen >= self.limit:
                return


def _count(ds: "Dataset") -> int:
    """Samples in `ds`; a python source of unknown length is counted by one pass."""
    if ds.count is not None:
        return ds.count
    return sum(len(next(iter(inputs.values()))) for inputs, _ in ds.batches(64))


def _top1(compiled: Any, items: Any) -> float:
    """Top-1 accuracy of the model's first output against the labels (nncf's validation_fn)."""
    import numpy as np
    correct = total = 0
    for inputs, labels in items:
        logits = np.asarray(compiled(inputs)[0])
        predicted = logits.reshape(len(labels), -1).argmax(axis=1)
        correct += int((predicted == labels).sum())
        total += len(labels)
    return correct / max(total, 1)


def _accuracies(core: "ov.Core", original: "ov.Model", quantized: "ov.Model", feed: _Feed) -> dict[str, float]:
    """Top-1 of the float and the INT8 model on the val data, both run with FP32 inference precision."""
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    before = _top1(core.compile_model(original, "CPU", config), feed)
    after = _top1(core.compile_model(quantized, "CPU", config), feed)
    return {"accuracy_float": round(before, 6), "accuracy_int8": round(after, 6), "drop": round(before - after, 6)}
