"""engine.json, typed: what a built engine is, in one model every reader shares.

Both builders (build.openvino, build.tensorrt) write one `EngineInfo` beside
the engine; runners (`runtimes.runners.runner_for`, `runtimes.openvino.runner`, `runtimes.tensorrt.runner`),
validate's report and report.compare read it back through `read`, instead of
guessing from file suffixes and dict keys; packaging stages (Triton, OpenVINO
Model Server) will read it next. The typed fields are what every backend has
(backend, precision, I/O, toolchain, device, the command that rebuilds it);
what only one backend records (TensorRT's layers and settings, OpenVINO's
performance hint and op counts) stays in `details`, so nothing is lost.

`schema` is bumped when a field changes meaning or a required one is added;
`read` refuses any other version with one line naming the file, as it does for
a missing or malformed file (never a pydantic dump). Imports pydantic and the
standard library only: kind modules and runners import it on the cached path.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA = 1
FILENAME = "engine.json"

# Element types numpy holds, by numpy's name (np.dtype(name).name == name; a test checks), and the few I/O
# types it lacks, by the name ml_dtypes (the numpy-ecosystem package for them) gives them.
NUMPY_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"}
)
EXTRA_DTYPES = frozenset({"bfloat16", "float8_e4m3fn", "float8_e5m2", "float4_e2m1fn", "int4", "uint4"})
_RANGE = re.compile(r"^(\d+)?\.\.(\d+)?$")

Precision = Literal["int8", "fp8", "fp16", "bf16", "fp32"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TensorInfo(_Frozen):
    """One input or output of the engine.

    `dims`: an int is a fixed size; a string is a dynamic dim, written as
    OpenVINO prints it: "1..32" (a range), "1.." (no upper bound), "?" (any);
    None when even the rank is dynamic.
    `min`/`opt`/`max`: the TensorRT optimization profile's shapes of a dynamic
    input (None elsewhere: OpenVINO accepts any shape inside `dims`).
    """

    name: str = Field(min_length=1)
    dtype: str = Field(description="numpy dtype name (float32, int64...); bfloat16/float8_* for types numpy lacks")
    dims: tuple[int | str, ...] | None
    min: tuple[int, ...] | None = None
    opt: tuple[int, ...] | None = None
    max: tuple[int, ...] | None = None

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        if v not in NUMPY_DTYPES | EXTRA_DTYPES:
            raise ValueError(
                f"{v!r} is not a numpy dtype name (expected one of {', '.join(sorted(NUMPY_DTYPES | EXTRA_DTYPES))})"
            )
        return v

    @field_validator("dims")
    @classmethod
    def _dims(cls, v: tuple[int | str, ...] | None) -> tuple[int | str, ...] | None:
        for d in v or ():
            if isinstance(d, int) and d < 0:
                raise ValueError(f"a dim is a size >= 0 or a dynamic dim as a string ('1..32', '?'), not {d}")
            if isinstance(d, str) and d != "?" and not _RANGE.match(d):
                raise ValueError(f"dynamic dim {d!r}: expected 'min..max', 'min..', '..max' or '?'")
        return v

    @model_validator(mode="after")
    def _profile(self) -> "TensorInfo":
        shapes = [s for s in (self.min, self.opt, self.max) if s is not None]
        rank = None if self.dims is None else len(self.dims)
        if shapes and (len(shapes) != 3 or any(len(s) != rank for s in shapes)):
            raise ValueError(f"{self.name}: min, opt and max go together, each of the dims' rank ({rank})")
        return self

    @property
    def dynamic(self) -> bool:
        return self.dims is None or any(isinstance(d, str) for d in self.dims)


class EngineDevice(_Frozen):
    """The device an engine was built for, as engine.json's `device` records it: an OpenVINO device ("CPU",
    "GPU.1"), or a TensorRT engine's GPU by name and compute capability ("8.9"). The CPU model is not recorded for
    OpenVINO: the IR's bytes do not depend on it. (A recipe's declared hardware target is
    `runtimes.tensorrt.targets.Target`; only its accelerator name is kept here.)"""

    device: str = Field(min_length=1)
    compute_capability: str | None = None
    # The target the recipe declared (Ray's accelerator type, "H100"), when it declared one.
    accelerator: str | None = None

    def __str__(self) -> str:
        return self.device + (f" (sm {self.compute_capability})" if self.compute_capability else "")


class EngineInfo(_Frozen):
    """A built engine: backend, precision, I/O, toolchain, device and how to rebuild it.

    `precision` is the lowest precision the engine computes in:
    - OpenVINO: "int8" when the IR holds FakeQuantize nodes (NNCF), "fp8" for
      FakeConvert, else its inference precision (f32 -> "fp32", f16 -> "fp16",
      bf16); `inference_precision` is OpenVINO's INFERENCE_PRECISION_HINT the
      build compiled and checked it with, which runners set explicitly (the CPU
      plugin would pick bf16 by itself on AVX-512 BF16/AMX CPUs).
    - TensorRT: the lowest precision any layer runs in, read from the engine
      inspector (a strongly typed engine computes what the ONNX says);
      `inference_precision` is None.
    `reproduce` is an argv rebuilding the engine from the builder's input
    (see each builder's docstring for which command and why).
    """

    schema_version: int = Field(default=SCHEMA, validation_alias="schema", serialization_alias="schema")
    backend: Literal["openvino", "tensorrt", "onnxruntime"]
    precision: Precision
    inference_precision: Literal["f32", "bf16", "f16"] | None = None
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    toolchain: dict[str, str]
    device: EngineDevice
    reproduce: tuple[str, ...]
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("schema_version")
    @classmethod
    def _schema(cls, v: int) -> int:
        if v != SCHEMA:
            raise ValueError(f"this version reads schema {SCHEMA}, not {v}")
        return v

    @field_validator("details")
    @classmethod
    def _plain(cls, v: dict[str, Any]) -> dict[str, Any]:
        """JSON-plain (tuples become lists), so an EngineInfo equals what reading its engine.json gives back."""
        try:
            return json.loads(json.dumps(v))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not JSON data: {exc}") from None

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def reproduce_line(self) -> str:
        """`reproduce` as one shell line."""
        return shlex.join(self.reproduce)

    def as_json(self, details: bool = True) -> dict[str, Any]:
        """engine.json's content (`details` left out for reports, where TensorRT's layer table is bulk)."""
        return self.model_dump(mode="json", by_alias=True, exclude=None if details else {"details"})


def write(info: EngineInfo, dir_or_path: Path | str) -> Path:
    """Write `info` as `<dir>/engine.json` (or to the given file): a temp file renamed into place, so a reader
    never sees half of one. Sorted keys: the same engine writes the same bytes."""
    path = Path(dir_or_path)
    if path.is_dir():
        path = path / FILENAME
    text = json.dumps(info.as_json(), indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make a shared view unreadable to others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sidecar(artifact: Path | str) -> Path | None:
    """The engine.json of an artifact: the file itself (any .json file given is taken as the sidecar),
    `<dir>/engine.json`, or the one beside a file; None when there is none."""
    path = Path(artifact)
    if path.is_file() and path.suffix == ".json":
        return path
    candidate = (path if path.is_dir() else path.parent) / FILENAME
    return candidate if candidate.is_file() else None


def read(artifact: Path | str) -> EngineInfo:
    """The EngineInfo of an artifact (engine.json itself, in the directory, or beside the file).

    ValueError, one line naming the file: no engine.json, not JSON, no or another schema, or a field that does not
    validate (the first error, located by field)."""
    found = sidecar(artifact)
    if found is None:
        raise ValueError(f"{artifact}: no {FILENAME} (in or beside it)")
    try:
        data = json.loads(found.read_text())
    except OSError as exc:
        raise ValueError(f"{found}: cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{found}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    return parse(data, found)


def parse(data: Any, where: Path | str) -> EngineInfo:
    """`data` (engine.json's content, or a report's embedded copy) as an EngineInfo; ValueError naming `where`."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if "schema" not in data:
        raise ValueError(
            f"{where}: no schema version: written before engine.json was typed (schema {SCHEMA}); rebuild the engine"
        )
    try:
        return EngineInfo.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{where}: {summarize(exc)}") from None


def summarize(exc: ValidationError) -> str:
    """A ValidationError as one line: the first error's field and message, and how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{field}: {message}{more}".replace("\n", " ")
