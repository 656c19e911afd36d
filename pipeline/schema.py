"""The recipe's shape as pydantic models: the engine's half of the schema.

Stage params and datasets are validated later against their kind's own
models (`Params`, `DataKind.Spec`); here `with:` and each `data:` entry are only
required to be mappings. Every model forbids unknown
keys so a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

import re
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from pipeline.errors import did_you_mean

NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# A stage's name once matrices are expanded: `build`, or a variant of it, `build@fp16-T4` (pipeline/recipe/matrix.py).
STAGE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+(@[A-Za-z0-9_-]+)?$")
DTYPES = ("float32", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool")
# What an output means, which decides the figures and default gates validation applies to it.
ROLES = ("classification", "regression", "embedding", "dense")


class Strict(BaseModel):
    """Unknown keys are errors, and so is a boolean where a number is expected (pydantic's lax mode
    would take `repeat: true` as 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if isinstance(value, bool) and field is not None and _numbers_only(field.annotation):
                    raise field_error(cls, (key,), value, f"expected a number, not a boolean (got {value})")
        return data


def field_error(model: type, loc: tuple[Any, ...], value: Any, message: str) -> ValidationError:
    """A validation error located at `loc` inside `model` (a plain ValueError from a model validator
    would point at the whole section, not the offending key's line). `message` is all the user sees."""
    error = PydanticCustomError("recipe_value", message)
    return ValidationError.from_exception_data(model.__name__, [InitErrorDetails(type=error, loc=loc, input=value)])


def _numbers_only(annotation: Any) -> bool:
    """int, float, or an optional/union of them (not bool)."""
    union = get_origin(annotation) in (Union, UnionType)
    args = [a for a in get_args(annotation) if a is not type(None)] if union else [annotation]
    return bool(args) and all(a in (int, float) for a in args)


class DimRange(Strict):
    """A named dynamic dimension: the range an engine must accept and the size it tunes for."""

    min: int = Field(ge=1, description="smallest size an engine accepts")
    opt: int = Field(ge=1, description="the size engines are tuned for (and synthetic data uses)")
    max: int = Field(ge=1, description="largest size an engine accepts")

    @model_validator(mode="after")
    def _ordered(self) -> "DimRange":
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"expected min <= opt <= max, got {self.min}, {self.opt}, {self.max}")
        return self


class TensorSpec(Strict):
    """One model input: its shape (ints, or names declared under `dims`) and dtype."""

    shape: list[int | str] = Field(description="ints, or names declared under `dims`")
    dtype: Literal[DTYPES] = Field("float32", description="element type")  # type: ignore[valid-type]


class ModelSpec(Strict):
    """The recipe's `model:` section: where the network comes from and what it takes."""

    factory: str | None = Field(
        None, description="`module:function` or `path/to/file.py:function` returning a torch.nn.Module"
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the factory")
    seed: int = Field(0, description="torch seed set before the factory runs (random init is reproducible)")
    checkpoint: str | None = Field(None, description="state_dict file loaded with weights_only=True")
    source: str | None = Field(
        None,
        description="file or folder whose every file enters the export's key, for what the code cannot "
        "reveal by opening it (a module imported by a computed name, files native code opens): its imports and "
        "the files it opens in Python are found anyway",
    )
    tensors: dict[str, TensorSpec] = Field(default_factory=dict, description="input name -> shape and dtype")
    outputs: list[str] | None = Field(None, description="output names (default: the exporter's own names)")
    dims: dict[str, DimRange] = Field(default_factory=dict, description="dynamic dimension name -> min/opt/max")
    roles: dict[str, Literal[ROLES]] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="output name -> classification, regression, embedding or dense (default: inferred, see Validation)",
    )

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, v: str | None) -> str | None:
        if v is not None and v.count(":") != 1:
            raise ValueError("expected 'module:function' or 'path/to/file.py:function'")
        return v

    @model_validator(mode="after")
    def _dims_declared(self) -> "ModelSpec":
        for name, spec in self.tensors.items():
            for i, d in enumerate(spec.shape):
                if isinstance(d, str) and d not in self.dims:
                    raise field_error(
                        type(self),
                        ("tensors", name, "shape", i),
                        d,
                        f"dim {d!r} is not declared under model.dims{did_you_mean(d, list(self.dims))}",
                    )
                if isinstance(d, int) and d < 1:
                    raise field_error(
                        type(self), ("tensors", name, "shape", i), d, "expected a positive int or a dim name"
                    )
        return self

    def shape(self, tensor: str, point: Literal["min", "opt", "max"] = "opt") -> tuple[int, ...]:
        """The concrete shape of `tensor` with each named dim at its min, opt or max."""
        return tuple(d if isinstance(d, int) else getattr(self.dims[d], point) for d in self.tensors[tensor].shape)


class StageSpec(Strict):
    uses: str = Field(description="stage kind")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="parameters")
    inputs: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="input name -> stage[.output], data.NAME or a path; a list (`[build@*, other]`) for an input "
        "that takes many",
    )
    from_: str | None = Field(None, alias="from", description="shorthand for inputs: {model: X}")
    description: str = ""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _from_or_model(self) -> "StageSpec":
        if self.from_ is not None and "model" in self.inputs:
            raise ValueError("give either from: or inputs.model, not both")
        return self

    def references(self) -> dict[str, str | list[str]]:
        refs = dict(self.inputs)
        if self.from_ is not None:
            refs["model"] = self.from_
        return refs


class RecipeSpec(Strict):
    name: str | None = None
    description: str = ""
    plugins: list[str] = Field(default_factory=list, description="modules next to the recipe that add stage kinds")
    model: ModelSpec | None = None
    # Each entry is validated against its kind's spec (pipeline.datakind) once kinds are loaded.
    data: dict[str, dict[str, Any]] = Field(default_factory=dict)
    stages: dict[str, StageSpec]

    @field_validator("stages", "data")
    @classmethod
    def _names(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        pattern = STAGE_NAME_RE if info.field_name == "stages" else NAME_RE  # a stage may be a matrix's variant
        for name in v:
            if not pattern.match(name):
                raise ValueError(f"name {name!r} must match [A-Za-z0-9_-]+ (names become paths)")
        return v

    @field_validator("stages")
    @classmethod
    def _some_stages(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ValueError("a recipe needs at least one stage")
        return v

    @field_validator("name")
    @classmethod
    def _recipe_name(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.match(v):
            raise ValueError(f"recipe name {v!r} must match [A-Za-z0-9_-]+ (it becomes a path)")
        return v
