from __future__ import annotations

from pathlib import Path

from pipeline.cache.hashing import DigestMemo, canonical_json
from pipeline.keys.compute import explain


def test_canonical_json_is_order_independent() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == canonical_json({"a": [1, {"c": 3, "d": 2}], "b": 1})


def test_explain_names_each_changed_field() -> None:
    closure = {"modules": {"stages.k": "a" * 64, "stages._io": "b" * 64}, "distributions": {"numpy": "1.26.4"}}
    changed = {
        "modules": {"stages.k": "a" * 64, "stages._io": "c" * 64, "stages._new": "d" * 64},
        "distributions": {"numpy": "2.1.0"},
    }
    old = {
        "kind": "k",
        "version": "1",
        "code": closure,
        "params": {},
        "inputs": {"calib": "1" * 64},
        "datasets": {
            "calib": {
                "spec": {"count": 3, "labels": "y.npy"},
                "reader": closure,
                "reads": {"python": closure, "labels": "1" * 64},
            }
        },
        "fingerprint": {"factory_code": closure, "python_ops": [closure]},
    }
    new = {
        "kind": "k",
        "version": "1",
        "code": changed,
        "params": {},
        "inputs": {"calib": "2" * 64},
        "datasets": {
            "calib": {
                "spec": {"count": 4, "labels": "y.npy"},
                "reader": changed,
                "reads": {"python": changed, "labels": "2" * 64},
            }
        },
        "fingerprint": {"factory_code": changed, "python_ops": [closure]},
    }
    assert explain(old, new, {"calib": "data.calib"}) == [
        "code of k: module stages._io changed",
        "code of k: module stages._new added",
        "code of k: numpy 1.26.4 -> 2.1.0",
        "data.calib reader: module stages._io changed",
        "data.calib reader: module stages._new added",
        "data.calib reader: numpy 1.26.4 -> 2.1.0",
        "data.calib: labels y.npy changed",
        "data.calib code: module stages._io changed",
        "data.calib code: module stages._new added",
        "data.calib code: numpy 1.26.4 -> 2.1.0",
        "data.calib: spec.count: 3 -> 4",
        "factory_code: module stages._io changed",
        "factory_code: module stages._new added",
        "factory_code: numpy 1.26.4 -> 2.1.0",
    ]


def test_explain_old_records_with_a_plain_code_digest() -> None:
    old = {
        "kind": "k",
        "version": "1",
        "code": "a",
        "params": {"opset": 17, "ops": ["cleanup"]},
        "inputs": {"model": "1" * 64},
        "toolchain": {"onnxsim": "0.8.0"},
        "fingerprint": {"factory_code": {"source": "a" * 64}},
    }
    new = {
        "kind": "k",
        "version": "1",
        "code": "b",
        "params": {"opset": 20, "ops": ["cleanup"]},
        "inputs": {"model": "2" * 64},
        "toolchain": {"onnxsim": "0.8.1"},
        "fingerprint": {"factory_code": {"source": "b" * 64}},
    }
    assert explain(old, new, {"model": "export.model"}) == [
        "code of k changed",
        "param opset: 17 -> 20",
        "input export.model changed",
        "onnxsim 0.8.0 -> 0.8.1",
        "factory_code.source changed",
    ]


def test_digest_memo_skips_rehash_until_the_file_changes(tmp_path: Path, monkeypatch) -> None:
    f = tmp_path / "big.bin"
    f.write_bytes(b"x" * 1000)
    memo = DigestMemo(tmp_path / "state.db")
    first = memo.file_digest(f)
    memo.flush()
    calls = []
    import pipeline.cache.hashing as hashing

    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: calls.append(p) or real(p))
    fresh = DigestMemo(tmp_path / "state.db")  # a new process: reads the memo from disk
    assert fresh.file_digest(f) == first and calls == []
    f.write_bytes(b"y" * 1000)
    assert fresh.file_digest(f) != first and calls == [f]


def test_explain_names_the_source_file_that_changed() -> None:
    old = {
        "kind": "export.onnx",
        "fingerprint": {"factory_code": {"modules": {}, "distributions": {}, "source": {"vocab.txt": "a" * 64}}},
    }
    new = {
        "kind": "export.onnx",
        "fingerprint": {
            "factory_code": {"modules": {}, "distributions": {}, "source": {"vocab.txt": "b" * 64, "x.txt": "c" * 64}}
        },
    }
    assert explain(old, new) == ["factory_code: source file vocab.txt changed", "factory_code: source file x.txt added"]
