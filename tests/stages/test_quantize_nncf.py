"""quantize.nncf called directly: FakeQuantize in the IR, runs in OpenVINO, synthetic flag, determinism,
accuracy control on a small trained classifier (sklearn digits), and the errors."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from graphs import CONV_SPEC, conv_bn, save
from harness import needs_vnni, run_stage
from onnx import TensorProto, helper, numpy_helper

from pipeline.stage import DatasetInput
from stages.data import SYNTHETIC_WARNING
from stages.quantize_nncf import QuantizeNncf
from stages.runtimes.onnx.io import run_onnx, session_from_onnx

ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")

DIGITS_SPEC = {"tensors": {"x": {"shape": ["batch", 64]}}, "dims": {"batch": {"min": 1, "opt": 8, "max": 64}}}


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(conv_bn(), tmp_path_factory.mktemp("conv") / "model.onnx")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64-32-10 MLP trained on sklearn's bundled digits, as ONNX, plus calib.npz and val.npz (with labels)."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    root = tmp_path_factory.mktemp("digits")
    data = load_digits()
    x, y = (data.data / 16).astype(np.float32), data.target.astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 100 iterations are plenty here
        mlp = MLPClassifier((32,), random_state=0, max_iter=100).fit(x[:1200], y[:1200])
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    inits = [
        numpy_helper.from_array(a.astype(np.float32), n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="bias1"),
        helper.make_node("Relu", ["hb"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["o"], name="fc2"),
        helper.make_node("Add", ["o", "b2"], ["logits"], name="bias2"),
    ]
    graph = helper.make_graph(
        nodes,
        "digits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), root / "model.onnx")
    np.savez(root / "calib.npz", x=x[:1200])
    np.savez(root / "val.npz", x=x[1200:1500], labels=y[1200:1500])
    return root


def data(name: str, spec: dict, base: Path = Path(".")) -> DatasetInput:
    return DatasetInput(name, spec, base)


def quantize(
    outdir: Path, model: Path, calib: DatasetInput, spec: dict, val: DatasetInput | None = None, **params
) -> dict:
    inputs = {"model": str(model), "data": calib}
    if val is not None:
        inputs["val"] = val
    return run_stage(QuantizeNncf, outdir, params, inputs=inputs, model=spec)


def test_synthetic_calibration_gives_fake_quantize_and_a_warning(
    tmp_path: Path, conv_onnx: Path, capsys: pytest.CaptureFixture
) -> None:
    summary = quantize(
        tmp_path / "q",
        conv_onnx,
        data("calib", {"kind": "synthetic", "count": 20, "seed": 1}),
        CONV_SPEC,
        subset_size=80,
    )
    assert f"WARNING: quantize_nncf: {SYNTHETIC_WARNING}\n" in capsys.readouterr().out
    assert summary["synthetic"] is True and summary["warning"] == SYNTHETIC_WARNING and summary["samples"] == 20
    assert summary["warnings"] == 1 and summary["int8_ops"] >= 2 and summary["seconds"] > 0
    assert summary["model_type"] == "none (auto: no attention found)"
    xml = (tmp_path / "q" / "model" / "model.xml").read_text()
    assert xml.count('type="FakeQuantize"') == summary["int8_ops"]
    report = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert report["synthetic"] is True and report["warning"] == SYNTHETIC_WARNING
    assert report["warnings"] == [SYNTHETIC_WARNING]
    assert report["model_type"] == {
        "requested": "auto",
        "used": "none",
        "why": "auto: no attention found",
        "smooth_quant": None,
    }
    assert report["calibration"] == {
        "name": "calib",
        "kind": "synthetic",
        "count": 20,
        "labels": False,
        "synthetic": True,
        "samples": 20,
    }
    assert report["settings"]["preset"] == "performance" and report["settings"]["subset_size"] == 80

    compiled = ov.Core().compile_model(
        str(tmp_path / "q" / "model" / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    x = np.random.default_rng(5).standard_normal((3, 3, 8, 8)).astype(np.float32)
    got, ref = (
        compiled({"input": x})["out"].ravel(),
        run_onnx(session_from_onnx(conv_onnx), {"input": x})["out"].ravel(),
    )
    assert np.dot(got, ref) / (np.linalg.norm(got) * np.linalg.norm(ref)) > 0.99


def test_npz_calibration_batches_subset_and_deterministic_bytes(tmp_path: Path, digits: Path) -> None:
    calib = data("calib", {"kind": "npz", "path": "calib.npz"}, digits)
    summaries = [
        quantize(tmp_path / name, digits / "model.onnx", calib, DIGITS_SPEC, subset_size=50, batch_size=8)
        for name in ("a", "b")
    ]
    assert summaries[0]["samples"] == 50 and summaries[0]["synthetic"] is False and "warning" not in summaries[0]
    for name in ("model/model.xml", "model/model.bin", "quantize.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    report = json.loads((tmp_path / "a" / "quantize.json").read_text())
    assert report["synthetic"] is False and report["warning"] is None and report["calibration"]["samples"] == 50


def test_labelled_val_reports_accuracy(tmp_path: Path, digits: Path) -> None:
    summary = quantize(
        tmp_path / "q",
        digits / "model.onnx",
        data("calib", {"kind": "npz", "path": "calib.npz"}, digits),
        DIGITS_SPEC,
        val=data("val", {"kind": "npz", "path": "val.npz", "labels": "labels"}, digits),
        subset_size=100,
    )
    assert summary["accuracy_float"] > 0.85 and abs(summary["drop"]) < 0.05


@needs_vnni
def test_accuracy_control_reverts_layers_to_keep_the_drop(tmp_path: Path, digits: Path) -> None:
    """Calibrating on uniform [0, 0.5) while the pixels span [0, 1] clips activations: accuracy drops;
    accuracy control puts the worst layer back in float until the drop fits max_drop."""
    val = data("val", {"kind": "npz", "path": "val.npz", "labels": "labels"}, digits)
    poor = data("calib", {"kind": "synthetic", "count": 50, "distribution": "uniform", "low": 0, "high": 0.5})
    plain = quantize(tmp_path / "plain", digits / "model.onnx", poor, DIGITS_SPEC, val=val, preset="mixed")
    controlled = quantize(
        tmp_path / "ac", digits / "model.onnx", poor, DIGITS_SPEC, val=val, preset="mixed", max_drop=0.01
    )
    assert plain["drop"] > 0.01 and plain["int8_weights"] == 2
    assert controlled["drop"] <= 0.01 and 1 <= controlled["int8_ops"] < plain["int8_ops"]
    assert controlled["int8_weights"] < plain["int8_weights"]
    report = json.loads((tmp_path / "ac" / "quantize.json").read_text())
    assert report["accuracy"]["max_drop"] == 0.01 and report["accuracy"]["samples"] == 300

    hopeless = data("calib", {"kind": "synthetic", "count": 50, "distribution": "uniform", "low": 0, "high": 0.1})
    with pytest.raises(ValueError, match=r"accuracy control reverted every quantized layer to float"):
        quantize(
            tmp_path / "none", digits / "model.onnx", hopeless, DIGITS_SPEC, val=val, preset="mixed", max_drop=0.01
        )


def test_ir_input_and_ignored_scope(tmp_path: Path, digits: Path) -> None:
    core = ov.Core()
    ir = tmp_path / "ir"
    ir.mkdir()
    ov.save_model(core.read_model(str(digits / "model.onnx")), str(ir / "model.xml"), compress_to_fp16=False)
    calib = data("calib", {"kind": "npz", "path": "calib.npz", "count": 30}, digits)
    full = quantize(tmp_path / "full", ir, calib, DIGITS_SPEC)
    partial = quantize(tmp_path / "partial", ir, calib, DIGITS_SPEC, ignored_scope={"names": ["fc2"]})
    assert full["samples"] == 30 and 0 < partial["int8_ops"] < full["int8_ops"]
    with pytest.raises(ValueError, match="NNCF inserted no FakeQuantize nodes"):
        quantize(tmp_path / "none", ir, calib, DIGITS_SPEC, ignored_scope={"types": ["MatMul"]})
    with pytest.raises(Exception, match="nope"):
        quantize(tmp_path / "bad", ir, calib, DIGITS_SPEC, ignored_scope={"names": ["nope"]})


def test_a_relative_data_dir_is_anchored_where_the_input_is_made(
    tmp_path: Path, digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's worker runs in the output directory: a dataset's base dir is made absolute where the
    input is made (the engine, which knows the recipe's folder), never read from the worker's."""
    monkeypatch.chdir(digits)
    calib = data("calib", {"kind": "npz", "path": "calib.npz", "count": 8}, Path("."))
    monkeypatch.chdir(tmp_path)
    assert calib.base_dir == digits.resolve()
    summary = run_stage(
        QuantizeNncf,
        tmp_path / "q",
        {},
        inputs={"model": str(digits / "model.onnx"), "data": calib},
        model=DIGITS_SPEC,
        recipe_dir=tmp_path,
    )
    assert summary["samples"] == 8


