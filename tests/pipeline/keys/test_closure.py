"""Import closures: the code a stage runs, found by reading imports (pipeline/keys/closure.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cache.hashing import DigestMemo
from pipeline.keys.closure import MISSING, ClosureFinder, code_closure, kind_closure


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


USER_CODE = {
    "model.py": "import helpers\n\ndef build():\n    return helpers.width()\n",
    # the second hop is imported inside a function, and relative to its package
    "helpers/__init__.py": "def width():\n    from .labels import LABELS\n    return len(LABELS)\n",
    "helpers/labels.py": "import json, os\nLABELS = ['a', 'b']\n",
    "helpers/unused.py": "X = 1\n",
    "sibling.py": "def other():\n    return 2\n",
}


def test_closure_follows_imports_two_hops_away_and_nothing_else(tmp_path: Path) -> None:
    _write(tmp_path, USER_CODE)
    found = code_closure("model:build", tmp_path, DigestMemo(None))
    assert sorted(found["modules"]) == ["helpers", "helpers.labels", "model"]  # no sibling, no unused, no stdlib
    assert found["distributions"] == {}
    (tmp_path / "helpers" / "labels.py").write_text("import json, os\nLABELS = ['a', 'b', 'c']\n")
    edited = code_closure("model:build", tmp_path, DigestMemo(None))
    changed = [m for m in found["modules"] if found["modules"][m] != edited["modules"][m]]
    assert changed == ["helpers.labels"]
    (tmp_path / "sibling.py").write_text("def other():\n    return 3\n")
    assert code_closure("model:build", tmp_path, DigestMemo(None)) == edited  # a sibling is not part of it


def test_closure_is_the_same_in_two_checkouts(tmp_path: Path) -> None:
    for where in ("one", "two/deeper"):
        _write(tmp_path / where, USER_CODE)
    memo = DigestMemo(None)
    assert code_closure("model:build", tmp_path / "one", memo) == code_closure(
        "model:build", tmp_path / "two/deeper", memo
    )
    by_path = code_closure("model.py:build", tmp_path / "one", memo)
    assert "model.py" in by_path["modules"] and "helpers.labels" in by_path["modules"]  # named relative to the recipe
    assert not any(name.startswith("/") for name in by_path["modules"])


def test_type_checking_imports_and_the_engine_stay_out_missing_imports_go_in(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "m.py": "from typing import TYPE_CHECKING\nimport pipeline.stage\nif TYPE_CHECKING:\n"
            "    import not_installed_for_types\n\ndef f():\n    import not_installed_at_all\n"
        },
    )
    found = code_closure("m:f", tmp_path, DigestMemo(None))
    assert found == {"modules": {"m": found["modules"]["m"]}, "distributions": {"not_installed_at_all": MISSING}}


def test_missing_function_module_or_file_raise(tmp_path: Path) -> None:
    _write(tmp_path, USER_CODE)
    with pytest.raises(AttributeError, match="has no attribute 'biuld'"):
        code_closure("model:biuld", tmp_path, DigestMemo(None))
    with pytest.raises(ModuleNotFoundError, match="helpers.nosuch"):
        code_closure("helpers.nosuch:f", tmp_path, DigestMemo(None))
    with pytest.raises(FileNotFoundError):
        code_closure("gone.py:f", tmp_path, DigestMemo(None))


def _fake_dist(site: Path, name: str, version: str, direct_url: dict | None = None) -> Path:
    """An installed distribution `name` providing module `name`, as pip lays it out."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(f"{name}\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    (site / name).mkdir(exist_ok=True)
    (site / name / "__init__.py").write_text("WEIGHTS = 1\n")
    return info


