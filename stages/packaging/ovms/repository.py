"""Check an OVMS repository as the server would resolve it: one function for the package planned (before anything
is written), the package written, and a repository written by hand.

A layout is config.json's content and the repository's files by path relative to the config file's folder
(for a planned package, the artifacts they will be copied from). OVMS (v2026.3, src/modelmanager.cpp,
src/modelinstance.cpp, src/filesystem/filesystem.hpp) resolves a relative base_path against the config file's
folder and refuses one that escapes with `..`; serves the version folders whose names read as numbers above 0
(`std::stoll`: `01` is version 1, `v1` is skipped with only a warning); loads the first `.xml`+`.bin` in a
version folder, else the first `.onnx` (which first is up to the file system when there are several); loads
only the first of two entries with the same name (a warning); and ignores, with a warning, a shape it cannot
parse. Each of those quiet outcomes is a problem here, one line naming the entry and the field.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipeline.errors import one_line
from stages.packaging.ovms import config as cfg
from stages.packaging.ovms.schema import SOURCE, schema_problem
from stages.runtimes.engine_info import TensorInfo

CONFIG = "config.json"
# What `check_layout` checks, in order: the report lists these as the checks a package passed.
CHECKS = {
    "schema": f"config.json validates against OVMS's schema ({SOURCE})",
    "names": f"served names unique across models, pipelines and graphs, each {cfg.NAME_RULE}",
    "base_path": "each base_path is relative, inside the repository, and names a folder of it",
    "versions": "version folders are positive integers (canonical), the version policy's versions exist",
    "files": "each served version folder holds one IR (.xml + .bin of one stem) or one .onnx, and not both",
    "shapes": "shape and batch_size parse as OVMS parses them and fit the model file's inputs",
}
_CLOUD = ("s3://", "gs://", "azure://", "azfs://")


def check_repository(repo_dir: Path) -> list[str]:
    """Every problem of the repository at `repo_dir` (config.json and the model folders), one line each."""
    repo_dir = Path(repo_dir)
    path = repo_dir / CONFIG
    if not path.is_file():
        return [f"{CONFIG}: missing from {repo_dir}"]
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return [f"{CONFIG}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{CONFIG}: cannot read it: {one_line(str(exc), 200)}"]
    files = {p.relative_to(repo_dir).as_posix(): p for p in sorted(repo_dir.rglob("*")) if p.is_file()}
    return check_layout(config, files)


def check_layout(config: Any, files: Mapping[str, Path]) -> list[str]:
    """Every problem of `config` served from `files` (path relative to config.json's folder -> the file), one line
    each; the schema's first error alone when config.json breaks it (nothing else can be read reliably then)."""
    problem = schema_problem(config, CONFIG)
    if problem:
        return [problem]
    problems = _name_problems(config)
    for i, wrapper in enumerate(config["model_config_list"]):
        problems += _entry_problems(f"{CONFIG}: model_config_list[{i}].config", wrapper["config"], files)
    return problems


def _name_problems(config: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    listed = [("model_config_list", i, w["config"]["name"]) for i, w in enumerate(config["model_config_list"])]
    for section in ("pipeline_config_list", "mediapipe_config_list"):
        listed += [(section, i, item["name"]) for i, item in enumerate(config.get(section, []))]
    for section, i, name in listed:
        at = f"{CONFIG}: {section}[{i}]" + (".config" if section == "model_config_list" else "") + ".name"
        if name in seen:
            problems.append(f"{at}: {name!r} is also the name of {seen[name]}: OVMS serves only the first")
            continue
        seen[name] = f"{section}[{i}]"
        bad = cfg.name_problem(name) if section == "model_config_list" else None
        if bad:
            problems.append(f"{at}: {bad}")
    return problems


def _entry_problems(at: str, entry: Mapping[str, Any], files: Mapping[str, Path]) -> list[str]:
    if "custom_loader_options" in entry or "graph_path" in entry or "subconfig" in entry:
        return []  # a custom loader reads what it likes, a MediaPipe graph is not a model: not checked here
    base = entry.get("base_path")
    if base is None:
        return [f"{at}: no base_path: OVMS would serve the folder of config.json itself"]
    if base.startswith(_CLOUD) or base.startswith(("/", "\\")) or (len(base) > 1 and base[1] == ":"):
        return [f"{at}.base_path: {base!r} is not inside the repository (an absolute or cloud path)"]
    norm = posixpath.normpath(base.replace("\\", "/"))
    if norm == ".." or norm.startswith("../") or norm == ".":
        return [f"{at}.base_path: {base!r} is not a folder inside the repository"]
    if f"{norm}/graph.pbtxt" in files:
        return []  # a MediaPipe graph's folder (OVMS starts it as a graph): not checked here
    if norm in files:  # OVMS serves a base_path naming one model file as version 1 (with its .bin)
        if posixpath.splitext(norm)[1].lower() not in (".xml", ".onnx"):
            return [f"{at}.base_path: {base!r} is a file OVMS does not load as a model"]
        weights = posixpath.splitext(norm)[0] + ".bin"
        versions = {1: {posixpath.basename(r): files[r] for r in (norm, weights) if r in files}}
        problems: list[str] = []
    else:
        versions, problems = _versions(at, base, norm, files)
    if not versions:
        return problems or [f"{at}.base_path: {base!r} holds no version folder (<positive integer>/<model files>)"]
    served = _served(at, entry, versions, problems)
    for version in served:
        model = _model_file(f"{at}.base_path: {base}/{version}", versions[version], problems)
        if model is not None:
            _shape_problems(at, entry, model, problems)
    return problems


def _versions(at: str, base: str, norm: str, files: Mapping[str, Path]) -> tuple[dict[int, dict[str, Path]], list[str]]:
    """The version folders under `norm` OVMS serves, with their files; problems for the folders it skips."""
    versions: dict[int, dict[str, Path]] = {}
    problems: list[str] = []
    skipped: set[str] = set()
    for rel, path in files.items():
        if not rel.startswith(norm + "/"):
            continue
        parts = rel[len(norm) + 1 :].split("/")
        if len(parts) != 2:
            continue  # a file beside the version folders, or nested deeper: OVMS reads neither
        folder, name = parts
        number = int(folder) if folder.isdigit() else 0
        if number <= 0 or str(number) != folder:
            if folder not in skipped:
                skipped.add(folder)
                why = (
                    f"OVMS reads it as version {number}; name it {number}"
                    if number > 0
                    else "OVMS skips it: a version folder is a number above 0"
                )
                problems.append(f"{at}.base_path: {base}/{folder}/: {why}")
            continue
        versions.setdefault(number, {})[name] = path
    return versions, problems


def _served(at: str, entry: Mapping[str, Any], versions: Mapping[int, Any], problems: list[str]) -> list[int]:
    """The versions the entry's model_version_policy serves (default: the latest); a problem per missing one."""
    policy = entry.get("model_version_policy", {"latest": {"num_versions": 1}})
    have = sorted(versions)
    if "specific" in policy:
        wanted = policy["specific"]["versions"]
        for v in wanted:
            if v not in versions:
                problems.append(
                    f"{at}.model_version_policy: version {v} has no folder (has: {', '.join(map(str, have))})"
                )
        return [v for v in wanted if v in versions]
    if "latest" in policy:
        return have[-policy["latest"]["num_versions"] :]
    return have


def _model_file(where: str, found: Mapping[str, Path], problems: list[str]) -> Path | None:
    """The file OVMS loads from a version folder, or None with the problem said."""
    by = {ext: sorted(n for n in found if n.lower().endswith(ext)) for ext in (".xml", ".bin", ".onnx")}
    for ext, names in by.items():
        if len(names) > 1:
            problems.append(f"{where}: holds {len(names)} {ext} files ({', '.join(names)}): OVMS loads any one")
            return None
    if by[".xml"]:
        xml = by[".xml"][0]
        if not by[".bin"] or Path(by[".bin"][0]).stem != Path(xml).stem:
            problems.append(f"{where}: {xml} has no {Path(xml).stem}.bin beside it")
            return None
        if by[".onnx"]:
            problems.append(f"{where}: holds an IR ({xml}) and {by['.onnx'][0]}: OVMS serves the IR only")
            return None
        return found[xml]
    if by[".onnx"]:
        return found[by[".onnx"][0]]
    problems.append(f"{where}: holds no IR (.xml + .bin) or .onnx (has: {', '.join(sorted(found)) or 'nothing'})")
    return None


def _shape_problems(at: str, entry: Mapping[str, Any], model: Path, problems: list[str]) -> None:
    """shape and batch_size against the inputs of the file OVMS loads (read as OpenVINO or onnx see them)."""
    if "shape" not in entry and "batch_size" not in entry:
        return
    try:
        inputs = model_inputs(model)
    except Exception as exc:  # onnx's and OpenVINO's own errors, said in one line
        problems.append(f"{at}: cannot read the inputs of {model.name}: {one_line(exc, 200)}")
        return
    shape = entry.get("shape")
    if isinstance(shape, str):
        if shape != "auto":
            if len(inputs) != 1:
                problems.append(
                    f"{at}.shape: {shape!r} names no input, which fits a model of one input; {model.name} has "
                    f"{len(inputs)} ({', '.join(t.name for t in inputs)}): give one shape per input name"
                )
            else:
                _fits(f"{at}.shape", shape, inputs[0], problems)
    elif isinstance(shape, dict):
        names = {t.name: t for t in inputs}
        for name, text in shape.items():
            if name not in names:
                problems.append(
                    f"{at}.shape.{name}: {model.name} has no input {name!r} (it has: {', '.join(names) or 'none'})"
                )
            elif text != "auto":
                _fits(f"{at}.shape.{name}", text, names[name], problems)
    batch = entry.get("batch_size")
    if batch is None or batch == "auto":
        return
    if shape is not None:
        problems.append(f"{at}.batch_size: OVMS ignores it when shape is set; put the batch in shape")
        return
    try:
        dim = cfg.parse_batch_size(batch)
    except ValueError as exc:
        problems.append(f"{at}.batch_size: {exc}: OVMS would ignore it")
        return
    first = inputs[0] if inputs else None
    if first is not None and first.dims and not cfg.within(dim, cfg.model_dim(first.dims[0])):
        problems.append(
            f"{at}.batch_size: {batch!r} is outside {model.name}'s batch dim {first.dims[0]} (input {first.name})"
        )


def _fits(at: str, text: str, tensor: TensorInfo, problems: list[str]) -> None:
    try:
        dims = cfg.parse_shape(text)
    except ValueError as exc:
        problems.append(f"{at}: {exc}: OVMS would ignore it")
        return
    if tensor.dims is None:
        return  # the model's rank is dynamic: any shape may fit
    model = "[" + ",".join(str(d) for d in tensor.dims) + "]"
    if len(dims) != len(tensor.dims):
        problems.append(f"{at}: {text!r} has {len(dims)} dims, input {tensor.name} has {len(tensor.dims)} {model}")
        return
    for i, (mine, theirs) in enumerate(zip(dims, tensor.dims)):
        if not cfg.within(mine, cfg.model_dim(theirs)):
            problems.append(
                f"{at}: {text!r} dim {i} is {cfg.dim_text(mine)}, outside input {tensor.name}'s {theirs} {model}"
            )
            return


def model_inputs(model: Path) -> Sequence[TensorInfo]:
    """The inputs of a model file as OVMS sees it: an IR's partial shapes, an ONNX graph's inputs."""
    from stages.packaging.members import model_io

    return model_io(model)[0]


def request_shapes(entry: Mapping[str, Any], inputs: Sequence[TensorInfo]) -> dict[str, tuple[int, ...]]:
    """One request the entry's shape allows, per input (inputs it leaves out: the model's own dims)."""
    shape = entry.get("shape")
    named = {inputs[0].name: shape} if isinstance(shape, str) and len(inputs) == 1 else dict(shape or {})
    shapes = {}
    for t in inputs:
        text = named.get(t.name)
        if text and text != "auto":
            dims = cfg.parse_shape(text)
        elif t.dims is not None:
            dims = tuple(cfg.model_dim(d) for d in t.dims)
        else:
            raise ValueError(f"input {t.name} has a dynamic rank and no shape: no request can be made")
        shapes[t.name] = cfg.request_shape(dims)
    return shapes