def test_a_static_batch_is_fed_whole_batches(tmp_path: Path, conv_onnx: Path) -> None:
    core = ov.Core()
    model = core.read_model(str(conv_onnx))
    model.reshape({"input": [2, 3, 8, 8]})
    ov.save_model(model, str(tmp_path / "static.xml"), compress_to_fp16=False)
    calib = data("calib", {"kind": "synthetic", "count": 5})
    assert quantize(tmp_path / "q", tmp_path / "static.xml", calib, CONV_SPEC, batch_size=2)["samples"] == 4
    with pytest.raises(ValueError, match=r"the model's batch dim is fixed at 2; set batch_size to match"):
        quantize(tmp_path / "q1", tmp_path / "static.xml", calib, CONV_SPEC)


def test_max_drop_needs_val_and_a_classifier_needs_labels(tmp_path: Path, conv_onnx: Path) -> None:
    calib = data("calib", {"kind": "synthetic", "count": 4})
    with pytest.raises(ValueError, match=r"max_drop is set but no `val` input"):
        quantize(tmp_path / "a", conv_onnx, calib, CONV_SPEC, max_drop=0.01)
    classifier = {**CONV_SPEC, "roles": {"out": "classification"}}
    with pytest.raises(
        ValueError,
        match=r"^max_drop is set but data.val has no labels: output 'out' is a "
        r"classifier's: its figure, top-1 accuracy, needs labels",
    ):
        quantize(
            tmp_path / "b",
            conv_onnx,
            calib,
            classifier,
            val=data("val", {"kind": "synthetic", "count": 4}),
            max_drop=0.01,
        )
    with pytest.raises(ValueError, match=r"metric_output 'nope' is not an output of the model \(has: out\)"):
        quantize(
            tmp_path / "c",
            conv_onnx,
            calib,
            CONV_SPEC,
            val=data("val", {"kind": "synthetic", "count": 4}),
            max_drop=0.01,
            metric_output="nope",
        )


