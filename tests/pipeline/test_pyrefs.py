"""Code references checked without importing: missing modules, submodules and names are found by path and ast."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.hashing import DigestMemo
from pipeline.pyrefs import check_name, defined_names, find_module


def _pkg(root: Path) -> Path:
    pkg = root / "zoo"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text(
        "from .resnet import *\nfrom .vit import vit_b as vit\nimport torch as _t\n"
    )
    (pkg / "models" / "resnet.py").write_text(
        "import sys\n__all__ = ['resnet50']\n\ndef resnet50(**kw):\n    pass\n\ndef _private():\n    pass\n"
        "if sys.version_info > (3,):\n    def resnet18():\n        pass\nelse:\n    resnet18 = None\n"
        "try:\n    from fast import wide_resnet\nexcept ImportError:\n    wide_resnet = None\n"
    )
    (pkg / "models" / "vit.py").write_text("class vit_b:\n    pass\n")
    return pkg


def _check(root: Path, ref: str) -> None:
    module, _, name = ref.partition(":")
    _, source = find_module(module, [str(root)])
    check_name(source, name, module, defined_names)


def test_existing_names_pass_whatever_binds_them(tmp_path: Path) -> None:
    _pkg(tmp_path)
    for ref in (
        "zoo.models:resnet50",
        "zoo.models:resnet18",
        "zoo.models:wide_resnet",
        "zoo.models:vit",
        "zoo.models.vit:vit_b",
        "zoo.models.resnet:resnet50.__call__",
    ):
        _check(tmp_path, ref)


def test_missing_module_submodule_and_name_are_named(tmp_path: Path) -> None:
    _pkg(tmp_path)
    with pytest.raises(ModuleNotFoundError, match="no module named 'zooo'"):
        _check(tmp_path, "zooo.models:resnet50")
    with pytest.raises(ModuleNotFoundError, match="no module named 'zoo.modles'"):
        _check(tmp_path, "zoo.modles:resnet50")
    with pytest.raises(ModuleNotFoundError, match="no module named 'zoo.models.vit.deeper'"):
        _check(tmp_path, "zoo.models.vit.deeper:x")
    with pytest.raises(AttributeError, match=r"zoo.models has no attribute 'resnet5' \(did you mean 'resnet50'\?\)"):
        _check(tmp_path, "zoo.models:resnet5")
    with pytest.raises(AttributeError, match="no attribute '_private'"):  # a star import skips private names
        _check(tmp_path, "zoo.models:_private")


def test_what_the_source_cannot_tell_is_taken_on_trust(tmp_path: Path) -> None:
    pkg = _pkg(tmp_path)
    (pkg / "lazy.py").write_text("def __getattr__(name):\n    return name\n")
    (pkg / "broad.py").write_text("from numpy import *\n")
    (pkg / "broken.py").write_text("def (:\n")
    for ref in ("zoo.lazy:anything", "zoo.broad:array", "zoo.broken:f"):
        _check(tmp_path, ref)


def test_a_module_only_an_import_hook_knows_is_found(tmp_path: Path, monkeypatch) -> None:
    """setuptools' editable installs put a finder on sys.meta_path instead of a path entry."""
    import importlib.machinery
    import importlib.util

    pkg = _pkg(tmp_path / "elsewhere")

    class Finder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "zoo":
                return importlib.util.spec_from_file_location(
                    "zoo", pkg / "__init__.py", submodule_search_locations=[str(pkg)]
                )
            return None

    monkeypatch.setattr(sys, "meta_path", [Finder, *sys.meta_path])
    top, source = find_module("zoo.models", [str(tmp_path)])
    assert top == pkg and source == pkg / "models" / "__init__.py"
    assert "zoo" not in sys.modules  # nothing was imported


def test_names_are_memoised_by_file_stamp(tmp_path: Path) -> None:
    memo = DigestMemo(tmp_path / "state.db")
    calls = []

    def names_of(path: Path) -> str:
        calls.append(path)
        return defined_names(path)

    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    pass\n")
    for _ in range(2):
        check_name(mod, "f", "m", lambda p: memo.derived(p, "names", names_of))
    assert len(calls) == 1
    mod.write_text("def build():\n    pass\n")  # the file changed: read again
    with pytest.raises(AttributeError, match="no attribute 'f'"):
        check_name(mod, "f", "m", lambda p: memo.derived(p, "names", names_of))
    assert len(calls) == 2
