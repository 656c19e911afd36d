"""export.onnx called directly: both exporters, dynamic dims, determinism, fingerprint, checkpoints."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from harness import REPO, run_stage

from stages.export_onnx import ExportOnnx
from stages.runtimes.onnx.io import run_onnx, session_from_onnx

HERE = Path(__file__).resolve().parent
TINY = {
    "factory": "tinymodels.py:tiny_cnn",
    "kwargs": {"channels": 8},
    "seed": 0,
    "tensors": {"input": {"shape": ["batch", 3, 16, 16]}},
    "outputs": ["logits"],
    "dims": {"batch": {"min": 1, "opt": 4, "max": 32}},
}


def dims_of(info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in info.type.tensor_type.shape.dim]


def copy_models(dest: Path) -> Path:
    dest.mkdir(parents=True)
    shutil.copy(HERE / "tinymodels.py", dest / "tinymodels.py")
    return dest


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_export_keeps_batch_dynamic(tmp_path: Path, dynamo: bool) -> None:
    summary = run_stage(ExportOnnx, tmp_path / "out", {"dynamo": dynamo}, model=TINY, recipe_dir=HERE)
    assert summary["exporter"] == ("dynamo" if dynamo else "torchscript")
    assert summary["check_max_abs"] < 1e-4
    proto = onnx.load(tmp_path / "out" / "model.onnx")
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert dims_of(proto.graph.input[0]) == ["batch", 3, 16, 16]
    session = session_from_onnx(tmp_path / "out" / "model.onnx")
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 16, 16)).astype(np.float32)
        assert run_onnx(session, {"input": x})["logits"].shape == (batch, 10)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_two_inputs_share_a_dim_with_a_non_identifier_name(tmp_path: Path, dynamo: bool) -> None:
    model = {
        "factory": "tinymodels:two_inputs",
        "tensors": {"x": {"shape": ["n-rows", 4]}, "y": {"shape": ["n-rows", 5]}},
        "outputs": ["act", "total"],
        "dims": {"n-rows": {"min": 1, "opt": 1, "max": 16}},
    }
    run_stage(ExportOnnx, tmp_path, {"dynamo": dynamo}, model=model, recipe_dir=HERE)
    proto = onnx.load(tmp_path / "model.onnx")
    assert [dims_of(i) for i in proto.graph.input] == [["n-rows", 4], ["n-rows", 5]]
    assert [o.name for o in proto.graph.output] == ["act", "total"]
    out = run_onnx(
        session_from_onnx(tmp_path / "model.onnx"), {"x": np.ones((7, 4), np.float32), "y": np.ones((7, 5), np.float32)}
    )
    assert out["act"].shape == (7, 3) and out["total"].shape == (7,)


def test_bytes_do_not_depend_on_checkout_dir_or_comments(tmp_path: Path) -> None:
    a, b = copy_models(tmp_path / "checkout_a"), copy_models(tmp_path / "somewhere" / "else")
    run_stage(ExportOnnx, tmp_path / "out_a", model=TINY, recipe_dir=a)
    run_stage(ExportOnnx, tmp_path / "out_b", model=TINY, recipe_dir=b)
    first = (tmp_path / "out_a" / "model.onnx").read_bytes()
    assert first == (tmp_path / "out_b" / "model.onnx").read_bytes()
    assert b"checkout_a" not in first and b"tinymodels" not in first
    source = b / "tinymodels.py"  # shift every line number and touch a line inside the model code
    text = source.read_text().replace(
        "        x = torch.relu(self.conv2(x))\n",
        "        # a comment\n\n        x = torch.relu(self.conv2(x))  # why\n",
    )
    assert text != source.read_text()
    source.write_text("# a header comment\n\n" + text)
    run_stage(ExportOnnx, tmp_path / "out_c", model=TINY, recipe_dir=b)
    assert (tmp_path / "out_c" / "model.onnx").read_bytes() == first


def test_keep_debug_metadata_keeps_stack_traces(tmp_path: Path) -> None:
    """The control for the determinism test: unstripped, the bytes do depend on the checkout."""
    a, b = copy_models(tmp_path / "checkout_a"), copy_models(tmp_path / "checkout_b")
    run_stage(ExportOnnx, tmp_path / "kept_a", {"keep_debug_metadata": True}, model=TINY, recipe_dir=a)
    run_stage(ExportOnnx, tmp_path / "kept_b", {"keep_debug_metadata": True}, model=TINY, recipe_dir=b)
    run_stage(ExportOnnx, tmp_path / "stripped", model=TINY, recipe_dir=a)
    kept, stripped = (onnx.load(tmp_path / d / "model.onnx") for d in ("kept_a", "stripped"))
    traces = [p.value for n in kept.graph.node for p in n.metadata_props if p.key == "pkg.torch.onnx.stack_trace"]
    assert any("checkout_a/tinymodels.py" in t for t in traces)
    assert (tmp_path / "kept_a" / "model.onnx").read_bytes() != (tmp_path / "kept_b" / "model.onnx").read_bytes()
    assert not any(n.metadata_props or n.doc_string for n in stripped.graph.node)
    assert not any(
        i.metadata_props for i in (*stripped.graph.input, *stripped.graph.output, *stripped.graph.value_info)
    )


def test_checkpoint_is_loaded(tmp_path: Path) -> None:
    import torch

    sys.path.insert(0, str(HERE))
    from tinymodels import tiny_cnn

    torch.manual_seed(123)
    trained = tiny_cnn(channels=8).eval()
    torch.save(trained.state_dict(), tmp_path / "ckpt.pt")
    shutil.copy(HERE / "tinymodels.py", tmp_path / "tinymodels.py")
    run_stage(
        ExportOnnx, tmp_path / "with", {"dynamo": False}, model={**TINY, "checkpoint": "ckpt.pt"}, recipe_dir=tmp_path
    )
    run_stage(ExportOnnx, tmp_path / "without", {"dynamo": False}, model=TINY, recipe_dir=tmp_path)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expected = trained(torch.from_numpy(x)).numpy()
    got = run_onnx(session_from_onnx(tmp_path / "with" / "model.onnx"), {"input": x})["logits"]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    other = run_onnx(session_from_onnx(tmp_path / "without" / "model.onnx"), {"input": x})["logits"]
    assert not np.allclose(other, expected, atol=1e-3)
    # The same checkpoint as another stage's output (the `checkpoint` input) wins over model.checkpoint.
    run_stage(
        ExportOnnx,
        tmp_path / "input",
        {"dynamo": False},
        inputs={"checkpoint": tmp_path / "ckpt.pt"},
        model={**TINY, "checkpoint": "nope.pt"},
        recipe_dir=tmp_path,
    )
    assert (tmp_path / "input" / "model.onnx").read_bytes() == (tmp_path / "with" / "model.onnx").read_bytes()


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="checkpoint 'nope.pt' not found"):
        run_stage(ExportOnnx, tmp_path, model={**TINY, "checkpoint": "nope.pt"}, recipe_dir=HERE)


class FakeKeys:
    """Stands in for the engine's KeyContext: digests of the files a reference points at."""

    def __init__(self, recipe_dir: Path) -> None:
        self.recipe_dir = recipe_dir
        self.calls: list[tuple[str, str | None]] = []

    def file_digest(self, path: Path) -> str:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    def code_digest(self, ref: str, source: str | None = None) -> dict[str, Any]:
        self.calls.append((ref, source))
        return {"file": self.file_digest(self.recipe_dir / ref.partition(":")[0])}


