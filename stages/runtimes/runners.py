"""`runner_for`: the one place that picks a runner for an artifact, and the only module importing them all.

An artifact with a typed ``engine.json`` (`runtimes.engine_info`: build.openvino's
directory, build.onnxruntime's (``model.onnx``), a build.tensorrt view holding
``model.engine`` and its sidecar, or the engine file beside one) runs where the
sidecar's `backend` says, and the artifact must hold that backend's file: a
TensorRT sidecar beside no ``.engine`` is an error, not a guess. Only artifacts without one fall back on
file types: an ``.onnx`` file runs in ONNX Runtime (`runtimes.onnxrt.runner`, always: an
ONNX file is never a built engine), an IR found by `openvino.io.ir_xml` (the ``.xml``,
a directory's ``model.xml`` or its only ``.xml``; an NNCF IR has no sidecar) in
OpenVINO (`runtimes.openvino.runner`), a TensorRT plan (``.engine``/``.plan``,
or a directory holding one and no IR) in TensorRT (`runtimes.tensorrt.runner`).

What a runner is lives in `runtimes.base`, how it is timed in `runtimes.measure`;
no runner module imports this one, so a kind that needs one runtime
(build.tensorrt's self-check) imports only that runner and its key holds only
that runtime's distribution. A new runtime adds a module and a branch here.
"""

from __future__ import annotations

from pathlib import Path

from stages.runtimes import engine_info
from stages.runtimes.base import Runner
from stages.runtimes.engine_info import EngineInfo
from stages.runtimes.onnxrt.runner import OrtRunner
from stages.runtimes.openvino.io import ir_xml
from stages.runtimes.openvino.runner import OpenVinoRunner
from stages.runtimes.tensorrt.runner import TensorRTRunner

ENGINE_SUFFIXES = (".engine", ".plan")


def engine_info_for(path: Path | str) -> EngineInfo | None:
    """The EngineInfo `runner_for` goes by: the artifact's engine.json, None without one (or for an .onnx file);
    ValueError, one line naming the file, when the sidecar is malformed."""
    path = Path(path)
    if path.is_file() and path.suffix == ".onnx":
        return None
    return engine_info.read(path) if engine_info.sidecar(path) is not None else None


def runner_for(
    path: Path | str,
    precision: str | None = None,
    threads: int | None = None,
    device: str | None = None,
    info: EngineInfo | None = None,
    streams: int | None = None,
) -> Runner:
    """The runner for an artifact: by its EngineInfo (`info`, else its engine.json), else by file type (`.onnx` ->
    ONNX Runtime, a dir with model.xml -> OpenVINO, an engine -> TensorRT). `streams`: a TensorRT engine's
    contexts in flight when timed for throughput (None: chosen; the other runtimes choose their own).
    RunnerUnavailable naming what was probed where the runtime cannot run here; ValueError for an artifact that is
    none of these, or that lacks the file its engine.json names."""
    path = Path(path)
    if info is None:
        info = engine_info_for(path)
    if info is not None:
        return _by_backend(path, info, precision, threads, device, streams)
    if path.suffix in ENGINE_SUFFIXES or (path.is_dir() and _engine_files(path) and not _holds_ir(path)):
        return TensorRTRunner(path, precision=precision, threads=threads, device=device, streams=streams)
    if path.is_file() and path.suffix == ".onnx":
        return OrtRunner(path, threads=threads, precision=precision)
    if _holds_ir(path):
        return OpenVinoRunner(path, precision=precision, threads=threads, device=device)
    raise ValueError(
        f"no runner for {path}: expected an .onnx file, a directory holding model.xml, or a TensorRT "
        "engine (.engine/.plan)"
    )


def _by_backend(
    path: Path, info: EngineInfo, precision: str | None, threads: int | None, device: str | None, streams: int | None
) -> Runner:
    """The runner of `info.backend`, once the artifact is checked to hold that backend's file."""
    if info.backend == "onnxruntime":
        models = sorted(path.glob("*.onnx")) if path.is_dir() else [path] if path.suffix == ".onnx" else []
        if len(models) != 1:
            raise ValueError(
                f"{path}: engine.json says onnxruntime, but there is "
                + ("no .onnx file" if not models else f"more than one .onnx file ({len(models)})")
            )
        return OrtRunner(models[0], threads=threads, precision=precision, info=info)
    if info.backend == "openvino":
        if not _holds_ir(path):
            raise ValueError(f"{path}: engine.json says openvino, but there is no model.xml")
        return OpenVinoRunner(path, precision=precision, threads=threads, device=device, info=info)
    found = [path] if path.is_file() and path.suffix in ENGINE_SUFFIXES else _engine_files(path)
    if len(found) != 1:
        raise ValueError(
            f"{path}: engine.json says tensorrt, but there is "
            + ("no .engine/.plan file" if not found else f"more than one engine ({len(found)})")
            + (" (pass the engine file itself, or a directory holding it and engine.json)" if not found else "")
        )
    return TensorRTRunner(found[0], precision=precision, threads=threads, device=device, info=info, streams=streams)


def _holds_ir(path: Path) -> bool:
    """Whether `path` is an OpenVINO IR by `ir_xml`'s rule (the .xml itself, model.xml, or a folder's only .xml)."""
    try:
        ir_xml(path)
    except ValueError:
        return False
    return True


def _engine_files(path: Path) -> list[Path]:
    """The TensorRT engine files in a directory (none for a file)."""
    if not path.is_dir():
        return []
    return sorted(p for suffix in ENGINE_SUFFIXES for p in path.glob(f"*{suffix}"))
