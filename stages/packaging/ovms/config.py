"""OVMS config.json entries from members, and OVMS's shape syntax both ways.

Shapes are written in OVMS's syntax, per input by name: a fixed dim `8`, a range `1:8` (min < max), any size
`-1`: `{"input": "(1:8,3,8,8)"}` (docs/dynamic_shape_dynamic_model.md; parsed by `Shape::fromString` in
src/shape.cpp, which `parse_shape` follows rule for rule). engine.json's dims map onto it: "1..8" -> `1:8`,
"?" -> `-1`, "..8" -> `0:8`; "1.." has no OVMS form and becomes `-1`. `auto` is never written: it reloads the
model whenever a request's shape changes, and OVMS itself calls batch_size `auto` deprecated.

Names: OVMS puts no rule on a model's name beyond what its URLs take (`/v2/models/<name>`: no `/`); the package
also makes each name a folder, so a name here is a letter or digit, then letters, digits, `_`, `.` or `-`.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from stages.packaging.members import Member
from stages.runtimes.engine_info import TensorInfo

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_RULE = "a letter or digit, then letters, digits, '_', '.' or '-'"
# (low, high): a fixed dim is (n, n), a range (a, b), any size (0, None).
Dim = tuple[int, "int | None"]
ANY: Dim = (0, None)


def default_name(label: str) -> str:
    """The served name of a member the params do not name: its label with '@', '-' and anything else a name
    cannot hold replaced by '_' ("engine@openvino-fp32" -> "engine_openvino_fp32")."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", label).strip("_") or "model"


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a served model's name here, or None."""
    return None if NAME.match(name) else f"{name!r} is not a model name ({NAME_RULE})"


# -- OVMS's shape syntax ------------------------------------------------------------------------------------------
def parse_shape(text: str) -> tuple[Dim, ...]:
    """A shape in OVMS's syntax, "(1:8, 3, -1)"; ValueError saying what OVMS would refuse (it ignores a shape it
    cannot parse, with a warning, and serves the model's own)."""
    s = "".join(text.split())
    bad = sorted(set(s) - set("0123456789(),-:"))
    if bad:
        raise ValueError(f"{text!r}: {''.join(bad)!r} is not allowed (digits, '(', ')', ',', '-' and ':' only)")
    if s.count("(") != 1 or s.count(")") != 1 or len(s) <= 2 or s[0] != "(" or s[-1] != ")":
        raise ValueError(f"{text!r}: expected one parenthesised list of dims, as (1,3,224,224)")
    return tuple(_dim(token, text) for token in s[1:-1].split(","))


def _dim(token: str, text: str) -> Dim:
    if token.count("-") > 1 or (token.count("-") == 1 and not token.startswith("-")):
        raise ValueError(f"{text!r}: dim {token!r}: '-' only in -1 (any size)")
    if ":" not in token:
        if not token or token.lstrip("-") == "" or not token.lstrip("-").isdigit():
            raise ValueError(f"{text!r}: dim {token!r} is not a number")
        value = int(token)
        if value == -1:
            return ANY
        if value < 0:
            raise ValueError(f"{text!r}: dim {token!r}: a size is -1 (any) or >= 0")
        return (value, value)
    low, _, high = token.partition(":")
    if ":" in high or not low.isdigit() or not high.isdigit():
        raise ValueError(f"{text!r}: range {token!r}: expected min:max, two numbers >= 0")
    if int(low) >= int(high):
        raise ValueError(f"{text!r}: range {token!r}: max must be above min")
    return (int(low), int(high))


def parse_batch_size(value: int | str) -> Dim:
    """OVMS's batch_size (an integer, or a dim string: "8", "1:8", "-1"); ValueError for one OVMS would ignore."""
    if isinstance(value, int):
        return (value, value)
    text = "".join(value.split())
    problem = f"{value!r} is not a batch size (a number, min:max above 0, or -1)"
    try:
        dim = _dim(text, value)
    except ValueError:
        raise ValueError(problem) from None
    if dim[0] == 0 and dim[1] not in (0, None):  # src/shape.cpp Dimension::fromString: a range starts above 0
        raise ValueError(problem)
    return dim


