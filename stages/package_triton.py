"""package.triton: built engines -> one Triton model repository, checked against Triton's rules before it is written.

`<repository>/<model>/config.pbtxt` + `<repository>/<model>/<version>/<file>` from the `models` fan-in
(build.openvino, build.onnxruntime, build.tensorrt outputs, or bare .onnx files / IR directories):

- OpenVINO IR -> `backend: "openvino"`, model.xml + model.bin, KIND_CPU (Triton's OpenVINO backend runs on CPU).
- ONNX -> `backend: "onnxruntime"`, model.onnx, KIND_CPU (KIND_GPU when its engine.json says it was built for a GPU).
- TensorRT -> `platform: "tensorrt_plan"`, KIND_GPU. Plans that differ only in their GPU are one model: each
  under its own name (`model.T4.plan`), `cc_model_filenames` keyed by each plan's compute capability, the default
  file a hardware-compatible plan when there is one, else the first in recipe order (`packaging.triton.plan`).

Every check runs before anything is written (`packaging.triton`: the config parses into Triton's proto, Triton
core's rules, the backend's rules against the engine, the layout); the repository is then written, read back
and checked again with `check_repository` (an .onnx and an IR are then read from the written files), and each
model answers one smoke request (`packaging.smoke`: the written files in their runtime, compared with the
`reference` ONNX when given; TensorRT plans need their GPU and are reported as skipped). A failure is one line,
`package.triton: <model>/config.pbtxt: <field>: <what>`, and the stage fails; the log lists every problem.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from pydantic import Field

from pipeline.schema import Strict
from pipeline.stage import InputSpec, OutputSpec, Params, Stage, StageContext
from stages.packaging.labels import present, unknown_label
from stages.packaging.smoke import SMOKE_GATE, SMOKE_INPUTS, data_sample

if TYPE_CHECKING:
    from stages.packaging.smoke import SmokeResult
    from stages.packaging.triton.plan import ModelPlan

CHECKS = (
    "L0: config.pbtxt parses into inference.ModelConfig (protobuf text format)",
    "L1: Triton core's rules (ValidateModelConfig, ValidateIOShape, ValidateInstanceGroup, ensembles)",
    "L2: the backend's rules against the engine (ONNX graph, OpenVINO IR, TensorRT engine.json)",
    "layout: version folders, default and cc_model_filenames files, names",
)


class DynamicBatching(Strict):
    """Triton's dynamic batcher for every model that batches."""

    preferred_batch_size: list[int] = Field(
        default_factory=list, description="batch sizes the batcher aims for (each in 1..max_batch_size); [] for none"
    )
    max_queue_delay_microseconds: int = Field(
        0, ge=0, description="how long a request may wait for others to batch with (0: Triton's default, none)"
    )


class PackageTritonParams(Params):
    names: dict[str, str] = Field(
        default_factory=dict,
        description="member label -> model name; default: the label with characters other than letters, digits "
        "and _ turned to _ ('engine@openvino-fp32' -> 'engine_openvino_fp32'), a TensorRT group's label without "
        "its GPU ('trt@fp16-T4' -> 'trt_fp16')",
    )
    max_batch_size: int | None = Field(
        None,
        ge=0,
        description="None: from the engine (every I/O's first dim dynamic: the largest batch it takes, and dims "
        "drop that dim; else 0 and dims are the full shape); a number: this for every model",
    )
    instance_count: int = Field(1, ge=1, description="instances of each model (instance_group count)")
    dynamic_batching: bool | DynamicBatching = Field(
        False,
        description="true, or {preferred_batch_size, max_queue_delay_microseconds}: Triton's dynamic batcher on "
        "every model that batches; false: none",
    )
    version: int = Field(1, ge=1, description="the version folder the files go in")
    smoke_cosine_min: float | None = Field(None, ge=-1.0, le=1.0, description=SMOKE_GATE)


