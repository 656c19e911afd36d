"""The engine stays light (importing every pipeline module, and every kind module, pulls in no toolchain), and its
folders keep their layers: each folder imports only the folders below it (lazy imports inside functions count)."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pipeline

HEAVY = [
    "torch",
    "tensorflow",
    "keras",
    "tf2onnx",
    "paddle",
    "torchvision",
    "onnx",
    "onnxruntime",
    "onnxsim",
    "onnx_graphsurgeon",
    "openvino",
    "tensorrt",
    "nncf",
    # the remote cache's libraries: loaded only when a local miss or an upload needs the remote
    "fsspec",
    "s3fs",
    "botocore",
    "cryptography",
    # validate's plots: drawn when it runs, never when it is listed, planned or served from the cache
    "matplotlib",
    # the serving configs' checks: loaded by the packaging stages when they run
    "tritonclient",
    "google.protobuf",
    "jsonschema",
]


def _imported_after(code: str) -> list[str]:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_engine_modules_import_no_toolchain() -> None:
    modules = [m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.")]
    assert "pipeline.run.executor" in modules and "pipeline.cli.main" in modules and "pipeline.backends.ray" in modules
    assert _imported_after("\n".join(f"import {m}" for m in modules)) == []


def test_stage_kind_modules_import_no_toolchain() -> None:
    code = "from pipeline.recipe.registry import Registry\nr = Registry()\nfor name in r.names():\n    r.get(name)\n"
    assert _imported_after(code) == []


def test_dataset_kind_modules_import_no_numpy() -> None:
    """The planner loads every dataset kind a recipe names on every run, cached or not: numpy (0.15 s here)
    and Pillow wait for the reader."""
    code = (
        "from pipeline.recipe.registry import Registry\nr = Registry()\n"
        "assert len(r.datasets.names()) >= 5\n"
        "for name in r.datasets.names():\n    r.datasets.get(name)\n"
    )
    probe = code + "\nimport sys\nprint(sorted(m for m in ('numpy', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == "[]"


REPO = Path(__file__).resolve().parents[1]

# Who may import whom, by folder of `pipeline/` ("top" is the contract a kind or plugin imports: stage,
# datakind, schema, errors, status, faults). Data flows recipe -> keys -> run -> backends / cache / remote;
# ops are the typed operations cli calls; report reads runs; nothing below imports what is above it.
MAY_IMPORT = {
    "top": {"top"},
    "cache": {"top"},
    "recipe": {"top", "cache"},
    "keys": {"top", "cache", "recipe"},
    "remote": {"top", "cache"},
    "backends": {"top", "cache", "keys", "remote"},
    "backends.ray": {"top", "cache", "keys", "remote", "backends"},
    "run": {"top", "cache", "recipe", "keys", "remote", "backends", "backends.ray"},
    "report": {"top", "cache", "recipe", "run"},
    "ops": {"top", "cache", "recipe", "keys", "remote", "run"},
    "cli": {"top", "cache", "recipe", "keys", "remote", "backends", "run", "report", "ops"},
}
# What a stage kind may use of the engine: the contract, and the registry (to open a dataset by its kind).
STAGES_MAY_IMPORT = {"top", "recipe.registry"}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _folder(module: str) -> str:
    """`pipeline.cache.views` -> "cache", `pipeline.backends.ray.driver` -> "backends.ray", `pipeline.stage`: "top"."""
    parts = module.split(".")[1:]
    if not parts or (REPO / "pipeline" / f"{parts[0]}.py").is_file():
        return "top"
    return "backends.ray" if parts[:2] == ["backends", "ray"] else parts[0]


def _imported(path: Path) -> set[str]:
    """Every `pipeline` module a file imports, at the top or inside a function (`from pipeline.x import y`
    counts y when it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != "pipeline":
                continue
            while parts and not (REPO.joinpath(*parts).with_suffix(".py").is_file() or REPO.joinpath(*parts).is_dir()):
                parts.pop()
            if parts:
                found.add(".".join(parts))
    return found


def test_each_pipeline_folder_imports_only_the_folders_below_it() -> None:
    problems = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        module = _module_name(path)
        mine = _folder(module)
        assert mine in MAY_IMPORT, f"{module}: a new folder of pipeline/ needs its rule in MAY_IMPORT"
        for target in sorted(_imported(path)):
            theirs = _folder(target)
            if theirs != mine and theirs not in MAY_IMPORT[mine]:
                problems.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert problems == []


def test_stage_kinds_use_only_the_engine_contract() -> None:
    problems = []
    for path in sorted((REPO / "stages").rglob("*.py")):
        for target in sorted(_imported(path)):
            if _folder(target) != "top" and target.removeprefix("pipeline.") not in STAGES_MAY_IMPORT:
                problems.append(f"{_module_name(path)} imports {target}")
    assert problems == []


def test_the_engine_never_imports_a_stage_kind() -> None:
    found = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "stages":
                found.append(f"{_module_name(path)} imports {node.module}")
            elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "stages" for a in node.names):
                found.append(f"{_module_name(path)} imports stages")
    assert found == []


def test_the_rules_catch_an_upward_import(tmp_path: Path) -> None:
    """The walk above sees lazy imports and `from pipeline.x import module`: checked on the case it exists for."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from pipeline.remote import store\n    import pipeline.run.plan\n")
    assert _imported(probe) == {"pipeline.remote", "pipeline.remote.store", "pipeline.run.plan"}
    assert _folder("pipeline.remote.store") not in MAY_IMPORT["cache"]
