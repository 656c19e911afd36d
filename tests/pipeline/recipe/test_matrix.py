"""`matrix:` stages (DVC 3's syntax and naming) and fan-in inputs: expansion, names, references, errors with
file:line, independent keys, --set on a variant, and --skip-unavailable building a fan-in without what cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import HEAD, TOY, Project

from pipeline.errors import RecipeError
from pipeline.recipe.load import load_recipe
from pipeline.stage import member_input

FLEET = (
    HEAD
    + """stages:
  build:
    matrix:
      precision: [fp16, int8]
      target: [{gpu: T4, cc: "7.5"}, {gpu: L4, cc: "8.9"}]
    name: ${item.precision}-${item.target.gpu}
    uses: toy.write
    with: {text: "${item.precision} on ${item.target.gpu} (sm ${item.target.cc})"}
  check:
    matrix:
      precision: [fp16, int8]
      target: [{gpu: T4, cc: "7.5"}, {gpu: L4, cc: "8.9"}]
    name: ${item.precision}-${item.target.gpu}
    uses: toy.upper
    from: build
  gather:
    uses: toy.gather
    inputs: {parts: [check@*, build@int8-L4]}
"""
)


@pytest.fixture(autouse=True)
def toy_on_path(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(TOY))


def _load(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return load_recipe(path, list(overrides))


def _error(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(RecipeError) as caught:
        _load(tmp_path, text, overrides)
    return str(caught.value)


def test_variants_are_named_and_interpolated_as_dvc_does(tmp_path: Path) -> None:
    r = _load(tmp_path, FLEET)
    variants = ["build@fp16-T4", "build@fp16-L4", "build@int8-T4", "build@int8-L4"]
    assert list(r.stages)[:4] == variants  # product in the matrix's key order, in place of the stage
    assert r.matrices["build"] == tuple(variants)
    assert r.stages["build@int8-L4"].params.text == "int8 on L4 (sm 8.9)"
    assert r.line("stages", "build@int8-L4", "with") == 10  # errors in a variant point at the stage's lines
    # variant to variant: check@fp16-L4 reads build@fp16-L4
    assert str(r.stages["check@fp16-L4"].inputs["model"]) == "build@fp16-L4.model"
    # a fan-in: every variant of check, then one build variant, each an input of its own
    parts = {k: str(v) for k, v in r.stages["gather"].inputs.items()}
    assert list(parts) == [
        member_input("parts", f"check@{s}") for s in ("fp16-T4", "fp16-L4", "int8-T4", "int8-L4")
    ] + [member_input("parts", "build@int8-L4")]


def test_scalars_name_by_value_mappings_by_their_name_and_whole_values_keep_their_type(tmp_path: Path) -> None:
    text = (
        HEAD
        + """stages:
  w:
    matrix: {repeat: [1, 3], kind: [{name: small, text: a}, {name: big, text: abcd}]}
    uses: toy.write
    with: {repeat: "${item.repeat}", text: "${item.kind.text}"}
"""
    )
    r = _load(tmp_path, text)
    assert list(r.stages) == ["w@1-small", "w@1-big", "w@3-small", "w@3-big"]
    assert r.stages["w@3-big"].params.repeat == 3 and r.stages["w@3-big"].params.text == "abcd"


def test_a_downstream_matrix_over_more_keys_reads_the_variant_with_its_values(tmp_path: Path) -> None:
    text = (
        HEAD
        + """stages:
  q:
    matrix: {rt: [ov, ort]}
    uses: toy.write
  e:
    matrix: {rt: [ov, ort], p: [a, b]}
    uses: toy.upper
    from: q
