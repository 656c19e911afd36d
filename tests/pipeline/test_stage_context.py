"""The stage contract's typed surface: `Stage[P]` gives the kind its Params, `StageContext` hands out inputs
by what they are and names what is wrong when a kind asks for the wrong thing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.stage import DatasetInput, OutputSpec, Params, Stage, StageContext


class ScaleParams(Params):
    factor: int = 2


class Scale(Stage[ScaleParams]):
    kind = "test.scale"
    outputs = {"model": OutputSpec("out.txt")}


def context(tmp_path: Path, **inputs: object) -> StageContext[ScaleParams]:
    return StageContext(stage="scale", params=ScaleParams(), inputs=inputs, outdir=tmp_path, recipe_dir=tmp_path)  # type: ignore[arg-type]


def test_a_kind_declared_with_its_params_type_gets_them_as_Params() -> None:
    assert Scale.Params is ScaleParams
    assert Scale.Params.model_validate({"factor": 3}).factor == 3


def test_a_kind_whose_Params_contradicts_its_declared_type_is_refused() -> None:
    class Other(Params):
        pass

    with pytest.raises(TypeError, match=r"Params is Other but the class is declared Stage\[ScaleParams\]"):

        class Confused(Stage[ScaleParams]):
            Params = Other


def test_a_kind_that_sets_Params_the_old_way_still_works() -> None:
    class Old(Stage):
        Params = ScaleParams

    assert Old.Params is ScaleParams


def test_path_and_dataset_return_inputs_by_what_they_are(tmp_path: Path) -> None:
    data = DatasetInput("calib", {"kind": "synthetic"}, tmp_path)
    ctx = context(tmp_path, model=str(tmp_path / "m.onnx"), data=data)
    assert ctx.path("model") == tmp_path / "m.onnx" and isinstance(ctx.path("model"), Path)
    assert ctx.dataset("data") is data
    assert ctx.optional_path("checkpoint") is None and ctx.optional_dataset("val") is None


def test_asking_for_the_wrong_sort_of_input_names_stage_input_and_what_it_is(tmp_path: Path) -> None:
    ctx = context(tmp_path, model=tmp_path / "m.onnx", data=DatasetInput("calib", {"kind": "synthetic"}, tmp_path))
    with pytest.raises(TypeError, match=r"^stage scale: input 'data' is a dataset \(data.calib\), not an artifact$"):
        ctx.path("data")
    with pytest.raises(TypeError, match=r"^stage scale: input 'model' is an artifact \(m.onnx\), not a dataset$"):
        ctx.dataset("model")
    with pytest.raises(LookupError, match=r"^stage scale: no input 'weights' connected \(inputs: data, model\)$"):
        ctx.path("weights")


def test_warn_keeps_each_warning_once_as_one_line_and_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = context(tmp_path)
    ctx.warn("calibrated on 4 samples:\n  scales are unreliable")
    ctx.warn("calibrated on 4 samples: scales are unreliable")
    ctx.warn("timing is noisy")
    assert ctx.warnings == ["calibrated on 4 samples: scales are unreliable", "timing is noisy"]
    assert capsys.readouterr().out == (
        "WARNING: scale: calibrated on 4 samples: scales are unreliable\nWARNING: scale: timing is noisy\n"
    )


def test_an_output_is_found_by_its_declared_name_and_a_wrong_name_says_which_exist(tmp_path: Path) -> None:
    ctx = StageContext(
        stage="scale",
        params=ScaleParams(),
        inputs={},
        outdir=tmp_path,
        recipe_dir=tmp_path,
        outputs={"model": OutputSpec("m.onnx"), "report": OutputSpec("r.json")},
    )
    assert ctx.output("report") == tmp_path / "r.json"
    with pytest.raises(LookupError, match=r"stage scale: no output 'repotr' declared \(outputs: model, report\)"):
        ctx.output("repotr")
