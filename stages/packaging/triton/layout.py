"""A model folder's layout: version folders, the files Triton loads from them, names and per-GPU plans.

Triton is lenient where a mistake is silent, so what it only warns about is an error here:

- version folders: core `VersionsToLoad` (model_lifecycle.cc) skips `01` (leading zeros) and `v1` (not an
  integer) with a warning, and logs an error for a `specific` version with no folder, then serves the rest;
  `1a` loads as version 1 (`std::stoll`). Here a version folder is a positive integer without leading zeros,
  and every `specific` version has its folder. No loadable version at all fails the load ("at least one
  version must be available").
- files: the default file (`default_model_filename`, or the backend's: model.plan, model.onnx, model.xml...)
  and every `cc_model_filenames` value must be in each loaded version folder (an IR's .bin beside its .xml).
- `cc_model_filenames` is keyed by the GPU's compute capability, "<major>.<minor>"; the TensorRT backend
  looks the running GPU's up and falls back to the default file without a word (model_state.cc), so a key
  that is a GPU name, or a plan under another plan's capability, loads the wrong plan (server#4657). With the
  engines known (`members`), every plan's compute capability must map to it, and two plans for one capability
  are an error (T4 and RTX 2080 are both 7.5: Triton can serve one of them, server#5164).
- `name`, when given, equals the folder (`model_repository_manager.cc`: "directory name must equal model name").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from stages.packaging.members import Member
from stages.packaging.triton.core import DEFAULT_FILE, Identity
from stages.packaging.triton.parse import Problems

# Subfolders of a model folder that are not versions (core constants.h: warmup, initial_state, configs).
NOT_VERSIONS = frozenset({"warmup", "initial_state", "configs"})
_VERSION = re.compile(r"^[1-9][0-9]*$")
_CC = re.compile(r"^[0-9]+\.[0-9]+$")
_STOLL = re.compile(r"^\s*[+-]?[0-9]+")


@dataclass(frozen=True)
class ModelFolder:
    """A model folder as the checks see it, written on disk or held in memory before it is."""

    name: str
    config: str | None  # config.pbtxt's text; None when there is none
    versions: Mapping[str, frozenset[str]]  # each subfolder but NOT_VERSIONS -> the names it holds


def loaded_versions(folder: ModelFolder, config: Any, p: Problems) -> list[str]:
    """The version folders Triton would serve under the config's version policy; every folder that is not a
    positive integer without leading zeros, and every `specific` version without a folder, is a problem."""
    valid: dict[int, str] = {}
    for sub in sorted(folder.versions):
        if _VERSION.match(sub):
            valid[int(sub)] = sub
            continue
        where = Problems(f"{folder.name}/{sub}", p.lines)
        number = _STOLL.match(sub)
        if len(sub) > 1 and sub[0] == "0":
            where.add("", "a version folder with a leading zero: Triton skips it with only a warning")
        elif number is not None:
            read = int(number.group(0))
            where.add("", f"not a positive integer version folder (Triton would read it as version {read})")
        else:
            where.add("", "not an integer version folder: Triton skips it with only a warning")
    policy = config.version_policy
    if policy.HasField("specific"):
        chosen = []
        for i, version in enumerate(policy.specific.versions):
            if version in valid:
                chosen.append(valid[version])
            else:
                p.add(
                    f"version_policy.specific.versions[{i}]",
                    f"version {version} has no folder {folder.name}/{version}/ (Triton logs an error and serves "
                    "without it)",
                )
    elif policy.HasField("all"):
        chosen = [valid[v] for v in sorted(valid)]
    else:
        keep = policy.latest.num_versions if policy.HasField("latest") else 1
        if keep < 1:  # model_lifecycle.cc VersionsToLoad: no version chosen, the load fails
            Problems(folder.name, p.lines).add(
                "version_policy.latest.num_versions",
                f"{keep}: no version is served (Triton: at least one version must be available)",
            )
        chosen = [valid[v] for v in sorted(valid, reverse=True)[: max(keep, 1)]]
    if not valid:
        Problems(folder.name, p.lines).add("", "no version folder (Triton: at least one version must be available)")
    return sorted(chosen, key=int)


def served_files(
    folder: ModelFolder, config: Any, ident: Identity, members: Mapping[str, Member], p: Problems
) -> list[tuple[str, str]]:
    """(version, file) of every file Triton may load, after checking they exist and (with `members`) that
    `cc_model_filenames` maps each plan's compute capability to it. `p` is the config's problems."""
    if config.name and config.name != folder.name:
        p.add(
            "name",
            f"{config.name!r} is not the folder's name {folder.name!r} (Triton: directory name must equal model name)",
        )
    versions = loaded_versions(folder, config, p)
    cc_files = dict(sorted(config.cc_model_filenames.items()))
    for key in cc_files:
        if not _CC.match(key):
            p.add(
                f'cc_model_filenames["{key}"]',
                "not a compute capability: Triton looks up the GPU's '<major>.<minor>' (\"8.9\"), so this entry "
                "is never used and the default file loads silently (server#4657)",
            )
    if ident.platform == "ensemble" or ident.backend not in DEFAULT_FILE:
        return []
    served: list[tuple[str, str]] = []
    for version in versions:
        held = folder.versions[version]
        wanted = [ident.default_model_filename] + [f for f in cc_files.values() if f != ident.default_model_filename]
        for file in dict.fromkeys(wanted):
            field = "default_model_filename" if file == ident.default_model_filename else _cc_field(cc_files, file)
            if file not in held:
                p.add(
                    field,
                    f"{file} is not in {folder.name}/{version}/ (it holds {', '.join(sorted(held)) or 'nothing'})",
                )
                continue
            served.append((version, file))
            if ident.backend == "openvino" and file.endswith(".xml") and file[:-4] + ".bin" not in held:
                p.add(field, f"{file[:-4]}.bin is not beside {file} in {folder.name}/{version}/ (OpenVINO reads it)")
        _check_capabilities(folder.name, version, held, cc_files, members, p)
    return served


def _cc_field(cc_files: Mapping[str, str], file: str) -> str:
    return next(f'cc_model_filenames["{k}"]' for k, v in cc_files.items() if v == file)


def _check_capabilities(
    model: str,
    version: str,
    held: frozenset[str],
    cc_files: Mapping[str, str],
    members: Mapping[str, Member],
    p: Problems,
) -> None:
    """With the engines known: the compute capability of every plan in the version folder maps to it (a plan
    no entry names is never loaded), no key maps to a plan built for another, and no two plans claim one."""
    prefix = f"{model}/{version}/"
    built: dict[str, str] = {}  # compute capability -> the plan built for it
    for key, member in members.items():
        file = key[len(prefix) :]
        if not key.startswith(prefix) or file not in held or member.backend != "tensorrt":
            continue
        cc = member.compute_capability
        if cc is None:
            continue
        if cc in built:
            p.add(
                "cc_model_filenames",
                f"{built[cc]} and {file} are both built for compute capability {cc}: Triton loads one plan per "
                "compute capability (server#5164); keep one",
            )
            continue
        built[cc] = file
        mapped = cc_files.get(cc)
        if mapped is None:
            p.add("cc_model_filenames", f"no entry for compute capability {cc}, which {file} was built for")
        elif mapped != file:
            p.add(f'cc_model_filenames["{cc}"]', f"{mapped}, but {file} is the plan built for {cc}")
    for key, file in cc_files.items():
        plan = members.get(prefix + file)
        if plan is not None and plan.compute_capability not in (None, key) and _CC.match(key):
            p.add(
                f'cc_model_filenames["{key}"]',
                f"{file} was built for compute capability {plan.compute_capability}, not {key} (Triton would load "
                "it on such a GPU and fail; server#4657)",
            )