def test_dataset_and_model_input_names_must_match(tmp_path: Path, conv_onnx: Path) -> None:
    spec = {"tensors": {"image": {"shape": ["batch", 3, 8, 8]}}, "dims": CONV_SPEC["dims"]}
    with pytest.raises(ValueError, match=r"data.calib: gives inputs \['image'\], the model takes \['input'\]"):
        quantize(tmp_path / "q", conv_onnx, data("calib", {"kind": "synthetic", "count": 4}), spec)


def test_params_have_defaults_and_descriptions() -> None:
    p = QuantizeNncf.Params()
    assert (p.preset, p.subset_size, p.fast_bias_correction, p.target_device, p.batch_size, p.max_drop) == (
        "performance",
        300,
        True,
        "CPU",
        1,
        None,
    )
    assert (p.model_type, p.metric_output) == ("auto", None)
    assert all(f.description for f in QuantizeNncf.Params.model_fields.values())
    assert QuantizeNncf.outputs["model"].is_dir and QuantizeNncf.inputs["val"].optional


# --- dynamic shapes, model_type auto, warnings, accuracy control on an embedding ----------------------------


@pytest.fixture(scope="module")
def attn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from graphs import MIXED_SOURCE, attention

    root = tmp_path_factory.mktemp("attn")
    (root / "mixed_t.py").write_text(MIXED_SOURCE)
    save(attention(), root / "model.onnx")
    return root


