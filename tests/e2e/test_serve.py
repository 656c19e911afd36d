"""recipes/digits_serve.yaml end to end: a runtime x precision matrix of engines, each validated, packaged as one
Triton repository and one OVMS repository whose configs parse, hold what was built and answer a smoke request;
a serving-only change reruns only the packaging."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
from harness import Ran, quick_timing, rows

RECIPE = "digits_serve.yaml"
FILES = ("digits_plugin.py",)
QUICK = quick_timing("check")

pytestmark = pytest.mark.slow

ENGINES = ["engine@openvino-fp32", "engine@openvino-int8", "engine@onnxruntime-fp32", "engine@onnxruntime-int8"]


def test_the_matrix_builds_checks_and_packages_every_engine(run_recipe: Callable[..., Ran]) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    proc, record = run_recipe()
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = rows(record)
    assert [n for n in r if n.startswith("engine@")] == ENGINES
    for engine in ENGINES:
        check = r[engine.replace("engine@", "check@")]
        assert check["status"] == "ran" and check["summary"]["accuracy"] >= 0.9, check

    repo = Path(r["triton"]["outputs"]["repository"])
    configs = {}
    for path in sorted(repo.glob("*/config.pbtxt")):
        configs[path.parent.name] = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    assert sorted(configs) == sorted(e.replace("@", "_").replace("-", "_") for e in ENGINES)
    backends = {name: c.backend for name, c in configs.items()}
    assert backends["engine_openvino_int8"] == "openvino" and backends["engine_onnxruntime_fp32"] == "onnxruntime"
    for name, c in configs.items():
        assert c.max_batch_size == 128 and list(c.input[0].dims) == [1, 8, 8], name  # batch 1..128 in the recipe
        assert [g.kind for g in c.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
        assert c.HasField("dynamic_batching")
        assert (repo / name / "1").is_dir()
    triton = json.loads(Path(r["triton"]["outputs"]["report"]).read_text())
    assert all(m["smoke"]["ran"] for m in triton["models"])

    ovms = Path(r["ovms"]["outputs"]["repository"])
    config = json.loads((ovms / "config.json").read_text())
    entries = {e["config"]["name"]: e["config"] for e in config["model_config_list"]}
    assert sorted(entries) == sorted(configs)
    assert entries["engine_openvino_int8"]["plugin_config"]["INFERENCE_PRECISION_HINT"] == "f32"  # as validated
    assert (ovms / "engine_onnxruntime_int8" / "1" / "model.onnx").is_file()
    assert r["ovms"]["summary"]["smoke_ran"] == 4 and r["ovms"]["summary"]["smoke_cosine_min"] >= 0.95


def test_a_serving_setting_reruns_the_packaging_and_no_engine(run_recipe: Callable[..., Ran]) -> None:
    proc, record = run_recipe()
    assert {row["status"] for row in rows(record).values()} == {"cached"}
    for change in ("stages.triton.with.instance_count=2", "stages.triton.with.dynamic_batching=false"):
        proc, record = run_recipe("--set", change)
        assert proc.returncode == 0, proc.stderr[-3000:]
        ran = [name for name, row in rows(record).items() if row["status"] == "ran"]
        assert ran == ["triton"], (change, ran)
    repo = Path(rows(record)["triton"]["outputs"]["repository"])
    assert "dynamic_batching" not in (repo / "engine_openvino_fp32" / "config.pbtxt").read_text()
