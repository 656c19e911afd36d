"""Discovered inputs recorded in this process (pipeline/keys/discovered.py): what enters, what is left out, and
how a record's entries are checked against the machine."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import pytest

from pipeline.cache.hashing import DigestMemo, sha256_file
from pipeline.keys import discovered


def _record(fn, base: Path, leave_out: tuple[Path, ...] = ()) -> dict[str, str]:  # noqa: ANN001
    with discovered.recording() as reads:
        fn()
    return discovered.entries(reads, base, leave_out)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path holding an installed distribution `fakeweights` 1.0 with a data file."""
    site = tmp_path / "site"
    (site / "fakeweights").mkdir(parents=True)
    (site / "fakeweights" / "table.txt").write_text("t1\n")
    (site / "fakeweights" / "reader.py").write_text(
        "from pathlib import Path\ndef own() -> str:\n    return (Path(__file__).parent / 'table.txt').read_text()\n"
    )
    info = site / "fakeweights-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeweights\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("fakeweights\n")
    monkeypatch.syspath_prepend(str(site))
    discovered._MAPS.clear()
    return site


def test_a_file_read_by_path_enters_by_digest_relative_to_the_recipe(tmp_path: Path) -> None:
    recipe, data = tmp_path / "proj" / "recipes", tmp_path / "proj" / "weights" / "w.npy"
    recipe.mkdir(parents=True)
    data.parent.mkdir()
    data.write_bytes(b"w1")
    found = _record(lambda: data.read_bytes(), recipe)
    assert found == {"file:../weights/w.npy": sha256_file(data)}


def test_what_is_left_out(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    scratch, declared, module = recipe / "scratch.txt", recipe / "declared.csv", recipe / "helper.py"
    declared.write_text("1\n")
    module.write_text("X = 1\n")
    stdlib = next(p for p in Path(sysconfig.get_paths()["stdlib"]).iterdir() if p.suffix == ".txt" or p.is_file())

    def run() -> None:
        scratch.write_text("cache")  # written, then read back: the stage's own scratch
        scratch.read_text()
        declared.read_text()  # a declared input: the key holds it already
        module.read_text()  # Python source (inspect, linecache): the import closure covers code
        Path("/proc/self/status").read_text()
        if stdlib.suffix != ".py":
            stdlib.read_bytes()
        os.listdir(sys.path[0] or ".")  # a folder on sys.path: whatever looks for modules lists it
        open(os.devnull).close()  # noqa: SIM115

    assert _record(run, recipe, leave_out=(declared,)) == {}


def test_a_listed_folder_enters_by_its_names(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"")
    found = _record(lambda: sorted(images.iterdir()), tmp_path)
    assert found == {"dir:images": discovered.listing_digest(images)}
    (images / "b.png").write_bytes(b"")
    assert discovered.changes(found, tmp_path, DigestMemo(None)) == ["listed folder images changed"]


def test_a_file_inside_a_distribution_enters_by_its_version_unless_the_distribution_read_it(site: Path) -> None:
    table = site / "fakeweights" / "table.txt"
    assert _record(lambda: table.read_text(), site.parent) == {"dist:fakeweights": "1.0"}
    # the distribution's own code reading its own file (run from its file, as an import would)
    code = compile((site / "fakeweights" / "reader.py").read_text(), str(site / "fakeweights" / "reader.py"), "exec")
    namespace: dict = {"__file__": str(site / "fakeweights" / "reader.py")}
    exec(code, namespace)  # noqa: S102
    assert _record(namespace["own"], site.parent) == {}
    # its metadata (an entry-point or version lookup) is not an input
    assert _record(lambda: (site / "fakeweights-1.0.dist-info" / "METADATA").read_text(), site.parent) == {}


def test_distributions_the_key_names_already_are_dropped() -> None:
    found = {"dist:torch": "2.14.1", "dist:fakeweights": "1.0", "file:w.npy": "ab"}
    components = {"code": {"modules": {}, "distributions": {"torch": "2.14.1"}}, "toolchain": {"openvino": "x"}}
    assert discovered.without_keyed(found, components) == {"dist:fakeweights": "1.0", "file:w.npy": "ab"}


def test_changes_name_the_entry_that_no_longer_holds(site: Path, tmp_path: Path) -> None:
    base = tmp_path / "recipe"
    base.mkdir()
    (base / "w.txt").write_text("w1")
    memo = DigestMemo(None)
    entries = {"file:w.txt": sha256_file(base / "w.txt"), "dist:fakeweights": "1.0", "file:gone.txt": "00"}
    assert discovered.changes(entries, base, memo) == ["read file gone.txt is missing here"]
    (base / "w.txt").write_text("w2")
    assert "read file w.txt changed" in discovered.changes(entries, base, DigestMemo(None))
    entries["dist:fakeweights"] = "0.9"
    assert "read distribution fakeweights: 0.9 -> 1.0" in discovered.changes(entries, base, memo)
    assert discovered.changes({"dist:not_installed_anywhere": "1"}, base, memo) == [
        "read distribution not_installed_anywhere: 1 -> (not installed)"
    ]


def test_labels_are_relative_unless_only_the_root_is_shared(tmp_path: Path) -> None:
    base = tmp_path / "a" / "recipes"
    assert discovered.label(str(tmp_path / "a" / "w" / "x.npy"), base) == "../w/x.npy"
    assert discovered.label("/opt/weights/x.npy", Path("/work/recipes")) == "/opt/weights/x.npy"


def test_the_hook_records_nothing_outside_a_recording(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("x")
    with discovered.recording() as reads:
        pass
    f.read_text()
    assert reads.read == {} and reads.listed == set()
