"""The Triton repository checks on their own: one fixture repository per class of what Triton rejects (or only
warns about), each caught with its one-line message; Triton's documented example configs accepted.

Fixtures live in triton_fixtures/<class>/: `repository/` (the model folders), `fixture.json` (why it is wrong,
`members`: engine.json records in triton_fixtures/engines/ for the files Triton would load, `make`: ONNX files
the test builds from tests/stages/graphs.py), and `expected.txt` (every problem `check_repository` must report,
one per line, in order). triton_fixtures/docs/ holds the example configs of Triton's documentation, verbatim.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from triton_fixture import CLASSES, FIXTURES, materialize, meta

from stages.packaging.members import member_from
from stages.packaging.triton.core import Identity, identity
from stages.packaging.triton.parse import parse_config
from stages.packaging.triton.repository import check_repository
from stages.packaging.triton.rules import check_config

pytest.importorskip("tritonclient.grpc")

DOCS = FIXTURES / "docs"
WHOLE = sorted(p.name for p in DOCS.glob("*.pbtxt") if ".fragment." not in p.name)
FRAGMENTS = sorted(p.name for p in DOCS.glob("*.fragment.pbtxt"))


def checked(name: str, tmp_path: Path) -> list[str]:
    """check_repository on a copy of fixture `name`, its ONNX files built and its engines given."""
    repo = materialize(name, tmp_path / "repository")
    members = {key: member_from(key, FIXTURES / path) for key, path in meta(name).get("members", {}).items()}
    return check_repository(repo, members)


@pytest.mark.parametrize("name", CLASSES)
def test_each_class_is_rejected_with_its_one_line_messages(name: str, tmp_path: Path) -> None:
    expected = (FIXTURES / name / "expected.txt").read_text().splitlines()
    assert expected, f"{name}: a fixture must expect at least one problem"
    got = checked(name, tmp_path)
    assert got == expected
    assert all("\n" not in line for line in got)


# What Triton rejects or only warns about (the anchors' notes, section 1.2 and 1.6, and the task's list): each
# class has a fixture. A class dropped from the fixtures fails here, not silently.
REQUIRED = {
    "identity": ["identity_no_backend", "identity_pair", "identity_unknown_platform", "name_not_folder"],
    "batching": [
        "max_batch_negative",
        "preferred_batch_zero",
        "preferred_batch_over_max",
        "priority_default_level",
        "priority_queue_policy_level",
        "preserve_ordering_priorities",
        "preserve_ordering_delay",
    ],
    "I/O": [
        "io_no_name",
        "io_no_data_type",
        "io_empty_dims",
        "dims_zero",
        "reshape_element_count",
        "reshape_empty_non_batching",
    ],
    "instances": [
        "kind_gpu_openvino",
        "kind_gpu_cpu_engine",
        "kind_cpu_with_gpus",
        "kind_cpu_tensorrt",
        "profile_not_tensorrt",
        "instance_count_negative",
    ],
    "cache": ["cache_with_sequence_batching", "cache_with_decoupled"],
    "ensemble": [
        "ensemble_step_no_model",
        "ensemble_tensor_produced_twice",
        "ensemble_input_unused",
        "ensemble_step_data_type",
        "ensemble_batch_over_step",
        "ensemble_with_instance_group",
    ],
    "vs. model": [
        "onnx_batch_dim_static",
        "onnx_rank",
        "onnx_data_type",
        "tensorrt_max_batch",
        "openvino_range_dims",
        "openvino_static_batch",
        "dtype_unmapped",
    ],
    "per-GPU plans": ["cc_key_wrong_capability", "cc_key_gpu_name", "cc_key_missing", "cc_file_missing"],
    "versions": ["version_leading_zero", "version_not_integer", "version_specific_missing", "no_version_folder"],
    "L0": ["l0_unknown_field", "l0_bad_enum", "l0_wrong_type"],
}


def test_every_class_triton_rejects_or_warns_about_has_a_fixture() -> None:
    missing = [name for names in REQUIRED.values() for name in names if name not in CLASSES]
    assert missing == []
    assert "cc_same_capability" in CLASSES  # T4 and RTX 2080 are both 7.5 (server#5164)


def test_the_task_example_line_is_what_a_dim_of_zero_gives(tmp_path: Path) -> None:
    assert checked("dims_zero", tmp_path) == ["digits_fp32/config.pbtxt: input[0].dims[0]: 0 is not >= 1 or -1"]


def test_a_version_folder_triton_would_skip_is_an_error_but_the_repository_else_passes(tmp_path: Path) -> None:
    repo = tmp_path / "repository"
    shutil.copytree(FIXTURES / "version_leading_zero" / "repository", repo)
    assert check_repository(repo) == ["m/01: a version folder with a leading zero: Triton skips it with only a warning"]
    shutil.rmtree(repo / "m" / "01")
    assert check_repository(repo) == []


def test_an_engine_given_for_a_file_that_is_not_there_is_a_problem(tmp_path: Path) -> None:
    repo = tmp_path / "repository"
    shutil.copytree(FIXTURES / "tensorrt_max_batch" / "repository", repo)
    members = {"trt/1/model.T4.plan": member_from("t4", FIXTURES / "engines" / "trt_T4")}
    lines = check_repository(repo, members)
    assert "trt/1/model.T4.plan: an engine is given for it, but the repository has no such file" in lines


def test_the_identity_is_completed_as_triton_completes_it() -> None:
    """core AutoCompleteBackendFields: the name from the folder, the backend from the platform, the default file
    name or the version folder's files, in Triton's order; a `<model>.<backend>` folder names a custom backend."""

    def complete(text: str, folder: str, files: set[str] = set()) -> tuple[Identity, str | None]:
        config, problems = parse_config(text, "x")
        assert problems == []
        return identity(config, folder, files)

    assert complete("", "m", {"model.onnx"}) == (Identity("m", "onnxruntime_onnx", "onnxruntime", "model.onnx"), None)
    assert complete('platform: "tensorrt_plan"', "m") == (
        Identity("m", "tensorrt_plan", "tensorrt", "model.plan"),
        None,
    )
    assert complete('backend: "openvino"', "m") == (Identity("m", "", "openvino", "model.xml"), None)
    assert complete("", "m.identity") == (Identity("m.identity", "", "identity", "model.identity"), None)
    # model.plan as the default file makes it TensorRT, whose pair with an ONNX Runtime platform is an error.
    text = 'platform: "onnxruntime_onnx"\ndefault_model_filename: "model.plan"'
    assert complete(text, "m")[0].backend == "tensorrt"
    assert l0_l1(text, "m") == [
        "m/config.pbtxt: platform: 'onnxruntime_onnx' does not go with backend 'tensorrt' "
        "(Triton: unexpected 'platform' and 'backend' pair)"
    ]


def l0_l1(text: str, folder: str = "doc") -> list[str]:
    config, problems = parse_config(text, f"{folder}/config.pbtxt")
    return problems if config is None else check_config(config, f"{folder}/config.pbtxt", folder)


@pytest.mark.parametrize("name", WHOLE)
def test_the_documented_example_configs_are_accepted(name: str) -> None:
    text = (DOCS / name).read_text()
    assert text.startswith("# Source: triton-inference-server/server docs/user_guide/")
    assert l0_l1(text) == []


@pytest.mark.parametrize("name", FRAGMENTS)
def test_the_documented_fragments_parse_and_are_accepted_in_a_config(name: str) -> None:
    """A fragment (an instance_group, a version policy...) is checked added to the minimal example config."""
    fragment = (DOCS / name).read_text()
    assert parse_config(fragment, "fragment")[1] == []
    got = l0_l1((DOCS / "minimal.pbtxt").read_text() + fragment)
    if name.startswith("reshape_"):
        # The docs' reshape examples leave out data_type (they show the reshape only): core's ValidateIOShape
        # requires it, and that is all it finds; the reshape itself (empty, on a batching model) is accepted.
        side = "input[2]" if name == "reshape_input.fragment.pbtxt" else "output[1]"
        assert got == [f"doc/config.pbtxt: {side}.data_type: missing for 'in' (Triton: must specify 'data_type')"]
        fixed = fragment.replace('name: "in"', 'name: "in"\n      data_type: TYPE_FP32')
        assert l0_l1((DOCS / "minimal.pbtxt").read_text() + fixed) == []
    else:
        assert got == []


def test_the_docs_cover_their_sections() -> None:
    assert len(WHOLE) == 6 and len(FRAGMENTS) == 16
