"""`check_repository`: every check of this package over a Triton model repository, one line per problem.

The same checks run on a repository held in memory (`check_models`: what package.triton is about to write)
and on one on disk (`check_repository`: what it wrote, or a repository written by hand). For each model
folder, in order: L0 parse, L1 core rules, the backend's rules on the config, the layout (versions and the
files Triton loads), then L2 each loaded file against the engine it is: the `Member` given for it, else, for
a repository on disk, the ONNX graph or OpenVINO IR read from the file itself (a TensorRT plan cannot be read
without TensorRT: give its engine.json as a member). Ensembles are checked against the models they call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from pipeline.errors import one_line
from stages.packaging.members import Member, member_from
from stages.packaging.triton import backends, core, ensemble, layout, rules
from stages.packaging.triton.layout import NOT_VERSIONS, ModelFolder
from stages.packaging.triton.parse import Problems, parse_config

CONFIG = "config.pbtxt"


def check_repository(repo_dir: Path, members: Mapping[str, Member] | None = None) -> list[str]:
    """The problems of the repository at `repo_dir` (empty: it passes). `members`: the engine each served file
    is, keyed by its path in the repository (`<model>/<version>/<file>`, e.g. "resnet/1/model.T4.plan"); an
    .onnx or .xml without one is read from the file."""
    repo_dir = Path(repo_dir)
    if not repo_dir.is_dir():
        return [f"{repo_dir}: not a directory"]
    folders = read_repository(repo_dir)
    if not folders:
        return [f"{repo_dir.name}: no model folder"]
    return check_models(folders, members or {}, repo_dir)


def read_repository(repo_dir: Path) -> list[ModelFolder]:
    """Each model folder under `repo_dir` (hidden ones skipped), as the checks see it."""
    folders = []
    for model in sorted(p for p in Path(repo_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
        config = model / CONFIG
        versions = {
            sub.name: frozenset(e.name for e in sub.iterdir())
            for sub in sorted(model.iterdir())
            if sub.is_dir() and sub.name not in NOT_VERSIONS
        }
        folders.append(ModelFolder(model.name, config.read_text() if config.is_file() else None, versions))
    return folders


def check_models(
    folders: Sequence[ModelFolder], members: Mapping[str, Member], repo_dir: Path | None = None
) -> list[str]:
    """The problems of these model folders; `repo_dir`: where they are on disk (None: held in memory, so only
    `members` describe the engines)."""
    lines: list[str] = []
    configs: dict[str, Any] = {}
    for folder in folders:
        where = f"{folder.name}/{CONFIG}"
        if folder.config is None:
            lines.append(f"{folder.name}: no {CONFIG} (this checker does not guess what Triton would auto-complete)")
            continue
        config, problems = parse_config(folder.config, where)
        lines += problems
        if config is None:
            continue
        configs[folder.name] = config
        first = min((v for v in folder.versions if v.isdigit()), key=int, default=None)
        files = folder.versions[first] if first is not None else frozenset()
        ident, _ = core.identity(config, folder.name, files)
        lines += rules.check_config(config, where, folder.name, files)
        p = Problems(where, lines)
        backends.check_backend(config, ident, p)
        served = layout.served_files(folder, config, ident, members, p)
        plans = sum(1 for _, f in served if f.endswith((".plan", ".engine")))
        for version, file in served:
            key = f"{folder.name}/{version}/{file}"
            member = members.get(key)
            if member is None and repo_dir is not None:
                member = _read_member(key, repo_dir / key, p)
            if member is not None:
                backends.check_artifact(config, ident, member, p, file if plans > 1 else None)
    for name, config in configs.items():
        ensemble.check_ensemble_steps(config, configs, Problems(f"{name}/{CONFIG}", lines))
    present = {f"{f.name}/{v}/{e}" for f in folders for v, held in f.versions.items() for e in held}
    for key in members:
        if key not in present:
            lines.append(f"{key}: an engine is given for it, but the repository has no such file")
    return list(dict.fromkeys(lines))


def _read_member(key: str, path: Path, p: Problems) -> Member | None:
    """The Member an .onnx or .xml file is, read from the file; None for what cannot be read here (a plan)."""
    if path.suffix.lower() not in (".onnx", ".xml"):
        return None
    try:
        return member_from(key, path)
    except Exception as exc:  # onnx's and OpenVINO's own errors: the file does not load, said in one line
        Problems(key, p.lines).add("", f"cannot be read: {one_line(exc, 200)}")
        return None
