"""package.ovms: built engines -> an OpenVINO Model Server repository (config.json + <name>/<version>/ model files).

Serves each member of `models` (a build.openvino engine, a build.onnxruntime engine, a bare .onnx file or an
IR directory; OVMS runs all of them with OpenVINO) under its name, from the folder `<name>/<version>/` beside
config.json. Each entry pins what the build and validate checked: the input shapes in OVMS's syntax (engine.json's
"1..8" is OVMS's `1:8`; `auto` is never written), the version served (`specific`), and a plugin_config carrying
the engine's INFERENCE_PRECISION_HINT (f32 where it has none: OpenVINO's CPU plugin would run bf16 on CPUs with
AVX-512 BF16 or AMX) and its PERFORMANCE_HINT. TensorRT engines are refused: OVMS does not run them.

Nothing is written until every check passes on the planned repository: config.json against OVMS's own schema
(`packaging/ovms/config.schema.json`), unique names, version folders, base paths as OVMS resolves them (relative
to config.json's folder), the files each version folder will hold, and the shapes against the model files
(`packaging.ovms.repository.check_layout`). The written repository is then read back and checked by the same
function (`check_repository`, usable on a hand-written one), its files compared by sha256 with the members', and
each model smoke-tested (`packaging.smoke`): OpenVINO loads the written file, runs one request at the config's
shape with the config's precision hint, and the outputs must agree with the float `reference` model when given.
package.json records every model, its files with sha256, its config entry, the checks passed and the smoke
results. The repository runs as `ovms --config_path repository/config.json --port 9000 --rest_port 8000`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pydantic import Field, field_validator

from pipeline.stage import InputSpec, KeyContext, OutputSpec, Params, Stage, StageContext, installed_version
from stages.packaging.labels import present, unknown_label
from stages.packaging.members import Member, member_from, model_io
from stages.packaging.ovms import config as cfg
from stages.packaging.ovms.repository import CHECKS, CONFIG, check_layout, check_repository, request_shapes
from stages.packaging.ovms.schema import SCHEMA_PATH, SOURCE
from stages.packaging.smoke import SMOKE_GATE, SMOKE_INPUTS, cosine_floor, data_sample
from stages.runtimes.engine_info import TensorInfo

if TYPE_CHECKING:
    from pipeline.schema import ModelSpec
    from stages.packaging.smoke import SmokeResult

PluginValue = str | int | float | bool


class PackageOvmsParams(Params):
    names: dict[str, str] = Field(
        default_factory=dict,
        description="served model name per member (as the recipe calls it: 'engine@openvino-fp32'); default: the "
        f"label with '@', '-' and other characters a name cannot hold as '_'. A name is {cfg.NAME_RULE}",
    )
    version: int = Field(1, ge=1, description="the version folder each model is served from (a positive integer)")
    nireq: int | None = Field(None, ge=1, description="OVMS's inference request queue size; None: OVMS decides")
    target_device: str = Field("CPU", min_length=1, description="OVMS's target_device for every model")
    shape: dict[str, str | dict[str, str]] = Field(
        default_factory=dict,
        description="OVMS's shape per member, e.g. {'engine@openvino-fp32': {'input': '(1:8,3,224,224)'}}; "
        "default: every input's dims from engine.json (or the model file) in OVMS's syntax ('1..8' -> 1:8, "
        "'?' -> -1). 'auto' is refused",
    )
    batch_size: dict[str, int | str] = Field(
        default_factory=dict,
        description="OVMS's batch_size per member (8, or '1:8'); a member given one gets no derived shape (OVMS "
        "ignores batch_size when shape is set). 'auto' is refused",
    )
    plugin_config: dict[str, PluginValue] = Field(
        default_factory=dict,
        description="OpenVINO properties for every model, over the derived INFERENCE_PRECISION_HINT (the engine's, "
        "else f32) and PERFORMANCE_HINT (the engine's)",
    )
    smoke_cosine_min: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description=SMOKE_GATE,
    )

    @field_validator("names")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v.values():
            problem = cfg.name_problem(name)
            if problem:
                raise ValueError(problem)
        return v

    @field_validator("shape", "batch_size")
    @classmethod
    def _no_auto(cls, v: dict[str, Any]) -> dict[str, Any]:
        for label, value in v.items():
            if value == "auto" or (isinstance(value, dict) and "auto" in value.values()):
                raise ValueError(f"{label}: 'auto' reloads the model at every new shape; give the dims")
        return v


class PackageOvms(Stage[PackageOvmsParams]):
    kind = "package.ovms"
    version = "1"
    summary = "Package engines as an OpenVINO Model Server repository (config.json + model folders), checked"
    inputs = {
        "models": InputSpec(many=True, description="engines or model files to serve (OpenVINO IR, ONNX)"),
        **SMOKE_INPUTS,
    }
    outputs = {
        "repository": OutputSpec("repository", is_dir=True, description="config.json and <name>/<version>/ folders"),
        "report": OutputSpec("package.json", description="models, files with sha256, config entries, checks, smoke"),
        "markdown": OutputSpec("package.md", description="the models table, the smoke results and how to serve it"),
    }
    packages = ("openvino", "jsonschema")
    extra = "serve"
    deliverable = True

    def members_problem(
        self, params: PackageOvmsParams, members: Mapping[str, list[str]]
    ) -> tuple[tuple[str, ...], str] | None:
        return unknown_label(params, ("names", "shape", "batch_size"), members)

    def toolchain(self, params: PackageOvmsParams | None = None) -> dict[str, str]:
        """Also onnx (reading a bare .onnx's inputs) and onnxruntime (the smoke test's reference), when installed:
        the report's figures depend on them, but packaging IR alone needs neither."""
        return {**super().toolchain(params), **{p: installed_version(p) for p in ("onnx", "onnxruntime")}}

    def fingerprint(self, params: PackageOvmsParams, model: "ModelSpec | None", keys: KeyContext) -> dict[str, Any]:
        """The schema the checks hold config.json to: a data file, outside the code closure."""
        return {"ovms_schema": keys.file_digest(SCHEMA_PATH)}

    def run(self, ctx: StageContext[PackageOvmsParams]) -> dict[str, Any]:
        p = ctx.params
        members = _members(ctx.members("models"), p)
        entries, planned = [], {}
        for name, member in members.items():
            entry = _entry(ctx, name, member)
            entries.append(entry)
            planned.update({f"{name}/{p.version}/{f.name}": f for f in member.files})
        config = cfg.config_of(entries)
        _raise_first(check_layout(config, planned), "planned repository")

        repo = ctx.output("repository")
        repo.mkdir(parents=True)
        for rel, source in planned.items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, repo / rel)
        (repo / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        _raise_first(check_repository(repo), "written repository")

        reference = ctx.optional_path("reference")
        sample = data_sample(ctx.optional_dataset("data"))
        models = []
        for (name, member), entry in zip(members.items(), entries):
            files = _written(repo, name, p.version, member)
            model_file = next(repo / f["path"] for f in files if f["path"].endswith((".xml", ".onnx")))
            inputs = model_io(model_file)[0]  # as OVMS reads the written file
            smoke = _smoke(name, member, entry, [repo / f["path"] for f in files], inputs, reference, p, sample)
            row = {**smoke.row(), "cosine_min": cosine_floor(member, p.smoke_cosine_min, sample is not None)}
            models.append(_model_row(name, member, p.version, entry, files, row))
        report = {
            "kind": self.kind,
            "repository": ctx.outputs["repository"].path,
            "config": config,
            "models": models,
            "checks": {**CHECKS, "sha256": "each written file is the member's file", "smoke": _SMOKE},
            "schema": SOURCE,
            "reference": reference.name if reference else None,
            "serve": _serve(ctx.outputs["repository"].path),
        }
        ctx.output("report").write_text(json.dumps(report, indent=1) + "\n")
        ctx.output("markdown").write_text(markdown(report))
        worst = [c for c in (_worst_cosine(m["smoke"]) for m in models) if c is not None]
        return {
            "models": len(models),
            "files": sum(len(m["files"]) for m in models),
            "smoke_ran": sum(1 for m in models if m["smoke"]["ran"]),
            "smoke_cosine_min": round(min(worst), 6) if worst else None,
            "smoke": {m["name"]: _worst_cosine(m["smoke"]) for m in models},
        }


_SMOKE = "OpenVINO loads each written model, runs one request at the config's shape, outputs finite and agreeing"


def _serve(repository: str) -> dict[str, str]:
    """How to serve the repository (OVMS's docs/starting_server.md), from the folder holding it."""
    return {
        "command": f'docker run --rm -p 9000:9000 -p 8000:8000 -v "$PWD/{repository}:/models:ro" '
        "openvino/model_server:<release> --config_path /models/config.json --port 9000 --rest_port 8000",
        "baremetal": f"ovms --config_path {repository}/{CONFIG} --port 9000 --rest_port 8000",
        "release": f"an OVMS release whose config schema is the one checked ({SOURCE}) and whose OpenVINO is "
        "not older than the one that wrote the engines (each model's engine.toolchain in package.json; the smoke "
        f"test ran OpenVINO {installed_version('openvino')})",
    }


def markdown(report: dict[str, Any]) -> str:
    """package.md: the models, their files and settings, the smoke results, and how to serve the repository."""
    lines = [f"# OpenVINO Model Server repository ({len(report['models'])} models)", ""]
    lines += ["| model | version | files | shape | precision hint | from |", "|---|---|---|---|---|---|"]
    for m in report["models"]:
        files = ", ".join(f"`{f['path'].split('/', 2)[2]}`" for f in m["files"])
        shape = m["config"].get("shape") or m["config"].get("batch_size") or "the model's"
        hint = m["config"]["plugin_config"].get("INFERENCE_PRECISION_HINT", "-")
        lines.append(f"| {m['name']} | {m['version']} | {files} | `{json.dumps(shape)}` | {hint} | {m['label']} |")
    lines += ["", "## Smoke requests", "", "| model | result | request | outputs |", "|---|---|---|---|"]
    for m in report["models"]:
        s = m["smoke"]
        request = ", ".join(f"{k} {v}" for k, v in s["request"].items()) or "-"
        outputs = ", ".join(
            f"{k} {v['shape']}" + (f" cos {v['cosine']}" if v.get("cosine") is not None else "")
            for k, v in s["outputs"].items()
        )
        result = f"ran ({s['runtime']}; cos >= {s['cosine_min']})" if s["ran"] else f"skipped: {s['skipped']}"
        lines.append(f"| {m['name']} | {result} | {request} | {outputs or '-'} |")
    serve = report["serve"]
    lines += ["", "## Serve it", "", "```", serve["command"], serve["baremetal"], "```", ""]
    lines += [f"`<release>`: {serve['release']}.", ""]
    return "\n".join(lines)


def _members(found: dict[str, Path], p: PackageOvmsParams) -> dict[str, Member]:
    """The members by served name; ValueError for none, a TensorRT engine, a param naming no member, two
    members under one name."""
    if not found:
        raise ValueError("models: nothing to package (connect engines or model files to `models`)")
    both = sorted(set(p.shape) & set(p.batch_size))
    if both:
        raise ValueError(f"shape and batch_size both set for {', '.join(both)}: OVMS ignores batch_size then")
    members: dict[str, Member] = {}
    for label, path in found.items():
        member = member_from(label, path)
        if member.backend == "tensorrt":
            raise ValueError(f"package.ovms serves OpenVINO IR and ONNX; {label} is a TensorRT engine")
        name = present(p.names, found).get(label) or cfg.default_name(label)
        problem = cfg.name_problem(name)
        if problem:
            raise ValueError(f"{label}: served name {problem}; set names.{label}")
        if name in members:
            raise ValueError(f"{members[name].label} and {label} would both be served as {name!r}; set `names`")
        members[name] = member
    return members


def _entry(ctx: StageContext[PackageOvmsParams], name: str, member: Member) -> dict[str, Any]:
    p, label = ctx.params, member.label
    batch = p.batch_size.get(label)
    shape = p.shape.get(label) or (None if batch is not None else cfg.derived_shape(member.inputs))
    plugin = {**cfg.derived_plugin_config(member), **p.plugin_config}
    engine_hint = member.info.inference_precision if member.info else None
    if engine_hint and plugin.get("INFERENCE_PRECISION_HINT") != engine_hint:
        ctx.warn(
            f"{name}: plugin_config INFERENCE_PRECISION_HINT {plugin.get('INFERENCE_PRECISION_HINT')} is not the "
            f"{engine_hint} {label} was built and checked with"
        )
    built_on = member.info.device.device if member.info else None
    if built_on and member.backend == "openvino" and built_on != p.target_device:
        ctx.warn(f"{name}: served on {p.target_device}, but {label} was built and checked on {built_on}")
    return cfg.model_entry(
        name,
        p.version,
        shape=shape,
        batch_size=batch,
        nireq=p.nireq,
        target_device=p.target_device,
        plugin_config=plugin,
    )


def _raise_first(problems: list[str], what: str) -> None:
    """ValueError with the first problem (all of them printed to the stage's log first)."""
    if not problems:
        return
    for line in problems:
        print(f"{what}: {line}", flush=True)
    more = f" (and {len(problems) - 1} more: see the log)" if len(problems) > 1 else ""
    raise ValueError(problems[0] + more)


def _written(repo: Path, name: str, version: int, member: Member) -> list[dict[str, Any]]:
    """The files of `member` as written, with sha256; ValueError if one differs from the member's file."""
    rows = []
    for source in member.files:
        rel = f"{name}/{version}/{source.name}"
        digest, size = _sha256(repo / rel)
        if digest != _sha256(source)[0]:
            raise ValueError(f"{rel}: written bytes differ from {member.label}'s {source.name}")
        rows.append({"path": rel, "sha256": digest, "bytes": size})
    return rows


def _sha256(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _smoke(
    name: str,
    member: Member,
    entry: dict[str, Any],
    files: list[Path],
    inputs: Sequence[TensorInfo],
    reference: Path | None,
    p: PackageOvmsParams,
    sample: dict[str, Any] | None,
) -> SmokeResult:
    """One request through the written files with OpenVINO (what OVMS runs every model with), at the config's
    shape and, on CPU, its precision hint."""
    from stages.packaging.smoke import smoke_request

    hint = entry["plugin_config"].get("INFERENCE_PRECISION_HINT") if p.target_device == "CPU" else None
    names = {t.name for t in member.inputs}  # engine.json's dtypes: what clients are told to send
    return smoke_request(
        name,
        member,
        files,
        request_shapes(entry, inputs),
        {t.name: t.dtype for t in member.inputs} | {t.name: t.dtype for t in inputs if t.name not in names},
        reference,
        cosine_floor(member, p.smoke_cosine_min, sample is not None),
        runtime="openvino",
        inference_precision=hint if isinstance(hint, str) else None,
        sample=sample,
    )


def _model_row(
    name: str, member: Member, version: int, entry: dict[str, Any], files: list[dict[str, Any]], smoke: dict
) -> dict[str, Any]:
    return {
        "name": name,
        "label": member.label,
        "backend": member.backend,
        "served_by": "openvino",
        "version": version,
        "precision": member.precision,
        "files": files,
        "config": entry,
        "inputs": [t.model_dump(mode="json", exclude_none=True) for t in member.inputs],
        "outputs": [t.model_dump(mode="json", exclude_none=True) for t in member.outputs],
        "engine": member.info.as_json(details=False) if member.info else None,
        "smoke": smoke,
    }


def _worst_cosine(smoke: dict[str, Any]) -> float | None:
    cosines = [o["cosine"] for o in smoke["outputs"].values() if o["cosine"] is not None]
    return min(cosines) if cosines else None