"""
    )
    r = _load(tmp_path, text)
    assert str(r.stages["e@ort-b"].inputs["model"]) == "q@ort.model"


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            "  a:\n    matrix: {p: [x]}\n    uses: toy.write\n    with: {text: '${item.q}'}\n",
            r"m.yaml:7: stages.a.with.text: \$\{item.q\}: no matrix key 'q' \(matrix keys: p\)",
        ),
        ("  a:\n    matrix: {p: []}\n    uses: toy.write\n", r"m.yaml:5: stages.a.matrix.p: empty list: no variants"),
        ("  a:\n    matrix: {p: x}\n    uses: toy.write\n", r"m.yaml:5: stages.a.matrix.p: expected a list of values"),
        (
            "  a:\n    matrix: {t: [{gpu: T4}]}\n    uses: toy.write\n",
            r"m.yaml:5: stages.a.matrix.t: its values are mappings: give each a `name`, or name the variants "
            r"with `name:` \(such as \$\{item.t.gpu\}\)",
        ),
        (
            "  a:\n    matrix: {p: ['1.5']}\n    uses: toy.write\n",
            r"m.yaml:5: stages.a.matrix: values \['1.5'\] name a variant '1.5': a variant's name takes letters",
        ),
        (
            "  a:\n    matrix: {p: [x, y]}\n    name: same\n    uses: toy.write\n",
            r"m.yaml:6: stages.a.name: two variants are both named a@same",
        ),
        (
            "  a: {uses: toy.write}\n  g: {uses: toy.gather, inputs: {parts: [a@*]}}\n",
            r"m.yaml:5: stages.g.inputs.parts.0: 'a@\*': 'a' is not a matrix stage",
        ),
        (
            "  a:\n    matrix: {p: [x, y]}\n    uses: toy.write\n  b: {uses: toy.upper, from: a}\n",
            r"m.yaml:7: stages.b.from: 'a' is a matrix stage \(a@x, a@y\): name one variant, all of them \(a@\*",
        ),
        (
            "  a:\n    matrix: {p: [x, y]}\n    uses: toy.write\n  b: {uses: toy.upper, from: 'a@*'}\n",
            r"m.yaml:7: stages.b.from: takes one artifact: a fan-in \(a@\*\) is for an input that takes many",
        ),
        (
            "  a: {uses: toy.write, with: {text: '${item.p}'}}\n",
            r"m.yaml:4: stages.a.with.text: uses \$\{item...\} but the stage declares no matrix",
        ),
        (
            "  a:\n    matrix: {p: [x]}\n    uses: toy.write\n  g: {uses: toy.gather, inputs: {parts: [a@x, a@x]}}\n",
            r"m.yaml:7: stages.g.inputs.parts.1: 'a@x' listed twice",
        ),
        (
            "  a:\n    matrix: {p: [x]}\n    uses: toy.write\n  g: {uses: toy.gather, inputs: {parts: [a@z]}}\n",
            r"m.yaml:7: stages.g.inputs.parts.0: unknown stage 'a@z' \(did you mean 'a@x'\?\)",
        ),
    ],
)
def test_bad_matrices_and_references_are_recipe_errors_with_file_and_line(
    tmp_path: Path, stages: str, message: str
) -> None:
    assert pytest.raises(RecipeError, _load, tmp_path, HEAD + "stages:\n" + stages).match(message)


def test_set_reaches_one_variant_or_the_matrix_itself(tmp_path: Path) -> None:
    r = _load(tmp_path, FLEET, ("stages.build@fp16-T4.with.repeat=2",))
    assert r.stages["build@fp16-T4"].params.repeat == 2 and r.stages["build@fp16-L4"].params.repeat == 1
    r = _load(tmp_path, FLEET, ("stages.build.matrix.precision=[int8]", "stages.check.matrix.precision=[int8]"))
    assert r.matrices["build"] == ("build@int8-T4", "build@int8-L4")
    assert "no stages.build@fp32-T4 in the recipe" in _error(tmp_path, FLEET, ("stages.build@fp32-T4.with.repeat=2",))


def test_variants_have_independent_keys_and_a_command_line_names_them(toy: Project) -> None:
    recipe = toy.load(FLEET)
    result, _ = toy.run(recipe)
    assert set(toy.statuses(result).values()) == {"ran"}
    gathered = (toy.cache / "toy" / "gather" / "gathered.txt").read_text().splitlines()
    assert gathered[0] == "check@fp16-T4: FP16 ON T4 (SM 7.5)" and gathered[-1] == "build@int8-L4: int8 on L4 (sm 8.9)"
    keys = {d.key for name, d in toy.plan(recipe).items() if name.startswith("build@")}
    assert len(keys) == 4

    before = len(toy.runs())
    edited = toy.load(FLEET.replace("(sm ${item.target.cc})", "(sm ${item.target.cc})\\n# a comment"), "b.yaml")
    decisions = toy.plan(edited)
    assert {n for n, d in decisions.items() if d.status == "run"} == set(edited.matrices["build"])
    result, _ = toy.run(edited)
    assert toy.runs()[before:][:4] == list(edited.matrices["build"])
    assert sorted(toy.runs()[before:][4:]) == sorted([*edited.matrices["check"], "gather"])

    proc = toy.cli("status", "toy.yaml", "check")  # a matrix stage's name stands for its variants
    assert proc.returncode == 0, proc.stderr
    assert "check@int8-L4" in proc.stdout and "gather" not in proc.stdout


SKIPPABLE = (
    HEAD
    + """stages:
  cpu: {uses: toy.write, with: {text: cpu}}
  gpu:
    matrix: {t: [a, b]}
    uses: toy.gpu
  gather: {uses: toy.gather, inputs: {parts: [gpu@*, cpu]}}
