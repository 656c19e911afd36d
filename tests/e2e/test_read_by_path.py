"""Discovered inputs: files the code opens by path (weights, tables, folders) are recorded while a stage
runs and checked before its record is served, so editing one reruns exactly the stages that read it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness import Project

RECIPE = (
    "name: toy\nplugins: [toystages]\n"
    "data:\n"
    "  rows: {kind: python, python: 'userpkg.tables:rows'}\n"
    "stages:\n"
    "  weights: {uses: toy.call, with: {fn: 'userpkg.weights:make'}}\n"
    "  plain: {uses: toy.call, with: {fn: 'userpkg.plain:make'}}\n"
    "  count: {uses: toy.count, inputs: {data: data.rows}}\n"
)

CODE = {
    # reads a file beside the recipe and one outside its folder, by path: no import names either
    "userpkg/weights.py": (
        "from pathlib import Path\n"
        "HERE = Path(__file__).parent\n"
        "def make() -> str:\n"
        "    w = (HERE.parent / 'weights' / 'w.txt').read_text()\n"
        "    far = HERE.parent.parent / 'outside' / 'bias.txt'\n"
        "    return w + (far.read_text() if far.exists() else 'no bias')\n"
    ),
    "userpkg/plain.py": "def make() -> str:\n    return 'plain\\n'\n",
    # a dataset reading a CSV and every file of a folder it lists
    "userpkg/tables.py": (
        "import csv\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "HERE = Path(__file__).parent\n"
        "def rows():\n"
        "    with open(HERE / 'rows.csv', newline='') as f:\n"
        "        values = [float(r[0]) for r in csv.reader(f)]\n"
        "    for p in sorted((HERE / 'extra').iterdir()):\n"
        "        values.append(float(p.read_text()))\n"
        "    yield {'x': np.asarray(values, dtype=np.float32).reshape(-1, 1)}\n"
    ),
    "userpkg/rows.csv": "1\n2\n3\n",
    "userpkg/extra/a.txt": "10\n",
    "weights/w.txt": "w1\n",
}


def _setup(project: Project) -> Path:
    for rel, text in CODE.items():
        (project.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (project.root / rel).write_text(text)
    outside = project.root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "bias.txt").write_text("b1\n")
    project.write_recipe(RECIPE)
    return outside


def _assert_recorded(lock: dict) -> None:
    """What the toy recipe's stages read by path, as their lock entries name it."""
    assert set(lock["weights"]["discovered"]) == {"file:weights/w.txt", "file:../outside/bias.txt"}
    assert set(lock["count"]["discovered"]) == {
        "file:userpkg/rows.csv",
        "file:userpkg/extra/a.txt",
        "dir:userpkg/extra",
    }


def _plan(project: Project, *args: str) -> dict[str, dict]:
    proc = project.cli("plan", "toy.yaml", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return {d["stage"]: d for d in json.loads(proc.stdout)}


def test_a_file_read_by_path_is_recorded_and_an_edit_reruns_only_its_readers(project: Project) -> None:
    outside = _setup(project)
    assert project.cli("run", "toy.yaml").returncode == 0
    assert sorted(project.runs()) == ["count", "plain", "weights"]
    lock = project.lock()
    _assert_recorded(lock)
    assert "discovered" not in lock["plain"]  # nothing read by path: the record is as before
    assert project.cli("run", "toy.yaml").returncode == 0
    assert len(project.runs()) == 3  # all cached

    (project.root / "weights" / "w.txt").write_text("w2\n")
    (outside / "bias.txt").write_text("b2\n")
    (project.root / "userpkg" / "rows.csv").write_text("1\n2\n4\n")
    plan = _plan(project)
    assert plan["weights"]["reasons"] == ["read file ../outside/bias.txt changed", "read file weights/w.txt changed"]
    assert plan["count"]["reasons"] == ["read file userpkg/rows.csv changed"]
    assert plan["plain"]["status"] == "cached"
    assert project.cli("status", "toy.yaml").returncode == 1

    assert project.cli("run", "toy.yaml").returncode == 0
    assert sorted(project.runs()[3:]) == ["count", "weights"]
    weights = Path(project.cli("show", "toy.yaml", "weights").stdout.split()[-1]).read_text()
    assert weights == "w2\nb2\n"
    assert project.cli("status", "toy.yaml").returncode == 0


def test_a_folder_listed_by_the_code_reruns_when_a_file_is_added(project: Project) -> None:
    _setup(project)
    assert project.cli("run", "toy.yaml", "count").returncode == 0
    (project.root / "userpkg" / "extra" / "b.txt").write_text("20\n")
    assert _plan(project, "count")["count"]["reasons"] == ["listed folder userpkg/extra changed"]
    assert project.cli("run", "toy.yaml", "count").returncode == 0
    assert project.runs() == ["count", "count"]
    count = Path(project.cli("show", "toy.yaml", "count").stdout.split()[-1]).read_text()
    assert count == "5 36"


def test_a_discovered_file_missing_here_is_a_rerun_not_a_hit(project: Project) -> None:
    outside = _setup(project)
    assert project.cli("run", "toy.yaml", "weights").returncode == 0
    shutil.rmtree(outside)
    assert _plan(project, "weights")["weights"]["reasons"] == ["read file ../outside/bias.txt is missing here"]
    assert project.cli("run", "toy.yaml", "weights").returncode == 0
    assert project.runs() == ["weights", "weights"]
    assert set(project.lock()["weights"]["discovered"]) == {"file:weights/w.txt"}  # what this build read
    assert project.cli("run", "toy.yaml", "weights").returncode == 0
    assert project.runs() == ["weights", "weights"]


def test_a_file_inside_an_installed_distribution_enters_by_its_version(project: Project, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "fakeweights").mkdir(parents=True)
    (site / "fakeweights" / "table.txt").write_text("t1\n")
    info = site / "fakeweights-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeweights\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("fakeweights\n")
    (project.root / "userpkg" / "table.py").write_text(
        "import sys\nfrom pathlib import Path\n"
        "def make() -> str:\n"  # found on sys.path and read, never imported
        "    return next(Path(p, 'fakeweights', 'table.txt') for p in sys.path if Path(p, 'fakeweights').is_dir())"
        ".read_text()\n"
    )
    project.write_recipe(
        "name: toy\nplugins: [toystages]\nstages:\n  t: {uses: toy.call, with: {fn: 'userpkg.table:make'}}\n"
    )
    env = {"PYTHONPATH": str(site)}
    assert project.cli("run", "toy.yaml", env=env).returncode == 0
    assert project.lock()["t"]["discovered"] == {"dist:fakeweights": "1.0"}
    assert project.cli("run", "toy.yaml", env=env).returncode == 0
    assert project.runs() == ["t"]
    info.rename(site / "fakeweights-1.1.dist-info")
    (site / "fakeweights-1.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fakeweights\nVersion: 1.1\n"
    )
    proc = project.cli("plan", "toy.yaml", "--json", env=env)
    assert json.loads(proc.stdout)[0]["reasons"] == ["read distribution fakeweights: 1.0 -> 1.1"]
    assert project.cli("run", "toy.yaml", env=env).returncode == 0
    assert project.runs() == ["t", "t"]


def test_in_process_runs_record_the_same_inputs(project: Project) -> None:
    _setup(project)
    assert project.cli("run", "toy.yaml", "--in-process").returncode == 0
    lock = project.lock()
    _assert_recorded(lock)
