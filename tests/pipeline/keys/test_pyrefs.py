"""Code references checked without importing: missing modules, submodules and names are found by path and ast."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.cache.hashing import DigestMemo
from pipeline.keys.pyrefs import UNKNOWN, NameNotDefined, check_name, defined_names, find_module


def _pkg(root: Path) -> Path:
    pkg = root / "zoo"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text(
        "from .resnet import *\nfrom .vit import vit_b as vit\nimport torch as _t\n"
    )
    (pkg / "models" / "resnet.py").write_text(
        "import sys\n\ndef resnet50(**kw):\n    pass\n\ndef _private():\n    pass\n"
        "if sys.version_info > (3,):\n    def resnet18():\n        pass\nelse:\n    resnet18 = None\n"
        "try:\n    from fast import wide_resnet\nexcept ImportError:\n    wide_resnet = None\n"
    )
    (pkg / "models" / "vit.py").write_text("class vit_b:\n    pass\n")
    return pkg


def _check(root: Path, ref: str) -> Path | None:
    """Check `ref` as the planner does (raising what it would raise); the source file it was checked against."""
    module, _, name = ref.partition(":")
    _, source = find_module(module, [str(root)])
    check_name(source, name, module, defined_names)
    return source


def test_existing_names_pass_whatever_binds_them(tmp_path: Path) -> None:
    models = _pkg(tmp_path) / "models"
    for ref, source in (
        ("zoo.models:resnet50", models / "__init__.py"),  # a star import
        ("zoo.models:resnet18", models / "__init__.py"),  # through it: bound in both branches of an if
        ("zoo.models:wide_resnet", models / "__init__.py"),  # through it: bound in a try and its except
        ("zoo.models:vit", models / "__init__.py"),  # an import ... as
        ("zoo.models.vit:vit_b", models / "vit.py"),  # a class
        ("zoo.models.resnet:resnet50.__call__", models / "resnet.py"),  # the first name is what is checked
    ):
        # it passes, read from the module's own source (a check with no source to read passes anything)
        assert _check(tmp_path, ref) == source, ref


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
    for ref, file in (("zoo.lazy:anything", "lazy.py"), ("zoo.broad:array", "broad.py"), ("zoo.broken:f", "broken.py")):
        source = _check(tmp_path, ref)
        binds = json.loads(defined_names(source))["names"]
        # it passes, read from the module's own file, which does not bind the name: taken on trust, not found
        assert source == pkg / file and ref.partition(":")[2] not in binds, ref


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


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


# A package whose `__init__` re-exports with star imports, as torchvision.models does: relative and absolute
# star imports inside the package, `__all__` literal (assigned, +=, extend, append), computed, or absent.
KIT = {
    "kit/__init__.py": "from kit.models import *\nfrom . import models\n",
    "kit/models/__init__.py": "from .resnet import *\nfrom kit.models.vit import *\nfrom .mobile import *\n",
    "kit/models/resnet.py": """
        from kit.models._util import helper, unlisted
        __all__ = ["ResNet", "resnet50"]
        __all__ += ["resnet101"]
        __all__.extend(("helper",))
        __all__.append("_exported_private")
        class ResNet: pass
        def resnet50(): pass
        def resnet101(): pass
        def resnet_internal(): pass
        def _exported_private(): pass
        """,
    "kit/models/_util.py": "def helper(): pass\ndef unlisted(): pass\n",
    "kit/models/vit.py": "import os\ndef vit_b(): pass\ndef _hidden(): pass\n",
    "kit/models/mobile.py": """
        from .mobile_v2 import *
        from .mobile_v2 import __all__ as v2_all
        __all__ = v2_all + ["mobile_v3"]
        def mobile_v3(): pass
        """,
    "kit/models/mobile_v2.py": "__all__ = ['mobile_v2']\ndef mobile_v2(): pass\n",
}


def _verdict(root: Path, ref: str) -> bool:
    try:
        _check(root, ref)
    except AttributeError:
        return False
    return True


def _imports(root: Path, monkeypatch, ref: str) -> bool:
    """What Python itself says: does the module, imported, have the attribute?"""
    module, _, name = ref.partition(":")
    monkeypatch.syspath_prepend(str(root))
    return hasattr(importlib.import_module(module), name)


@pytest.fixture
def kit(tmp_path: Path):
    _write(tmp_path, KIT)
    yield tmp_path
    for name in [m for m in sys.modules if m == "kit" or m.startswith("kit.")]:
        del sys.modules[name]  # imported by the test that asks Python: gone for the next one


def test_star_imports_bring_the_literal___all___or_the_public_names_as_python_does(kit: Path, monkeypatch) -> None:
    refs = {
        "kit.models:resnet50": True,
        "kit.models:resnet101": True,  # added with +=
        "kit.models:helper": True,  # listed in __all__, defined in another module
        "kit.models:_exported_private": True,  # listed: a star import brings it despite the underscore
        "kit.models:resnet_internal": False,  # defined in resnet.py but not in its __all__
        "kit.models:unlisted": False,  # imported into resnet.py, not listed
        "kit.models:vit_b": True,  # no __all__: public names, through an absolute star import
        "kit.models:os": True,
        "kit.models:_hidden": False,
        "kit.models:mobile_v2": True,  # through a module whose __all__ is computed
        "kit.models:mobile_v3": True,
        "kit:resnet50": True,  # two star imports deep
        "kit:resnet_internal": False,
        "kit:models": True,
        "kit.models.resnet:resnet_internal": True,  # the module itself has every name it binds
    }
    assert {ref: _verdict(kit, ref) for ref in refs} == refs
    assert {ref: _imports(kit, monkeypatch, ref) for ref in refs} == refs  # and Python agrees


def test_a_typo_behind_star_imports_names_the_close_match(kit: Path) -> None:
    with pytest.raises(NameNotDefined, match=r"kit.models has no attribute 'resnet5' \(did you mean 'resnet50'\?\)"):
        _check(kit, "kit.models:resnet5")
    with pytest.raises(NameNotDefined, match=r"kit has no attribute 'vit_c' \(did you mean 'vit_b'\?\)"):
        _check(kit, "kit:vit_c")


@pytest.mark.parametrize(
    "line",
    [
        "from numpy import *",  # another package
        "from kit_elsewhere.models import *",  # an absolute import that leaves the package
        "from .missing import *",  # nothing there to read
        "from .loop import *",  # a cycle
        "from .dynamic import *",  # binds through globals()
        "from .lazy import *",  # a module __getattr__
    ],
)
def test_a_star_import_the_source_cannot_follow_keeps_the_module_on_trust(tmp_path: Path, line: str) -> None:
    _write(
        tmp_path,
        {
            "kit/__init__.py": "",
            "kit/open.py": f"{line}\ndef known(): pass\n",
            "kit/loop.py": "from .open import *\n",
            "kit/dynamic.py": "globals()['made'] = 1\n",
            "kit/lazy.py": "def __getattr__(name): return name\n",
        },
    )
    _check(tmp_path, "kit.open:anything")


def test___all___that_only_runs_can_tell_falls_back_to_every_name_the_module_binds(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "kit/__init__.py": "from .built import *\n",
            "kit/built.py": """
                __all__ = []
                for _n in ("a", "b"):
                    __all__.append(_n)
                def a(): pass
                def b(): pass
                """,
        },
    )
    record = json.loads(defined_names(tmp_path / "kit" / "built.py"))
    assert record["exports"] == [UNKNOWN] and record["stars"] == []
    _check(tmp_path, "kit:a")
    with pytest.raises(NameNotDefined, match="no attribute 'c'"):
        _check(tmp_path, "kit:c")  # a superset of __all__, still not anything at all


def test_an_edit_to_a_star_imported_module_is_seen_without_touching_the_package(tmp_path: Path) -> None:
    """Each file's names are memoised by its own stamp and combined per check, never stored combined."""
    _write(
        tmp_path, {"kit/__init__.py": "from .impl import *\n", "kit/impl.py": "__all__ = ['old']\ndef old(): pass\n"}
    )
    memo = DigestMemo(tmp_path / "state.db")
    init = tmp_path / "kit" / "__init__.py"

    def check(name: str) -> None:
        check_name(init, name, "kit", lambda p: memo.derived(p, "module_names", defined_names))

    check("old")
    with pytest.raises(NameNotDefined):
        check("new")
    (tmp_path / "kit" / "impl.py").write_text("__all__ = ['old', 'new']\ndef old(): pass\ndef new(): pass\n")
    check("new")


