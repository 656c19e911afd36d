"""Keys that see all the code a stage runs: imported modules, installed distributions, dataset code."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from harness import Project

RECIPE = (
    "name: toy\nplugins: [toystages]\n"
    "data:\n"
    "  words: {kind: python, python: 'userpkg.datasets:words'}\n"
    "  nums: {kind: python, python: 'userpkg.numbers:nums'}\n"
    "stages:\n"
    "  gen: {uses: toy.call, with: {fn: 'userpkg.textgen:make'}}\n"
    "  plain: {uses: toy.call, with: {fn: 'userpkg.plain:make'}}\n"
    "  read_words: {uses: toy.data, inputs: {data: data.words}}\n"
    "  read_nums: {uses: toy.data, inputs: {data: data.nums}}\n"
)

CODE = {
    # gen -> userpkg.textgen -> userpkg.words (inside a function) -> userpkg.vocab: two imports away
    "userpkg/textgen.py": "def make() -> str:\n    from userpkg import words\n    return words.text()\n",
    "userpkg/words.py": "from .vocab import WORDS\n\ndef text() -> str:\n    return ' '.join(WORDS) + '\\n'\n",
    "userpkg/vocab.py": "WORDS = ['alpha', 'beta']\n",
    "userpkg/plain.py": "def make() -> str:\n    return 'plain\\n'\n",
    # two datasets defined in sibling modules: an edit to one is not an edit to the other
    "userpkg/datasets.py": "def words():\n    from userpkg.vocab import WORDS\n    yield from ()\n",
    "userpkg/numbers.py": "def nums():\n    yield from ()\n",
}


def _setup(project: Project) -> None:
    for rel, text in CODE.items():
        (project.root / rel).write_text(text)
    project.write_recipe(RECIPE)


def _rows(record: dict) -> dict[str, dict]:
    return {s["stage"]: s for s in record["stages"]}


def test_an_edit_two_imports_away_reruns_exactly_the_stages_that_reach_it(project: Project) -> None:
    _setup(project)
    assert project.cli("run", "toy.yaml").returncode == 0
    assert sorted(project.runs()) == ["gen", "plain", "read_nums", "read_words"]
    (project.root / "userpkg" / "vocab.py").write_text("WORDS = ['alpha', 'beta', 'gamma']\n")
    plan = json.loads(project.cli("plan", "toy.yaml", "--json").stdout)
    decisions = {d["stage"]: d for d in plan}
    assert decisions["gen"]["reasons"] == ["code: module userpkg.vocab changed"]
    assert decisions["read_words"]["reasons"] == ["data.words code: module userpkg.vocab changed"]
    assert decisions["plain"]["status"] == decisions["read_nums"]["status"] == "cached"
    proc, record = project.run_json("toy.yaml")
    assert proc.returncode == 0, proc.stderr
    assert sorted(project.runs()[4:]) == ["gen", "read_words"]
    assert "gamma" in Path(project.cli("show", "toy.yaml", "gen").stdout.split()[-1]).read_text()


def test_a_dataset_key_holds_its_own_module_not_its_siblings(project: Project) -> None:
    _setup(project)
    assert project.cli("run", "toy.yaml").returncode == 0
    (project.root / "userpkg" / "numbers.py").write_text("def nums():\n    yield from ()  # edited\n")
    proc, record = project.run_json("toy.yaml")
    assert proc.returncode == 0, proc.stderr
    rows = _rows(record)
    assert rows["read_nums"]["status"] == "ran" and rows["read_words"]["status"] == "cached"
    assert rows["read_nums"]["reasons"] == ["data.nums code: module userpkg.numbers changed"]


def _install(site: Path, version: str) -> None:
    """A distribution `toyweights` as pip lays it out (what a weights package looks like to the key)."""
    if site.exists():
        shutil.rmtree(site)
    info = site / f"toyweights-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: toyweights\nVersion: {version}\n")
    (info / "top_level.txt").write_text("toyweights\n")
    (site / "toyweights").mkdir()
    (site / "toyweights" / "__init__.py").write_text("SCALE = 1\n")


def test_a_new_version_of_an_imported_distribution_reruns_the_stage(project: Project, tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    _install(site, "1.0")
    (project.root / "userpkg" / "weighted.py").write_text(
        "def make() -> str:\n    import toyweights\n    return f'scale {toyweights.SCALE}\\n'\n"
    )
    project.write_recipe(
        "name: toy\nplugins: [toystages]\nstages:\n"
        "  gen: {uses: toy.call, with: {fn: 'userpkg.weighted:make'}}\n"
        "  other: {uses: toy.call, with: {fn: 'userpkg.textgen:make'}}\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    assert project.cli("run", "toy.yaml", env=env).returncode == 0
    assert project.cli("status", "toy.yaml", env=env).returncode == 0
    _install(site, "1.1")  # same files, new version: a weights package's new release
    assert project.cli("status", "toy.yaml", env=env).returncode == 1
    plan = json.loads(project.cli("plan", "toy.yaml", "--json", env=env).stdout)
    decisions = {d["stage"]: d for d in plan}
    assert decisions["gen"]["reasons"] == ["code: toyweights 1.0 -> 1.1"]
    assert decisions["other"]["status"] == "cached"
    proc = project.cli("run", "toy.yaml", env=env)
    assert proc.returncode == 0, proc.stderr
    assert project.runs()[2:] == ["gen"]