def shape_text(dims: Sequence[int | str]) -> str:
    """engine.json's dims in OVMS's syntax: (1, "1..8", "?") -> "(1,1:8,-1)"."""
    return "(" + ",".join(dim_text(model_dim(d)) for d in dims) + ")"


def dim_text(d: Dim) -> str:
    """A Dim in OVMS's syntax: "8", "1:8", "-1"."""
    low, high = d
    return "-1" if high is None else str(low) if low == high else f"{low}:{high}"


def model_dim(d: int | str) -> Dim:
    """engine.json's dim (8, "1..8", "1..", "..8", "?") as a Dim."""
    if isinstance(d, int):
        return (d, d)
    if d == "?":
        return ANY
    low, _, high = d.partition("..")
    return (int(low) if low else 0, int(high) if high else None)


def within(inner: Dim, outer: Dim) -> bool:
    """Whether every size `inner` allows is one `outer` allows."""
    if inner[0] < outer[0]:
        return False
    return outer[1] is None or (inner[1] is not None and inner[1] <= outer[1])


def request_shape(dims: Sequence[Dim]) -> tuple[int, ...]:
    """One concrete shape a config's dims allow, for the smoke request: each range at its smallest size above 0
    (a batch of 1), any size as 1."""
    return tuple(max(low, 1) if high is None or max(low, 1) <= high else low for low, high in dims)


# -- entries ------------------------------------------------------------------------------------------------------
def derived_shape(inputs: Sequence[TensorInfo]) -> dict[str, str] | None:
    """OVMS's `shape` for a member: every input of known rank, by name, in OVMS's syntax; None if none has one."""
    shape = {t.name: shape_text(t.dims) for t in inputs if t.dims is not None}
    return shape or None


SPARSE_RATE_DETAIL = "sparse_weights_decompression_rate"  # engine.json details key (build.openvino)


def derived_plugin_config(member: Member) -> dict[str, str]:
    """What the server must set to run the numbers the build checked: engine.json's inference precision (f32 for
    a model without one: OpenVINO's CPU plugin would pick bf16 on AVX-512 BF16/AMX CPUs), its performance hint and
    its sparse-weight decompression rate (build.openvino's; validate compiled with it)."""
    info = member.info
    plugin: dict[str, str] = {"INFERENCE_PRECISION_HINT": (info.inference_precision if info else None) or "f32"}
    hint = info.details.get("performance_hint") if info else None
    if isinstance(hint, str):
        plugin["PERFORMANCE_HINT"] = hint
    rate = info.details.get(SPARSE_RATE_DETAIL) if info else None
    if isinstance(rate, (int, float)):
        plugin["CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"] = str(rate)
    return plugin


def model_entry(
    name: str,
    version: int,
    *,
    shape: str | Mapping[str, str] | None,
    batch_size: int | str | None,
    nireq: int | None,
    target_device: str,
    plugin_config: Mapping[str, Any],
) -> dict[str, Any]:
    """One `model_config_list[].config`: served from the folder `name` beside config.json (OVMS resolves a
    relative base_path against the config file's folder), exactly version `version`."""
    entry: dict[str, Any] = {"name": name, "base_path": name}
    if batch_size is not None:
        entry["batch_size"] = batch_size
    if shape is not None:
        entry["shape"] = shape if isinstance(shape, str) else dict(shape)
    entry["model_version_policy"] = {"specific": {"versions": [version]}}
    if nireq is not None:
        entry["nireq"] = nireq
    entry["target_device"] = target_device
    entry["plugin_config"] = dict(plugin_config)
    return entry


def config_of(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """config.json's content for these entries."""
    return {"model_config_list": [{"config": dict(e)} for e in entries]}
