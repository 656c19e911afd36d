"""A quantization setting (one point of quantize.search's space) and how it becomes NNCF's arguments.

A `Setting` is plain, hashable data: it names a trial in the cache (its identity),
prints as one line in the report, and turns into `nncf.quantize` arguments here
and nowhere else. `DEFAULT` is `quantize.nncf`'s default setting (preset
performance, model type auto, NNCF's own SmoothQuant alpha, fast bias
correction, overflow fix on the first layer only, nothing kept in float), which every search tries first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from pydantic import Field

from pipeline.schema import Strict

Preset = Literal["performance", "mixed"]
ModelKind = Literal["auto", "transformer", "none"]
BiasCorrection = Literal["fast", "full"]
OverflowFix = Literal["first_layer_only", "enable", "disable"]


@dataclass(frozen=True)
class FloatOps:
    """Operations kept in float, as NNCF's IgnoredScope writes them: exact names, op types, name patterns."""

    names: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.names or self.types or self.patterns)

    def with_name(self, name: str) -> FloatOps:
        return replace(self, names=tuple(sorted({*self.names, name})))

    def without_name(self, name: str) -> FloatOps:
        return replace(self, names=tuple(n for n in self.names if n != name))

    def to_json(self) -> dict[str, list[str]]:
        return {"names": list(self.names), "types": list(self.types), "patterns": list(self.patterns)}


@dataclass(frozen=True)
class Setting:
    """One trial's NNCF settings. `smooth_quant_alpha` None: NNCF's default for the model type (0.95 on
    MatMuls in transformer mode, off otherwise); a negative value switches SmoothQuant off."""

    preset: Preset = "performance"
    model_type: ModelKind = "auto"
    smooth_quant_alpha: float | None = None
    bias_correction: BiasCorrection = "fast"
    overflow_fix: OverflowFix = "first_layer_only"
    float_ops: FloatOps = FloatOps()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["float_ops"] = self.float_ops.to_json()
        return data

    def describe(self) -> str:
        """One line: what differs from `quantize.nncf`'s default setting."""
        parts = []
        if self.preset != DEFAULT.preset:
            parts.append(f"preset {self.preset}")
        if self.model_type != DEFAULT.model_type:
            parts.append(f"model_type {self.model_type}")
        if self.smooth_quant_alpha is not None:
            parts.append("SmoothQuant off" if self.smooth_quant_alpha < 0 else f"alpha {self.smooth_quant_alpha:g}")
        if self.bias_correction != DEFAULT.bias_correction:
            parts.append(f"{self.bias_correction} bias correction")
        if self.overflow_fix != DEFAULT.overflow_fix:
            parts.append(f"overflow fix {self.overflow_fix}")
        ops = self.float_ops
        if ops.names:
            parts.append(f"{len(ops.names)} float op{'s' if len(ops.names) != 1 else ''}")
        if ops.types:
            parts.append(f"float types {', '.join(ops.types)}")
        if ops.patterns:
            parts.append(f"{len(ops.patterns)} float pattern{'s' if len(ops.patterns) != 1 else ''}")
        return ", ".join(parts) or "quantize.nncf default"


DEFAULT = Setting()


class Space(Strict):
    """What quantize.search may change, each tried one at a time from the best setting so far; then, when a
    gate still fails, which operations stay in float (ranked by measured sensitivity)."""

    preset: list[Preset] = Field(["performance", "mixed"], description="presets to try")
    model_type: list[ModelKind] = Field(["auto"], description="NNCF model types to try (auto: attention found)")
    smooth_quant_alpha: list[float] = Field(
        [0.8, 0.5, -1.0],
        description="SmoothQuant alphas on MatMuls to try besides NNCF's default, in transformer mode "
        "(negative: SmoothQuant off)",
    )
    bias_correction: list[BiasCorrection] = Field(["fast", "full"], description="bias corrections to try")
    overflow_fix: list[OverflowFix] = Field(
        ["first_layer_only", "enable"],
        description="NNCF's overflow fixes to try (enable: 7-bit weights everywhere, which keeps CPUs without "
        "VNNI accurate)",
    )
    float_ops: bool = Field(True, description="search which operations stay in float (greedy, by sensitivity)")
    max_float_ops: int = Field(12, ge=0, description="at most this many operations kept in float")
    tail: int = Field(
        16,
        ge=1,
        description="a failing setting is judged, and quantizer groups ranked, by the mean of this many worst "
        "samples of each per-sample gate (a steadier guide than the one worst sample)",
    )

    def alternatives(self, base: Setting, transformer: bool) -> list[Setting]:
        """The settings one knob away from `base` (SmoothQuant alphas only in transformer mode)."""
        out: list[Setting] = []
        out += [replace(base, preset=p) for p in self.preset if p != base.preset]
        out += [replace(base, model_type=m) for m in self.model_type if m != base.model_type]
        if transformer:
            alphas = [a for a in self.smooth_quant_alpha if a != base.smooth_quant_alpha]
            out += [replace(base, smooth_quant_alpha=a) for a in alphas]
        out += [replace(base, bias_correction=b) for b in self.bias_correction if b != base.bias_correction]
        out += [replace(base, overflow_fix=o) for o in self.overflow_fix if o != base.overflow_fix]
        return list(dict.fromkeys(out))


def nncf_arguments(nncf: Any, setting: Setting, transformer: bool) -> dict[str, Any]:
    """`nncf.quantize` keyword arguments for `setting` (besides the model, the data and subset_size);
    `transformer`: the model type `auto` resolved to."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    from nncf.quantization.advanced_parameters import OverflowFix as NncfOverflowFix

    alphas = AdvancedSmoothQuantParameters()
    if setting.smooth_quant_alpha is not None:
        alphas = AdvancedSmoothQuantParameters(matmul=setting.smooth_quant_alpha)
    ops = setting.float_ops
    scope = (
        nncf.IgnoredScope(names=list(ops.names), types=list(ops.types), patterns=list(ops.patterns), validate=False)
        if ops
        else None
    )
    return dict(
        preset=nncf.QuantizationPreset(setting.preset),
        target_device=nncf.TargetDevice.CPU,
        fast_bias_correction=setting.bias_correction == "fast",
        model_type=nncf.ModelType.TRANSFORMER if transformer else None,
        ignored_scope=scope,
        advanced_parameters=AdvancedQuantizationParameters(
            overflow_fix=NncfOverflowFix(setting.overflow_fix), smooth_quant_alphas=alphas
        ),
    )