def test_fingerprint_covers_model_code_and_checkpoint(tmp_path: Path) -> None:
    from pipeline.schema import ModelSpec

    copy_models(tmp_path / "m")
    (tmp_path / "m" / "ckpt.pt").write_bytes(b"weights v1")
    keys = FakeKeys(tmp_path / "m")
    spec = ModelSpec.model_validate({**TINY, "checkpoint": "ckpt.pt", "source": "."})
    params = ExportOnnx.Params()
    first = ExportOnnx().fingerprint(params, spec, keys)
    assert keys.calls == [("tinymodels.py:tiny_cnn", ".")]
    assert set(first) == {"factory_code", "checkpoint"}
    (tmp_path / "m" / "ckpt.pt").write_bytes(b"weights v2")
    second = ExportOnnx().fingerprint(params, spec, keys)
    assert second["checkpoint"] != first["checkpoint"] and second["factory_code"] == first["factory_code"]
    (tmp_path / "m" / "tinymodels.py").write_text((HERE / "tinymodels.py").read_text() + "\n# edited\n")
    assert ExportOnnx().fingerprint(params, spec, keys)["factory_code"] != second["factory_code"]
    no_ckpt = ExportOnnx().fingerprint(params, ModelSpec.model_validate(TINY), keys)
    assert no_ckpt["checkpoint"] is None


def test_kind_modules_and_fingerprint_import_nothing_heavy() -> None:
    code = (
        "import sys, json; from pathlib import Path\n"
        "from stages.export_onnx import ExportOnnx\n"
        "import stages.onnx_simplify, stages.onnx_surgery\n"
        "from pipeline.schema import ModelSpec\n"
        "class K:\n"
        "    recipe_dir = Path('.')\n"
        "    def file_digest(self, p): return 'x'\n"
        "    def code_digest(self, ref, source=None): return {'ref': ref}\n"
        f"ExportOnnx().fingerprint(ExportOnnx.Params(), ModelSpec.model_validate({json.dumps(TINY)}), K())\n"
        "names = ('torch', 'onnx', 'onnxruntime', 'onnxscript', 'onnxsim', 'onnx_graphsurgeon')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(json.dumps(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_params_have_defaults_and_descriptions() -> None:
    params = ExportOnnx.Params()
    assert params.opset == 20 and params.dynamo is True and params.keep_debug_metadata is False
    assert all(f.description for f in ExportOnnx.Params.model_fields.values())
