"""The engine stays light: importing every pipeline module (and every kind module) pulls in no toolchain."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pipeline

HEAVY = [
    "torch",
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
]


def _imported_after(code: str) -> list[str]:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_engine_modules_import_no_toolchain() -> None:
    modules = [m.name for m in pkgutil.iter_modules(pipeline.__path__, "pipeline.")]
    assert "pipeline.executor" in modules and "pipeline.cli" in modules
    assert _imported_after("\n".join(f"import {m}" for m in modules)) == []


def test_stage_kind_modules_import_no_toolchain() -> None:
    code = "from pipeline.registry import Registry\nr = Registry()\nfor name in r.names():\n    r.get(name)\n"
    assert _imported_after(code) == []


def test_dataset_kind_modules_import_no_numpy() -> None:
    """The planner loads every dataset kind a recipe names on every run, cached or not: numpy (0.15 s here)
    and Pillow wait for the reader."""
    code = (
        "from pipeline.registry import Registry\nr = Registry()\n"
        "assert len(r.datasets.names()) >= 5\n"
        "for name in r.datasets.names():\n    r.datasets.get(name)\n"
    )
    probe = code + "\nimport sys\nprint(sorted(m for m in ('numpy', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == "[]"