"""
)


def test_skip_unavailable_builds_a_fan_in_without_what_cannot_run_and_says_so(project: Project) -> None:
    project.write_recipe(SKIPPABLE)
    proc, record = project.run_json("toy.yaml", "--skip-unavailable")
    assert proc.returncode == 0, proc.stderr
    rows = {r["stage"]: r for r in record["stages"]}
    assert {n: r["status"] for n, r in rows.items()} == {
        "cpu": "ran",
        "gpu@a": "unavailable",
        "gpu@b": "unavailable",
        "gather": "ran",
    }
    assert rows["gather"]["warnings"] == ["built without gpu@a, gpu@b: cannot run here (--skip-unavailable)"]
    assert (project.cache / "toy" / "gather" / "gathered.txt").read_text() == "cpu: cpu\n"
    proc, record = project.run_json("toy.yaml", "--skip-unavailable")  # cached: still says what it left out
    rows = {r["stage"]: r for r in record["stages"]}
    assert rows["gather"]["status"] == "cached" and rows["gather"]["warnings"][0].startswith("built without gpu@a")
    proc, record = project.run_json("toy.yaml")  # without the flag the fan-in waits for every member
    rows = {r["stage"]: r for r in record["stages"]}
    assert proc.returncode == 4 and rows["gather"]["status"] == "skipped"


def test_a_fan_in_with_no_member_left_is_not_built(project: Project) -> None:
    project.write_recipe(SKIPPABLE.replace("[gpu@*, cpu]", "[gpu@*]"))
    proc, record = project.run_json("toy.yaml", "--skip-unavailable")
    rows = {r["stage"]: r["status"] for r in record["stages"]}
    assert proc.returncode == 0 and rows["gather"] == "skipped"


def test_the_order_of_a_fan_in_is_part_of_its_key(toy: Project) -> None:
    """A kind reads its members in recipe order (`ctx.members`): listing them the other way round is a new input,
    not a cached result written in the old order."""
    text = HEAD + "stages:\n  a: {uses: toy.write, with: {text: A}}\n  b: {uses: toy.write, with: {text: B}}\n"
    toy.run(toy.load(text + "  g: {uses: toy.gather, inputs: {parts: [a, b]}}\n"))
    swapped = toy.load(text + "  g: {uses: toy.gather, inputs: {parts: [b, a]}}\n")
    decision = toy.plan(swapped)["g"]
    assert decision.status == "run" and decision.reasons == ("fan-in order: parts[b], parts[a]",)
    toy.run(swapped)
    assert (toy.cache / "toy" / "g" / "gathered.txt").read_text() == "b: B\na: A\n"


def test_plan_says_what_a_fan_in_goes_without_and_a_remote_copy_that_fails_is_rebuilt(
    project: Project, tmp_path: Path
) -> None:
    project.write_recipe(SKIPPABLE)
    proc = project.cli("plan", "toy.yaml", "--skip-unavailable")
    assert proc.returncode == 0 and "without gpu@a, gpu@b (cannot run here)" in proc.stdout.replace("\n", " ")
    remote = f"file://{tmp_path / 'remote'}"
    proc, _ = project.run_json("toy.yaml", "--skip-unavailable", "--remote", remote)
    assert proc.returncode == 0, proc.stderr
    tampered = [p for p in (tmp_path / "remote").rglob("*") if p.is_file() and p.read_bytes() == b"cpu: cpu\n"]
    assert tampered
    for path in tampered:
        path.chmod(0o644)
        path.write_bytes(b"not what was built\n")
    other = {"PIPELINE_CACHE": str(tmp_path / "other-cache")}
    proc, record = project.run_json("toy.yaml", "--skip-unavailable", "--remote", remote, env=other)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["stage"]: r for r in record["stages"]}
    assert rows["gather"]["status"] == "ran" and rows["gather"]["warnings"][0].startswith("built without gpu@a")
    assert (tmp_path / "other-cache" / "toy" / "gather" / "gathered.txt").read_text() == "cpu: cpu\n"
