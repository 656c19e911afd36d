from __future__ import annotations

from pathlib import Path

from pipeline.hashing import DigestMemo, canonical_json
from pipeline.keys import explain


def test_canonical_json_is_order_independent() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == canonical_json({"a": [1, {"c": 3, "d": 2}], "b": 1})


def test_explain_names_each_changed_field() -> None:
    old = {"kind": "k", "version": "1", "code": "a", "params": {"opset": 17, "ops": ["cleanup"]},
           "inputs": {"model": "1" * 64}, "toolchain": {"onnxsim": "0.8.0"}, "fingerprint": {"factory_code": {"source": "a" * 64}}}
    new = {"kind": "k", "version": "1", "code": "b", "params": {"opset": 20, "ops": ["cleanup"]},
           "inputs": {"model": "2" * 64}, "toolchain": {"onnxsim": "0.8.1"}, "fingerprint": {"factory_code": {"source": "b" * 64}}}
    assert explain(old, new, {"model": "export.model"}) == [
        "code of k changed", "param opset: 17 -> 20", "input export.model changed", "onnxsim 0.8.0 -> 0.8.1",
        "factory_code.source changed"]


def test_digest_memo_skips_rehash_until_the_file_changes(tmp_path: Path, monkeypatch) -> None:
    f = tmp_path / "big.bin"
    f.write_bytes(b"x" * 1000)
    memo = DigestMemo(tmp_path / "state.db")
    first = memo.file_digest(f)
    memo.flush()
    calls = []
    import pipeline.hashing as hashing

    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: calls.append(p) or real(p))
    fresh = DigestMemo(tmp_path / "state.db")  # a new process: reads the memo from disk
    assert fresh.file_digest(f) == first and calls == []
    f.write_bytes(b"y" * 1000)
    assert fresh.file_digest(f) != first and calls == [f]


def test_code_digest_ignores_checkout_path_and_sees_edits(tmp_path: Path) -> None:
    for where in ("one", "two"):
        pkg = tmp_path / where / "mymodel"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "net.py").write_text("def build():\n    return 1\n")
    memo = DigestMemo(None)
    a = memo.code_digest("mymodel.net:build", tmp_path / "one")
    b = memo.code_digest("mymodel.net:build", tmp_path / "two")
    assert a == b and "source" in a
    (tmp_path / "two" / "mymodel" / "net.py").write_text("def build():\n    return 2\n")
    assert DigestMemo(None).code_digest("mymodel.net:build", tmp_path / "two") != a
    file_ref = memo.code_digest("mymodel/net.py:build", tmp_path / "one")
    assert file_ref == a  # a file inside a package digests its whole package


def test_code_digest_names_installed_distributions_by_version(tmp_path: Path) -> None:
    import importlib.metadata

    found = DigestMemo(None).code_digest("yaml:safe_load", tmp_path)
    assert found == {"distribution": "PyYAML", "version": importlib.metadata.version("PyYAML")}
