"""onnx.surgery called directly: each op does what it says, the self-check follows it, bad ops fail early."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from graphs import MLP_SPEC, mlp, save
from harness import run_stage
from pydantic import ValidationError

from stages.onnx_surgery import OnnxSurgery
from stages.runtimes.onnx.io import run_onnx, session_from_onnx

OPS_FILE = textwrap.dedent('''
    import numpy as np
    import onnx_graphsurgeon as gs


    def relu_as_max(graph):
        """Same numbers, different op: Relu(x) == Max(x, 0)."""
        relu = next(n for n in graph.nodes if n.op == "Relu")
        relu.op, relu.name = "Max", "relu_max"
        relu.inputs.append(gs.Constant("zero", np.zeros(1, np.float32)))
        return graph


    def relu_to_sigmoid(graph):
        next(n for n in graph.nodes if n.op == "Relu").op = "Sigmoid"
        return graph


    def double_output(graph):
        out = graph.outputs[0]
        pre = gs.Variable("undoubled", dtype=out.dtype, shape=out.shape)
        out.inputs[0].outputs = [pre]
        graph.nodes.append(gs.Node("Mul", name="double", inputs=[pre, gs.Constant("two", np.array([2.0], np.float32))],
                                   outputs=[out]))
        return graph


    def forgets_to_return(graph):
        graph.cleanup()
''')


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return save(mlp(), tmp_path / "in" / "model.onnx")


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "surgery_ops.py").write_text(OPS_FILE)
    return tmp_path / "recipe"


def surgery(
    tmp_path: Path, model: Path, ops: list, recipe_dir: Path | None = None, **params
) -> tuple[onnx.ModelProto, dict]:
    summary = run_stage(
        OnnxSurgery,
        tmp_path / "out",
        {"ops": ops, **params},
        inputs={"model": model},
        model=MLP_SPEC,
        recipe_dir=recipe_dir,
    )
    proto = onnx.load(tmp_path / "out" / "model.onnx")
    onnx.checker.check_model(proto)
    return proto, summary


def names(proto: onnx.ModelProto) -> list[str]:
    return [n.name for n in proto.graph.node]


def dims(info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in info.type.tensor_type.shape.dim]


def run(path: Path, batch: int = 3, name: str = "input") -> dict[str, np.ndarray]:
    x = np.random.default_rng(0).standard_normal((batch, 4)).astype(np.float32)
    return run_onnx(session_from_onnx(path), {name: x})


def test_no_ops_is_a_faithful_copy(tmp_path: Path, model: Path) -> None:
    proto, summary = surgery(tmp_path, model, [])
    assert names(proto) == names(mlp()) and summary["check_max_abs"] == 0.0


def test_cleanup_removes_the_dangling_node(tmp_path: Path, model: Path) -> None:
    proto, _ = surgery(tmp_path, model, ["cleanup"])
    assert "dangling" not in names(proto) and "matmul" in names(proto)


def test_toposort_orders_a_shuffled_graph(tmp_path: Path) -> None:
    shuffled = save(mlp(reverse_nodes=True), tmp_path / "in" / "shuffled.onnx", check=False)  # out of order
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(onnx.load(shuffled))
    proto, _ = surgery(tmp_path, shuffled, ["toposort"])  # surgery() runs the checker
    assert names(proto).index("matmul") < names(proto).index("relu") < names(proto).index("final")


def test_fold_constants_then_cleanup(tmp_path: Path, model: Path) -> None:
    proto, _ = surgery(tmp_path, model, ["fold_constants", "cleanup"])
    assert "const_add" not in names(proto)
    assert "bias" in {i.name for i in proto.graph.initializer}
    np.testing.assert_allclose(run(tmp_path / "out" / "model.onnx")["logits"], run(model)["logits"], rtol=1e-6)


def test_renames_are_applied_and_followed_by_the_check(tmp_path: Path, model: Path) -> None:
    proto, summary = surgery(
        tmp_path,
        model,
        [{"rename_inputs": {"input": "x"}}, {"rename_outputs": {"logits": "y"}}, {"rename_outputs": {"y": "scores"}}],
    )
    assert [i.name for i in proto.graph.input] == ["x"] and [o.name for o in proto.graph.output] == ["scores"]
    assert summary["check_max_abs"] == 0.0
    np.testing.assert_array_equal(run(tmp_path / "out" / "model.onnx", name="x")["scores"], run(model)["logits"])


def test_rename_of_a_missing_tensor_is_an_error(tmp_path: Path, model: Path) -> None:
    with pytest.raises(ValueError, match="rename_inputs: no graph input 'images'"):
        surgery(tmp_path, model, [{"rename_inputs": {"images": "x"}}])


def test_set_dims_makes_batch_static_and_checks_at_that_size(tmp_path: Path, model: Path) -> None:
    proto, _ = surgery(
        tmp_path, model, [{"rename_inputs": {"input": "x"}}, {"set_dims": {"x": [2, 4], "logits": [2, 3]}}]
    )
    assert dims(proto.graph.input[0]) == [2, 4] and dims(proto.graph.output[0]) == [2, 3]
    assert run(tmp_path / "out" / "model.onnx", batch=2, name="x")["logits"].shape == (2, 3)
    with pytest.raises(Exception, match="(?i)dimension"):  # static now: batch 3 is refused
        run(tmp_path / "out" / "model.onnx", batch=3, name="x")


def test_set_dims_can_rename_a_dynamic_dim(tmp_path: Path, model: Path) -> None:
    proto, _ = surgery(tmp_path, model, [{"set_dims": {"input": ["N", 4], "logits": ["N", 3]}}])
    assert dims(proto.graph.input[0]) == ["N", 4] and dims(proto.graph.output[0]) == ["N", 3]


def test_remove_node_reconnects_consumers(tmp_path: Path, model: Path) -> None:
    proto, _ = surgery(tmp_path, model, [{"remove_node": "ident"}])
    relu = next(n for n in proto.graph.node if n.name == "relu")
    assert "ident" not in names(proto) and list(relu.input) == ["mm"]


def test_remove_node_feeding_a_graph_output_keeps_the_output_name(tmp_path: Path, model: Path) -> None:
    proto, _ = surgery(tmp_path, model, [{"remove_node": "final"}])
    add = next(n for n in proto.graph.node if n.name == "add")
    assert "final" not in names(proto) and list(add.output) == ["logits"]
    assert [o.name for o in proto.graph.output] == ["logits"]


def test_remove_node_that_changes_the_numbers_fails_the_check(tmp_path: Path, model: Path) -> None:
    with pytest.raises(ValueError, match="output logits: max abs diff"):
        surgery(tmp_path, model, [{"remove_node": "relu"}])
    with pytest.raises(ValueError, match="remove_node: no node named 'nope'"):
        surgery(tmp_path, model, [{"remove_node": "nope"}])


def test_python_op(tmp_path: Path, model: Path, recipe_dir: Path) -> None:
    proto, summary = surgery(tmp_path, model, [{"python": "surgery_ops.py:relu_as_max"}], recipe_dir)
    assert "relu_max" in names(proto) and "Relu" not in {n.op_type for n in proto.graph.node}
    assert summary["check_max_abs"] == 0.0


def test_python_op_by_module_name(tmp_path: Path, model: Path, recipe_dir: Path) -> None:
    proto, _ = surgery(tmp_path, model, [{"python": "surgery_ops:relu_as_max"}], recipe_dir)
    assert "relu_max" in names(proto)


@pytest.mark.parametrize("fn", ["relu_to_sigmoid", "double_output"])
def test_a_broken_python_op_fails_naming_the_output(tmp_path: Path, model: Path, recipe_dir: Path, fn: str) -> None:
    with pytest.raises(ValueError, match=r"output logits: max abs diff [0-9.e+-]+ > atol 0.0001") as info:
        surgery(tmp_path, model, [{"python": f"surgery_ops.py:{fn}"}], recipe_dir)
    assert "check: false" in str(info.value)


def test_check_false_lets_an_intended_change_through(tmp_path: Path, model: Path, recipe_dir: Path) -> None:
    proto, summary = surgery(tmp_path, model, [{"python": "surgery_ops.py:double_output"}], recipe_dir, check=False)
    assert "double" in names(proto) and "check_max_abs" not in summary


def test_python_op_must_return_the_graph(tmp_path: Path, model: Path, recipe_dir: Path) -> None:
    with pytest.raises(ValueError, match="returned NoneType, expected the gs.Graph"):
        surgery(tmp_path, model, [{"python": "surgery_ops.py:forgets_to_return"}], recipe_dir)
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        surgery(tmp_path, model, [{"python": "surgery_ops.py:missing"}], recipe_dir)


def test_output_is_deterministic(tmp_path: Path, model: Path) -> None:
    ops = ["fold_constants", "cleanup", "toposort"]
    first = surgery(tmp_path / "a", model, ops)[0]
    second = surgery(tmp_path / "b", model, ops)[0]
    assert first.SerializeToString(deterministic=True) == second.SerializeToString(deterministic=True)
    assert (tmp_path / "a" / "out" / "model.onnx").read_bytes() == (tmp_path / "b" / "out" / "model.onnx").read_bytes()


@pytest.mark.parametrize(
    "ops, message",
    [
        (["clean"], "unknown op 'clean' \\(did you mean 'cleanup'\\?\\)"),
        ([{"remove_node": 3}], "valid string"),
        ([{"set_dims": {"input": [0, 4]}}], r"input\[0\]: expected a positive int or a dim name, got 0"),
        ([{"rename_inputs": {}}], "at least 1 item"),
        ([{"rename_outputs": {"a": "z", "b": "z"}}], "same name"),
        ([{"python": "no_function_here"}], "should match pattern"),
        ([{"cleanup": 1}], "should be None"),
        ([{"remove_node": "a", "cleanup": None}], "one key"),
        ("cleanup", "valid list"),
    ],
)
def test_invalid_ops_are_validation_errors(ops: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OnnxSurgery.Params.model_validate({"ops": ops})


def test_params_round_trip_in_the_recipe_form() -> None:
    ops = ["cleanup", {"rename_inputs": {"input": "x"}}, {"set_dims": {"x": [1, "n"]}}, {"cleanup": None}]
    params = OnnxSurgery.Params.model_validate({"ops": ops})
    dumped = params.model_dump(mode="json")["ops"]
    assert dumped == ["cleanup", {"rename_inputs": {"input": "x"}}, {"set_dims": {"x": [1, "n"]}}, "cleanup"]
    assert OnnxSurgery.Params.model_validate({"ops": dumped}) == params
    assert all(f.description for f in OnnxSurgery.Params.model_fields.values())


def test_fingerprint_names_the_python_ops() -> None:
    class Keys:
        recipe_dir = Path(".")

        def file_digest(self, path: Path) -> str:
            return "x"

        def code_digest(self, ref: str, source: str | None = None) -> dict:
            return {"ref": ref}

    params = OnnxSurgery.Params.model_validate({"ops": ["cleanup", {"python": "a.py:f"}, {"python": "b:g"}]})
    assert OnnxSurgery().fingerprint(params, None, Keys()) == {"python_ops": [{"ref": "a.py:f"}, {"ref": "b:g"}]}
    assert OnnxSurgery().fingerprint(OnnxSurgery.Params(), None, Keys()) == {}