class PackageTriton(Stage[PackageTritonParams]):
    """Write one Triton model repository from built engines, checked against Triton's rules before writing."""

    kind = "package.triton"
    version = "1"
    summary = "Package built engines as one Triton model repository (configs checked against Triton's rules)"
    inputs = {
        "models": InputSpec(many=True, description="built engines (or .onnx files / IR directories) to serve"),
        **SMOKE_INPUTS,
    }
    outputs = {
        "repository": OutputSpec("repository", is_dir=True, description="the Triton model repository"),
        "report": OutputSpec("package.json", description="models, files with sha256, configs, checks, smoke results"),
        "markdown": OutputSpec("package.md", description="the models table and the docker run line that serves it"),
    }
    packages = ("tritonclient", "protobuf", "numpy", "onnx", "onnxruntime")
    extra = "serve"
    deliverable = True

    def members_problem(
        self, params: PackageTritonParams, members: Mapping[str, list[str]]
    ) -> tuple[tuple[str, ...], str] | None:
        return unknown_label(params, ("names",), members)

    def run(self, ctx: StageContext[PackageTritonParams]) -> dict[str, Any]:
        from stages.packaging.members import member_from
        from stages.packaging.triton.plan import plan_models
        from stages.packaging.triton.repository import check_models, check_repository

        p = ctx.params
        given = ctx.members("models")
        if not given:
            raise ValueError("models: no engine is connected")
        members = [member_from(label, path) for label, path in given.items()]
        batching = p.dynamic_batching
        dynamic = batching.model_dump() if isinstance(batching, DynamicBatching) else ({} if batching else None)
        names = present(p.names, given)
        plans, problems = plan_models(members, names, p.max_batch_size, p.instance_count, dynamic, p.version)
        served = {k: m for plan in plans for k, m in plan.served_members().items()}
        if not problems:
            problems = check_models([plan.folder() for plan in plans], served)
        _fail_on(problems, "before writing")
        repo = ctx.output("repository")
        files = {plan.name: write_model(plan, repo) for plan in plans}
        # Read back: an .onnx and an IR are read from the written files; a plan only engine.json describes.
        plans_only = {k: m for k, m in served.items() if m.backend == "tensorrt"}
        _fail_on(check_repository(repo, plans_only), "in the written repository")
        reference, sample = ctx.optional_path("reference"), data_sample(ctx.optional_dataset("data"))
        smoke = {plan.name: _smoke(plan, repo, reference, p.smoke_cosine_min, sample) for plan in plans}
        report = _report(plans, files, smoke)
        ctx.output("report").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        ctx.output("markdown").write_text(markdown(report))
        for plan in plans:
            for note in plan.notes:
                print(f"{plan.name}: {note}", flush=True)
            for warning in plan.warnings:
                ctx.warn(f"{plan.name} {warning}")
        return {
            "models": len(plans),
            "files": sum(len(f) for f in files.values()),
            "smoke_ran": sum(1 for s in smoke.values() if s.ran),
            "smoke_skipped": sum(1 for s in smoke.values() if not s.ran),
        }


def _fail_on(problems: list[str], when: str) -> None:
    """Raise one line for `problems` (every one is printed to the stage's log first)."""
    if not problems:
        return
    for line in problems:
        print(f"problem ({when}): {line}", flush=True)
    more = f" (and {len(problems) - 1} more: see the log)" if len(problems) > 1 else ""
    raise ValueError(f"package.triton: {problems[0]}{more}")


def write_model(plan: ModelPlan, repo: Path) -> list[dict[str, Any]]:
    """Write one model folder: config.pbtxt and the version folder's files; each file with its sha256."""
    folder = repo / plan.name
    version = folder / str(plan.version)
    version.mkdir(parents=True)
    (folder / "config.pbtxt").write_text(plan.config)
    written = []
    for f in plan.files:
        target = version / f.name
        shutil.copyfile(f.source, target)
        written.append(
            {
                "path": f"{plan.name}/{plan.version}/{f.name}",
                "sha256": _sha256(target),
                "bytes": target.stat().st_size,
                "from": f.member.label if f.member is not None else plan.members[0].label,
            }
        )
    return written


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _smoke(
    plan: ModelPlan, repo: Path, reference: Path | None, cosine_min: float | None, sample: dict[str, Any] | None
) -> SmokeResult:
    """One request through the written files of a model; a TensorRT group is skipped (each plan needs its GPU)."""
    from stages.packaging.smoke import DEFAULT_PRECISION, SmokeResult, cosine_floor, smoke_request
    from stages.packaging.triton.plan import request_shapes

    if len(plan.members) > 1:
        gpus = ", ".join(m.accelerator or f"sm {m.compute_capability}" for m in plan.members)
        return SmokeResult(
            plan.name, False, f"a TensorRT group of {len(plan.members)} plans ({gpus}): each runs only on its own GPU"
        )
    member = plan.members[0]
    files = [repo / plan.name / str(plan.version) / f.name for f in plan.files]
    try:
        return smoke_request(
            plan.name,
            member,
            files,
            request_shapes(plan),
            {t.name: t.dtype for t in member.inputs},
            reference,
            cosine_floor(member, cosine_min, sample is not None),
            sample=sample,
            inference_precision=plan.inference_precision or DEFAULT_PRECISION,  # as the backend will run it here
        )
    except ValueError as exc:
        raise ValueError(f"package.triton: smoke request: {exc}") from None


