"""The Triton fixture repositories (triton_fixtures/<class>/), made whole in a test's folder: git keeps no ONNX
file, so the ones a fixture's `make` names are built here (a Relu, with a static or a dynamic batch)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from graphs import model_of, save
from onnx import TensorProto, helper

FIXTURES = Path(__file__).parent / "triton_fixtures"
CLASSES = sorted(p.name for p in FIXTURES.iterdir() if (p / "fixture.json").is_file())


def relu(batch: int | str) -> object:
    """x[batch, 4] -Relu-> y[batch, 4]."""
    return model_of(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
        [],
    )


MAKE = {"static_batch": lambda: relu(1), "dynamic_batch": lambda: relu("batch")}


def meta(name: str) -> dict:
    return json.loads((FIXTURES / name / "fixture.json").read_text())


def materialize(name: str, dest: Path) -> Path:
    """Fixture `name`'s repository copied to `dest`, its ONNX files built."""
    shutil.copytree(FIXTURES / name / "repository", dest)
    for rel, what in meta(name).get("make", {}).items():
        save(MAKE[what](), dest / rel)
    return dest