@needs_vnni
def test_attention_graph_calibrates_on_mixed_lengths_in_transformer_mode(
    tmp_path: Path, attn: Path, capsys: pytest.CaptureFixture
) -> None:
    from graphs import ATTENTION_SPEC

    calib = data("calib", {"kind": "python", "python": "mixed_t.py:sequences"}, attn)
    summary = quantize(tmp_path / "q", attn / "model.onnx", calib, ATTENTION_SPEC, subset_size=16, batch_size=4)
    assert summary["samples"] == 16 and summary["int8_ops"] >= 1
    assert summary["model_type"] == "transformer (auto: attention found at 1 Softmax node)"
    report = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert report["model_type"]["used"] == "transformer" and report["model_type"]["smooth_quant"]["matmul"] > 0
    assert "WARNING" not in capsys.readouterr().out and report["warnings"] == []
    none = quantize(tmp_path / "n", attn / "model.onnx", calib, ATTENTION_SPEC, subset_size=16, model_type="none")
    assert none["model_type"] == "none (set in the recipe)"
    # transformer mode leaves the attention MatMuls' activations (q @ k^T, probs @ v) in float: fewer FakeQuantize
    assert summary["int8_ops"] < none["int8_ops"]
    compiled = ov.Core().compile_model(
        str(tmp_path / "q" / "model" / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    for seq in (3, 11):  # the INT8 IR still takes any length
        x = np.random.default_rng(seq).standard_normal((2, seq, 8)).astype(np.float32)
        got, ref = compiled({"x": x})["emb"], run_onnx(session_from_onnx(attn / "model.onnx"), {"x": x})["emb"]
        assert (
            got.shape == (2, 8)
            and np.min(np.sum(got * ref, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)) > 0.95
        )


def test_fcn_calibrates_on_images_of_several_sizes(tmp_path: Path) -> None:
    from graphs import FCN_SPEC, MIXED_SOURCE, fcn

    (tmp_path / "mixed_t.py").write_text(MIXED_SOURCE)
    model = save(fcn(), tmp_path / "fcn.onnx")
    calib = data("calib", {"kind": "python", "python": "mixed_t.py:images"}, tmp_path)
    summary = quantize(tmp_path / "q", model, calib, FCN_SPEC, subset_size=10, batch_size=2)
    assert summary["samples"] == 10 and summary["int8_ops"] >= 2 and summary["model_type"].startswith("none")


def test_small_and_constant_calibration_sets_warn(tmp_path: Path, digits: Path, capsys: pytest.CaptureFixture) -> None:
    np.savez(tmp_path / "flat.npz", x=np.full((40, 64), 0.25, np.float32))
    summary = quantize(
        tmp_path / "q", digits / "model.onnx", data("calib", {"kind": "npz", "path": "flat.npz"}, tmp_path), DIGITS_SPEC
    )
    out = capsys.readouterr().out
    small = (
        "calibrating on only 40 samples of data.calib (subset size 300): scales from so few samples rarely fit "
        "real inputs; give at least 64"
    )
    constant = (
        "input 'x' of data.calib is identical in every sample: INT8 scales calibrated on it will not fit real inputs"
    )
    assert f"WARNING: quantize_nncf: {small}\n" in out and f"WARNING: quantize_nncf: {constant}\n" in out
    assert summary["warnings"] == 2 and summary["warning"] == f"{small}; {constant}"
    assert json.loads((tmp_path / "q" / "quantize.json").read_text())["warnings"] == [small, constant]


def test_max_drop_on_an_embedding_keeps_the_worst_sample_cosine(tmp_path: Path, attn: Path) -> None:
    """No labels: the embedding's figure is the worst sample's cosine to the float model (which scores 1.0)."""
    from graphs import ATTENTION_SPEC

    spec = {**ATTENTION_SPEC, "roles": {"emb": "embedding"}}
    calib = data("calib", {"kind": "python", "python": "mixed_t.py:sequences"}, attn)
    val = data("val", {"kind": "python", "python": "mixed_t.py:sequences", "kwargs": {"seed": 7}}, attn)
    plain = quantize(tmp_path / "p", attn / "model.onnx", calib, spec, val=val, subset_size=16, model_type="none")
    summary = quantize(
        tmp_path / "q", attn / "model.onnx", calib, spec, val=val, subset_size=16, max_drop=0.012, model_type="none"
    )
    assert plain["metric"] == summary["metric"] == "cosine_min of emb (embedding)"
    assert plain["drop"] > 0.012 and 1 <= summary["int8_ops"] < plain["int8_ops"]
    assert summary["cosine_min_float"] == 1.0 and summary["drop"] <= 0.012
    assert summary["cosine_min_int8"] == pytest.approx(1.0 - summary["drop"], abs=1e-6)
    report = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert report["accuracy"]["figure"] == "cosine_min" and report["accuracy"]["role"] == "embedding"
    assert report["accuracy"]["samples"] == 16


# --- keys and empty data ----------------------------------------------------------------------------------

KEY_RECIPE = """\
name: roles_key
model:
  tensors: {{x: {{shape: [batch, 64]}}}}
  dims: {{batch: {{min: 1, opt: 8, max: 64}}}}
  roles: {roles}
data:
  calib: {{kind: npz, path: calib.npz}}
  val: {{kind: npz, path: val.npz, labels: labels}}
stages:
  quant: {{uses: quantize.nncf, inputs: {{model: model.onnx, data: data.calib, val: data.val}}, with: {with_}}}
"""


def quant_key(root: Path, digits: Path, roles: str, with_: str) -> str:
    """quantize.nncf's key as `pipeline plan` computes it, for a recipe in `root` with these roles and params."""
    from pipeline.cache import Cache
    from pipeline.recipe.load import load_recipe
    from pipeline.run.plan import Planner

    for name in ("model.onnx", "calib.npz", "val.npz"):
        if not (root / name).exists():
            (root / name).symlink_to(digits / name)
    (root / "recipe.yaml").write_text(KEY_RECIPE.format(roles=roles, with_=with_))
    recipe = load_recipe(root / "recipe.yaml")
    decision = Planner(recipe, Cache(root / "cache")).plan(["quant"])[0]
    assert decision.key is not None, decision.reasons
    return decision.key


def test_roles_enter_the_key(tmp_path: Path, digits: Path) -> None:
    """With max_drop the metric output's role picks the figure accuracy control keeps, so the INT8 model
    depends on it; with `val` data the reported figures do too, so roles are in the key either way."""

    def key(roles: str, with_: str) -> str:
        return quant_key(tmp_path, digits, roles, with_)

    plain = "{subset_size: 10}"
    assert key("{}", plain) != key("{logits: embedding}", plain)
    control = "{subset_size: 10, max_drop: 0.01}"
    assert key("{}", control) != key("{logits: embedding}", control) != key("{logits: classification}", control)
    named = "{subset_size: 10, max_drop: 0.01, metric_output: logits}"
    assert key("{}", named) != key("{logits: embedding}", named)
    assert key("{}", named) == key("{other: embedding}", named)  # another output's role: not the metric's


def test_empty_calibration_or_val_data_is_one_line_naming_the_dataset(
    tmp_path: Path, conv_onnx: Path, digits: Path
) -> None:
    (tmp_path / "d.py").write_text("def none():\n    return iter(())\n")
    empty = data("calib", {"kind": "python", "python": "d.py:none"}, tmp_path)
    for batch_size in (1, 4):  # a length taken on trust (1) and one counted by a pass (4)
        with pytest.raises(ValueError, match=r"^data.calib gave no samples$"):
            quantize(tmp_path / f"q{batch_size}", conv_onnx, empty, CONV_SPEC, batch_size=batch_size)
    np.savez(tmp_path / "none.npz", x=np.zeros((0, 64), np.float32))
    with pytest.raises(ValueError, match=r"^data.calib gave no samples$"):
        quantize(
            tmp_path / "npz",
            digits / "model.onnx",
            data("calib", {"kind": "npz", "path": "none.npz"}, tmp_path),
            DIGITS_SPEC,
        )
    calib = data("calib", {"kind": "npz", "path": "calib.npz"}, digits)
    with pytest.raises(ValueError, match=r"^data.val gave no samples$"):
        quantize(
            tmp_path / "val",
            digits / "model.onnx",
            calib,
            DIGITS_SPEC,
            subset_size=10,
            val=data("val", {"kind": "python", "python": "d.py:none"}, tmp_path),
            max_drop=0.01,
        )


def test_overflow_fix_reaches_nncf_and_changes_the_weights(tmp_path: Path, conv_onnx: Path) -> None:
    """`enable` quantizes every layer's weights to 7 bits (NNCF's overflow fix, for CPUs without VNNI)."""
    calib = data("calib", {"kind": "synthetic", "count": 8, "seed": 1})

    def widest_weight(params: dict) -> int:
        out = tmp_path / params["overflow_fix"]
        quantize(out, conv_onnx, calib, CONV_SPEC, **params)
        model = ov.Core().read_model(str(out / "model" / "model.xml"))
        int8 = [
            op for op in model.get_ops() if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8
        ]
        assert int8, "the conv's weights are stored as int8"
        return max(int(np.abs(op.get_data().astype(np.int32)).max()) for op in int8)

    assert widest_weight({"overflow_fix": "disable"}) > 64
    assert widest_weight({"overflow_fix": "enable"}) <= 64  # 7 bits: no u8 x s8 product saturates
