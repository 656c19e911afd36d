"""quantize.search: the fastest NNCF INT8 model whose OpenVINO engine passes every gate, found by measured trials.

Each trial is a setting (`quantization.settings`) -> an INT8 IR -> a compiled
OpenVINO engine -> validate's gate figures on the search split of `val`
(`quantization.judge`) -> a timing; it is a result in the cache under its own
key (`ctx.trials`), so a search killed mid-way recomputes no finished trial and
a larger budget reuses the trials done. The path (`quantization.search`)
starts at `quantize.nncf`'s default setting, tries one knob at a time, then
keeps operations in float in the order of a measured sensitivity ranking
(`quantization.groups`: each quantizer group reverted alone, scored by the
gates' worst-sample margin), stepping back from moves that do not help, and
finally tries each float operation back in INT8.

The choice (`quantization.choice`) is the fastest passing trial, faster only
beyond the timing's noise, ties to fewer float operations. The chosen float
operations are written as IgnoredScope types and patterns
(`quantization.patterns`) and the model is quantized once more with them, so
the scope carries over to the next export. The gates are checked again on the
held-out part of `val`; if the choice fails them there, or no trial passes,
the stage fails (exit 3) listing the nearest trials and their margins, with its
report written.
"""

from __future__ import annotations

import shutil
import time
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.errors import GateFailed
from pipeline.stage import InputSpec, OutputSpec, Params, Stage, StageContext
from stages.quantization.settings import Space
from stages.validation.gates import checked_gate_params


class QuantizeSearchParams(Params):
    gates: dict[str, Any] | None = Field(
        None,
        description="gate -> threshold, as validate's `gates` (omitted: the gate table's INT8 defaults for each "
        "output's role)",
    )
    per_output: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="output name -> {gate: threshold}, as validate's `per_output`"
    )
    objective: Literal["latency", "throughput"] = Field(
        "latency",
        description="latency: the compiled engine's p50 latency at batch 1; throughput: ms per sample at "
        "`throughput_batch` with OpenVINO's throughput hint",
    )
    throughput_batch: int = Field(8, ge=1, description="batch size of the throughput objective")
    max_trials: int = Field(16, ge=1, description="at most this many trials (cached ones count too)")
    max_minutes: float | None = Field(30.0, gt=0, description="start no trial after this many minutes")
    space: Space = Field(default_factory=lambda: Space.model_validate({}), description="what the search may change")
    holdout_every: int = Field(
        4, ge=0, description="every n-th sample of each shape group of `val` is held out to confirm the choice"
    )
    max_samples: int | None = Field(512, ge=1, description="use at most this many samples of `val`")
    labels_output: str | None = Field(None, description="as validate's labels_output")
    mask_input: str | bool | None = Field(None, description="as validate's mask_input")
    dense_threshold: float = Field(0.5, description="as validate's dense_threshold")
    subset_size: int = Field(300, ge=1, description="calibration samples, as quantize.nncf's")
    batch_size: int = Field(1, ge=1, description="samples per calibration inference, as quantize.nncf's")
    inference_precision: Literal["f32", "bf16", "f16"] = Field(
        "f32", description="the OpenVINO inference precision trials are judged and timed at: build.openvino's"
    )
    repeats: int = Field(5, ge=1, description="timings per trial: their range is the latency interval")
    min_seconds: float = Field(0.3, gt=0, description="each timing runs at least this long")
    threads: int | None = Field(None, ge=1, description="CPU threads per engine (None: all cores)")

    @model_validator(mode="before")
    @classmethod
    def _gates(cls, data: Any) -> Any:
        return checked_gate_params(cls, data)

    @field_validator("holdout_every")
    @classmethod
    def _holdout(cls, v: int) -> int:
        if v == 1:
            raise ValueError("1 would hold out every sample and leave none to search on (0: hold none out)")
        return v


class QuantizeSearch(Stage[QuantizeSearchParams]):
    kind = "quantize.search"
    version = "1"
    summary = "Search NNCF INT8 settings for the fastest OpenVINO engine that passes every gate"
    inputs = {
        "model": InputSpec(description="the float model: an .onnx file or an OpenVINO IR directory"),
        "data": InputSpec("data", description="calibration data"),
        "val": InputSpec("data", description="the data the gates are judged on (part of it is held out)"),
    }
    outputs = {
        "model": OutputSpec("model", is_dir=True, description="the chosen INT8 IR, as quantize.nncf writes it"),
        "report": OutputSpec("report.json", description="every trial: setting, gate figures, latency, cached"),
        "markdown": OutputSpec("report.md", description="the same, for people"),
        "plots": OutputSpec("plots", is_dir=True, description="pareto.svg: gate figure against latency"),
    }
    packages = ("openvino", "nncf", "matplotlib")
    extra = "openvino"
    model_fields = ("tensors", "dims", "roles")
    exclusive = True  # it times engines
    trial_neutral = ("gates", "per_output", "max_trials", "max_minutes", "space")

    def hardware(self, params: QuantizeSearchParams) -> dict[str, str]:
        """The CPU decides both the INT8 numerics (VNNI or not) and the timings."""
        from stages.runtimes.cpu import cpu_identity

        return cpu_identity()

    def run(self, ctx: StageContext[QuantizeSearchParams]) -> dict[str, Any]:
        from stages.quantization import search_run

        started = time.monotonic()
        run = search_run.SearchRun.open(ctx)
        result = run.search(started)
        report = result.report()
        ctx.output("report").write_text(report.json_text())
        ctx.output("plots").mkdir(parents=True, exist_ok=True)
        report.draw(ctx.output("plots"))
        ctx.output("markdown").write_text(report.markdown())
        if result.failures:
            raise GateFailed(result.failures)
        assert result.chosen_model is not None
        shutil.copytree(result.chosen_model, ctx.output("model"))
        return report.summary()