def test_installed_distributions_enter_by_version_and_a_bump_is_seen_through_the_memo(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = _fake_dist(site, "weightspkg", "1.0")
    _write(tmp_path / "recipe", {"model.py": "def build():\n    import weightspkg\n    return weightspkg.WEIGHTS\n"})
    db = tmp_path / "state.db"
    memo = DigestMemo(db)
    finder = ClosureFinder(memo, [str(tmp_path / "recipe"), str(site)])
    first = finder.of_file(tmp_path / "recipe" / "model.py", "model")
    memo.flush()
    assert first.distributions == {"weightspkg": "1.0"} and list(first.modules) == ["model"]
    # pip upgrades it: the old dist-info goes, a new one comes (the folder's stamp changes)
    for f in info.iterdir():
        f.unlink()
    info.rmdir()
    _fake_dist(site, "weightspkg", "2.0")
    fresh = DigestMemo(db)  # the next run, reading the memo from disk
    again = ClosureFinder(fresh, [str(tmp_path / "recipe"), str(site)]).of_file(
        tmp_path / "recipe" / "model.py", "model"
    )
    assert again.distributions == {"weightspkg": "2.0"}


def test_a_distribution_installed_from_a_local_path_is_hashed_by_content(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _fake_dist(site, "localpkg", "0.1", {"url": "file:///src/localpkg", "dir_info": {}})
    _write(tmp_path / "recipe", {"model.py": "import localpkg\n"})
    finder = ClosureFinder(DigestMemo(None), [str(tmp_path / "recipe"), str(site)])
    found = finder.of_file(tmp_path / "recipe" / "model.py", "model")
    assert "localpkg" in found.modules and found.distributions == {}
    (site / "localpkg" / "__init__.py").write_text("WEIGHTS = 2\n")  # same version, new content
    edited = ClosureFinder(DigestMemo(None), [str(tmp_path / "recipe"), str(site)]).of_file(
        tmp_path / "recipe" / "model.py", "model"
    )
    assert edited.modules["localpkg"] != found.modules["localpkg"]


def test_model_source_adds_every_file_it_holds(tmp_path: Path) -> None:
    _write(tmp_path, {**USER_CODE, "assets/vocab.txt": "a b\n"})
    memo = DigestMemo(None)
    with_source = code_closure("model:build", tmp_path, memo, source="assets")
    (tmp_path / "assets" / "vocab.txt").write_text("a b c\n")
    assert code_closure("model:build", tmp_path, DigestMemo(None), source="assets")["source"] != with_source["source"]
    with pytest.raises(FileNotFoundError, match="model.source"):
        code_closure("model:build", tmp_path, memo, source="nowhere")


def test_every_kind_closure_holds_every_project_module_its_import_loads() -> None:
    """The derived closure never misses a stages module that importing the kind actually loads."""
    import importlib

    from pipeline.recipe.registry import Registry

    registry = Registry()
    kinds = {name: registry.get(name).__module__ for name in registry.names()}
    kinds |= {f"data {name}": registry.datasets.get(name).__module__ for name in registry.datasets.names()}
    assert len(kinds) >= 15
    memo = DigestMemo(None)
    for kind, module_name in kinds.items():
        loaded = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys, {module_name}; print(' '.join(m for m in sys.modules if m.startswith('stages.')))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        module = importlib.import_module(module_name)
        closure = kind_closure(module_name, Path(module.__file__), memo)
        assert set(loaded) <= set(closure["modules"]), (kind, set(loaded) - set(closure["modules"]))
        assert not any(m.startswith("pipeline") for m in closure["modules"]), kind  # the engine stays out


def test_a_dataset_kind_closure_reaches_what_its_reader_imports_and_a_stage_reaches_open_dataset() -> None:
    """The hand-kept lists once missed stages.common.refs (reached through the python dataset reader). Readers are
    found through entry points at run time, so a dataset's key holds its kind's closure (keys.dataset_parts)."""
    import stages.data.python as python_kind
    import stages.quantize_qdq as qdq

    reader = kind_closure(python_kind.__name__, Path(python_kind.__file__), DigestMemo(None))
    assert {"stages.common.refs", "stages.data.batching", "stages.data.base"} <= set(reader["modules"])
    assert reader["distributions"]["numpy"] != MISSING
    stage = kind_closure(qdq.__name__, Path(qdq.__file__), DigestMemo(None))
    assert "stages.data" in stage["modules"] and "stages.data.python" not in stage["modules"]


def test_a_folder_without_init_does_not_hide_the_module_import_finds(tmp_path: Path) -> None:
    """recipes/data/ (images) beside recipes/data.py (dataset code): Python imports data.py."""
    _write(
        tmp_path, {"data.py": "def calibration():\n    yield from ()\n", "data/cat.png": "x", "net.py": "import data\n"}
    )
    assert "data" in code_closure("net", tmp_path, DigestMemo(None))["modules"]
    found = code_closure("data:calibration", tmp_path, DigestMemo(None))
    assert list(found["modules"]) == ["data"]
    with pytest.raises(AttributeError):
        code_closure("data:calibrate", tmp_path, DigestMemo(None))


def test_extension_modules_are_hashed_and_win_over_a_py_of_the_same_name(tmp_path: Path) -> None:
    import importlib.machinery

    so = "fastops" + importlib.machinery.EXTENSION_SUFFIXES[0]
    _write(tmp_path, {"net.py": "import fastops\n", "fastops.py": "# stale pure-python twin\n"})
    (tmp_path / so).write_bytes(b"\x7fELF\x00binary-v1")
    first = code_closure("net", tmp_path, DigestMemo(None))
    (tmp_path / so).write_bytes(b"\x7fELF\x00binary-v2")  # rebuilt custom op
    second = code_closure("net", tmp_path, DigestMemo(None))
    assert first["modules"]["fastops"] != second["modules"]["fastops"]
    assert first["modules"]["fastops"] != DigestMemo(None).file_digest(tmp_path / "fastops.py")


def test_a_local_standard_library_name_next_to_the_recipe_is_followed(tmp_path: Path) -> None:
    _write(tmp_path, {"net.py": "import json\nimport profile\n", "profile.py": "SETTINGS = 1\n"})
    found = code_closure("net", tmp_path, DigestMemo(None))
    assert sorted(found["modules"]) == ["net", "profile"]  # json is the standard library's


def test_installs_from_a_local_wheel_are_hashed_and_vcs_installs_carry_their_commit(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _fake_dist(site, "wheelpkg", "0.1", {"url": "file:///tmp/wheelpkg-0.1-py3-none-any.whl", "archive_info": {}})
    _fake_dist(
        site,
        "gitpkg",
        "0.2",
        {"url": "https://example.invalid/gitpkg.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"}},
    )
    _write(tmp_path / "recipe", {"model.py": "import wheelpkg, gitpkg\n"})
    found = ClosureFinder(DigestMemo(None), [str(tmp_path / "recipe"), str(site)]).of_file(
        tmp_path / "recipe" / "model.py", "model"
    )
    assert "wheelpkg" in found.modules and found.distributions == {"gitpkg": "0.2+git.abc123"}


def test_a_namespace_shared_by_distributions_is_credited_to_the_right_one(tmp_path: Path) -> None:
    site = tmp_path / "site"
    for dist, sub, version in (("nsp_cublas", "cublas", "1.0"), ("nsp_cudnn", "cudnn", "9.1")):
        info = site / f"{dist}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "top_level.txt").write_text("nsp\n")
        (info / "RECORD").write_text(f"nsp/{sub}/__init__.py,,\n{dist}-{version}.dist-info/RECORD,,\n")
        (site / "nsp" / sub).mkdir(parents=True)
        (site / "nsp" / sub / "__init__.py").write_text("")
    _write(tmp_path / "recipe", {"model.py": "import nsp.cudnn\n"})
    found = ClosureFinder(DigestMemo(None), [str(tmp_path / "recipe"), str(site)]).of_file(
        tmp_path / "recipe" / "model.py", "model"
    )
    assert found.distributions == {"nsp_cudnn": "9.1"}


def test_model_source_leaves_out_lock_files_hidden_files_and_the_cache(tmp_path: Path) -> None:
    _write(tmp_path, {**USER_CODE, "r.lock": "stages: {}\n", ".model.py.swp": "x", "artifacts/state.db": "x"})
    memo = DigestMemo(None)
    before = code_closure("model:build", tmp_path, memo, source=".", exclude=(tmp_path / "artifacts",))["source"]
    assert "model.py" in before and not any(k.endswith((".lock", ".swp")) or k.startswith("artifacts") for k in before)
    (tmp_path / "r.lock").write_text("stages: {a: 1}\n")  # every run rewrites the lock beside the recipe
    (tmp_path / "artifacts" / "state.db").write_text("y")
    after = code_closure("model:build", tmp_path, DigestMemo(None), source=".", exclude=(tmp_path / "artifacts",))
    assert after["source"] == before


def test_a_plugin_kind_in_a_package_includes_the_package_init(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "kinds/__init__.py": "import kinds.registry_helpers\n",
            "kinds/registry_helpers.py": "",
            "kinds/mykind.py": "X = 1\n",
        },
    )
    found = kind_closure("kinds.mykind", tmp_path / "kinds" / "mykind.py", DigestMemo(None))
    assert sorted(found["modules"]) == ["kinds", "kinds.mykind", "kinds.registry_helpers"]
