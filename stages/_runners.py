"""`runner_for`: the one place that picks a runner for an artifact, and the only module importing them all.

An ``.onnx`` file runs in ONNX Runtime (`_ort_runner`), a directory holding
``model.xml`` (or the ``.xml`` itself) in OpenVINO (`_ov_runner`), a TensorRT
plan (``.engine``/``.plan``, or a build directory holding one and no IR) in
TensorRT (`_trt_runner`). What a runner is lives in `_runner_protocol`, how it
is timed in `_measure`; no runner module imports this one, so a kind that
needs one runtime (build.tensorrt's self-check) imports only that runner and
its key holds only that runtime's distribution. A new runtime adds a module
and a branch here.
"""
from __future__ import annotations

from pathlib import Path

from stages._ort_runner import OrtRunner
from stages._ov_runner import OpenVinoRunner, xml_of
from stages._runner_protocol import Runner
from stages._trt_runner import TensorRTRunner

ENGINE_SUFFIXES = (".engine", ".plan")


def runner_for(path: Path | str, precision: str | None = None, threads: int | None = None,
               device: str | None = None) -> Runner:
    """The runner for an artifact: `.onnx` -> ONNX Runtime, a dir with model.xml -> OpenVINO, an engine ->
    TensorRT (RunnerUnavailable naming what was probed where it cannot run); ValueError for anything else."""
    path = Path(path)
    if path.suffix in ENGINE_SUFFIXES or (path.is_dir() and any(path.glob("*.engine")) and not xml_of(path)):
        return TensorRTRunner(path, precision=precision, threads=threads, device=device)
    if path.is_file() and path.suffix == ".onnx":
        return OrtRunner(path, threads=threads, precision=precision)
    if (path.is_dir() and xml_of(path)) or (path.is_file() and path.suffix == ".xml"):
        return OpenVinoRunner(path, precision=precision, threads=threads, device=device)
    raise ValueError(f"no runner for {path}: expected an .onnx file or a directory holding model.xml")
