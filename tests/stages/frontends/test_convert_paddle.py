"""convert.openvino on PaddlePaddle models built here with paddle.jit.save: the directory or the model file
with its weights beside it converts and matches Paddle's own output; a model without its weights, or in the
PIR format this OpenVINO cannot read, is one line; and through the engine, changing only the .pdiparams
beside a .pdmodel reruns the conversion (the weights are a discovered input of the stage)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness import Project, rows, run_stage

# Never imported here: paddle's native library crashes a process that loaded TensorFlow's first (other test
# modules do); the models are saved in child processes and the stage runs Paddle in one of its own.
if importlib.util.find_spec("paddle") is None:
    pytest.skip("paddlepaddle is the paddle extra", allow_module_level=True)

from stages.convert_openvino import ConvertOpenvino  # noqa: E402

SPEC = {"tensors": {"x": {"shape": ["batch", 1, 8, 8]}}, "dims": {"batch": {"min": 1, "opt": 4, "max": 16}}}
# Saved in a child process: the format (legacy .pdmodel, or PIR .json) is chosen when paddle is imported.
SAVE = """
import sys, paddle
paddle.seed(int(sys.argv[2]))
class Net(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(1, 4, 3, padding=1)
        self.fc = paddle.nn.Linear(4 * 64, 10)
    def forward(self, x):
        return self.fc(paddle.flatten(paddle.nn.functional.relu(self.conv(x)), 1))
net = Net()
net.eval()
paddle.jit.save(net, sys.argv[1], input_spec=[paddle.static.InputSpec([None, 1, 8, 8], "float32", name="x")])
"""


def _save(prefix: Path, seed: int, pir: bool) -> Path:
    script = prefix.parent.parent / "save_net.py"  # a file: paddle's tracer reads forward()'s source
    script.write_text(SAVE)
    env = {**os.environ, "FLAGS_enable_pir_api": "1" if pir else "0"}
    done = subprocess.run(
        [sys.executable, str(script), str(prefix), str(seed)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return prefix.parent


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paddle")
    return {
        "legacy": _save(root / "legacy" / "net", 0, pir=False),
        "other": _save(root / "other" / "net", 1, pir=False),
        "pir": _save(root / "pir" / "net", 0, pir=True),
    }


def _paddle_run(folder: Path, x: np.ndarray) -> np.ndarray:
    """Paddle Inference's own output, in a child interpreter (see the note at the top)."""
    from stages.frontends.formats import ModelSource
    from stages.frontends.paddle import run_paddle
    from stages.frontends.ports import Bound, Port

    source = ModelSource("paddle", folder / "net.pdmodel", folder / "net.pdiparams")
    bound = [Bound(Port("x", "float32", (None, 1, 8, 8)), "x", (), x.shape)]
    out = run_paddle(source, bound, {"x": x})
    return next(iter(out.values()))


def _openvino_run(ir: Path, x: np.ndarray) -> Any:
    import openvino as ov

    compiled = ov.Core().compile_model(str(ir / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled({"x": x})[0]


@pytest.mark.parametrize("given", ["directory", "model file"])
def test_a_paddle_model_converts_and_matches_paddle(models: dict[str, Path], given: str, tmp_path: Path) -> None:
    folder = models["legacy"]
    source = folder if given == "directory" else folder / "net.pdmodel"
    summary = run_stage(ConvertOpenvino, tmp_path, inputs={"model": str(source)}, model=SPEC)
    assert summary["format"] == "paddle" and summary["check_max_abs"] < 1e-4
    x = np.random.default_rng(5).random((3, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(_openvino_run(tmp_path / "model", x), _paddle_run(folder, x), atol=1e-5)


def test_a_paddle_model_file_without_its_weights_is_one_line(models: dict[str, Path], tmp_path: Path) -> None:
    shutil.copy(models["legacy"] / "net.pdmodel", tmp_path / "net.pdmodel")
    with pytest.raises(ValueError, match=r"^input model \(net.pdmodel\): .* needs its weights net.pdiparams beside"):
        run_stage(ConvertOpenvino, tmp_path / "out", inputs={"model": str(tmp_path / "net.pdmodel")}, model=SPEC)


def test_the_pir_format_converts_or_says_to_save_the_legacy_program(models: dict[str, Path], tmp_path: Path) -> None:
    """OpenVINO 2026.4's paddle frontend reads no PIR .json; a release that does converts it and passes the check."""
    try:
        summary = run_stage(ConvertOpenvino, tmp_path, inputs={"model": str(models["pir"] / "net.json")}, model=SPEC)
    except ValueError as exc:
        assert str(exc).startswith("input model (net.json): OpenVINO ") and "FLAGS_enable_pir_api=0" in str(exc)
    else:
        assert summary["check_max_abs"] < 1e-4


RECIPE = """\
name: paddle_keys
model:
  tensors: {x: {shape: [batch, 1, 8, 8]}}
  dims: {batch: {min: 1, opt: 4, max: 16}}
stages:
  by_file: {uses: convert.openvino, inputs: {model: pd/net.pdmodel}}
  by_dir: {uses: convert.openvino, inputs: {model: pd}}
"""


def test_new_weights_beside_a_pdmodel_rerun_the_conversion(models: dict[str, Path], tmp_path: Path) -> None:
    project = Project.at(tmp_path)
    shutil.copytree(models["legacy"], project.root / "pd")
    project.write_recipe(RECIPE, "recipe.yaml")
    proc, record = project.run_json("recipe.yaml", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {r["status"] for r in rows(record).values()} == {"ran"}
    proc, record = project.run_json("recipe.yaml", timeout=600)
    assert {r["status"] for r in rows(record).values()} == {"cached"}
    shutil.copy(models["other"] / "net.pdiparams", project.root / "pd" / "net.pdiparams")
    proc, record = project.run_json("recipe.yaml", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = rows(record)
    assert r["by_dir"]["status"] == "ran" and r["by_file"]["status"] == "ran", r
    assert any("net.pdiparams" in reason for reason in r["by_file"]["reasons"]), r["by_file"]["reasons"]


@pytest.mark.loads_tensorflow
def test_the_paddle_check_survives_a_process_that_loaded_tensorflow(models: dict[str, Path], tmp_path: Path) -> None:
    """A pipeline worker is reused across stages: after a TensorFlow stage, loading paddle in it would crash
    the process (SIGSEGV), so the stage runs Paddle in a child of its own."""
    pytest.importorskip("tensorflow", reason="tensorflow is the tensorflow extra")  # loaded here on purpose
    summary = run_stage(ConvertOpenvino, tmp_path, inputs={"model": str(models["legacy"])}, model=SPEC)
    assert summary["check_max_abs"] < 1e-4 and "paddle" not in sys.modules