REAL_TORCHVISION = """
import sys
from pathlib import Path
from pipeline.cache import Cache
from pipeline.errors import RecipeError
from pipeline.run.plan import Planner
from pipeline.recipe.load import load_recipe

for factory in ("torchvision.models:resnet5", "torchvision.models:resnet50"):
    Path("r.yaml").write_text(
        f"model:\\n  factory: {factory}\\n  tensors: {{x: {{shape: [1, 3, 224, 224]}}}}\\n"
        "stages:\\n  export: {uses: export.onnx}\\n"
    )
    try:
        Planner(load_recipe(Path("r.yaml")), Cache(Path("cache"))).prepare(["export"])
        print("planned")
    except RecipeError as exc:
        print(exc)
print("torch imported" if "torch" in sys.modules else "torch not imported")
"""


def test_a_typo_in_a_real_torchvision_factory_is_a_recipe_error_before_torch_loads(tmp_path: Path) -> None:
    """torchvision.models re-exports each family with `from .resnet import *`, and resnet.py lists `__all__`."""
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    out = subprocess.run(
        [sys.executable, "-c", REAL_TORCHVISION], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(out) == 3, out
    assert out[0].startswith("r.yaml:2: model.factory: ")
    assert out[0].endswith("AttributeError: torchvision.models has no attribute 'resnet5' (did you mean 'resnet50'?)")
    assert out[1:] == ["planned", "torch not imported"]