def _report(
    plans: list[ModelPlan], files: dict[str, list[dict[str, Any]]], smoke: dict[str, SmokeResult]
) -> dict[str, Any]:
    models = []
    for plan in plans:
        models.append(
            {
                "name": plan.name,
                "backend": plan.backend,
                "members": [
                    {
                        "label": m.label,
                        "precision": m.precision,
                        "compute_capability": m.compute_capability,
                        "accelerator": m.accelerator,
                    }
                    for m in plan.members
                ],
                "version": plan.version,
                "max_batch_size": plan.max_batch_size,
                "instance_group": {"kind": plan.instance_kind, "count": plan.instance_count},
                "default_model_filename": plan.default_file,
                "files": files[plan.name],
                "config": plan.config,
                "notes": list(plan.notes),
                "warnings": list(plan.warnings),
                "checks": {"run": list(CHECKS), "problems": []},
                "smoke": smoke[plan.name].row(),
            }
        )
    return {"repository": "repository", "models": models, "serve": serve_command(plans)}


def serve_command(plans: list[ModelPlan]) -> dict[str, str]:
    """The `docker run` line that serves the repository, and which Triton release to put in it."""
    gpu = any(plan.instance_kind == "KIND_GPU" for plan in plans)
    trt = sorted(
        {m.info.toolchain["tensorrt"] for p in plans for m in p.members if m.info and "tensorrt" in m.info.toolchain}
    )
    line = (
        "docker run --rm " + ("--gpus all " if gpu else "") + "-p 8000:8000 -p 8001:8001 -p 8002:8002 "
        '-v "$PWD/repository:/models" nvcr.io/nvidia/tritonserver:<release>-py3 '
        "tritonserver --model-repository=/models --disable-auto-complete-config"
    )
    release = (
        f"a release whose TensorRT is {', '.join(trt)} (a plan loads only in the TensorRT it was built with)"
        if trt
        else "any release with the onnxruntime and openvino backends"
    )
    return {"command": line, "release": release}


def markdown(report: dict[str, Any]) -> str:
    """package.md: the models, their files and serving settings, the smoke results, and how to serve it."""
    count = len(report["models"])
    lines = [f"# Triton model repository ({count} model{'s' if count != 1 else ''})", ""]
    lines += ["| model | backend | files | max batch | instances | from |", "|---|---|---|---|---|---|"]
    for m in report["models"]:
        files = ", ".join(f"`{f['path'].split('/', 1)[1]}`" for f in m["files"])
        group = m["instance_group"]
        members = ", ".join(x["label"] for x in m["members"])
        lines.append(
            f"| {m['name']} | {m['backend']} | {files} | {m['max_batch_size']} | {group['count']} x {group['kind']} "
            f"| {members} |"
        )
    lines += ["", "## Smoke requests", "", "| model | result | request | outputs |", "|---|---|---|---|"]
    for m in report["models"]:
        s = m["smoke"]
        request = ", ".join(f"{k} {v}" for k, v in s["request"].items()) or "-"
        outputs = ", ".join(
            f"{k} {v['shape']}" + (f" cos {v['cosine']}" if v.get("cosine") is not None else "")
            for k, v in s["outputs"].items()
        )
        result = f"ran ({s['runtime']})" if s["ran"] else f"skipped: {s['skipped']}"
        lines.append(f"| {m['name']} | {result} | {request} | {outputs or '-'} |")
    notes = [f"- {m['name']}: {n}" for m in report["models"] for n in (*m["notes"], *m["warnings"])]
    if notes:
        lines += ["", "## Decisions", "", *notes]
    serve = report["serve"]
    lines += ["", "## Serve it", "", "```", serve["command"], "```", "", f"`<release>`: {serve['release']}.", ""]
    return "\n".join(lines)
