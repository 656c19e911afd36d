"""Which model format a path holds, told from its name and first bytes, with one line for anything else.

A converter's `model` input is one of:

- a TensorFlow SavedModel: a directory holding `saved_model.pb`;
- a Keras file: `.keras` (Keras 3's zip) or `.h5`/`.hdf5` (the legacy HDF5 format);
- a TFLite flatbuffer: `.tflite`;
- a PaddlePaddle inference model: the directory `paddle.jit.save` wrote (one `.pdmodel` or `.json` with its
  `.pdiparams`), or the model file itself with its `.pdiparams` beside it.

The engine keys a path input by its content: a directory by the manifest of every file in it, a file by its
bytes. A Paddle model file's weights sit in another file the key would not hold, so `stage_paddle` copies both
into the stage's scratch folder from Python: the params file is then a discovered input
(pipeline/keys/discovered.py), recorded with its digest, and a changed `.pdiparams` reruns the stage. Giving
the directory puts it in the key directly, which is why the directory is the preferred form.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.stage import installed_version

Format = Literal["savedmodel", "keras", "tflite", "paddle"]
Framework = Literal["tensorflow", "paddle"]

EXPECTED = (
    "a TensorFlow SavedModel directory, a Keras .keras/.h5 file, a .tflite file, or a PaddlePaddle inference "
    "model (its directory, or its .pdmodel/.json with the .pdiparams beside it)"
)
PADDLE_MODEL_SUFFIXES = (".pdmodel", ".json")
PADDLE_PARAMS_SUFFIX = ".pdiparams"
# The distributions a framework's models need here, and the extra that installs them.
TENSORFLOW_DISTS = ("tensorflow", "tensorflow-cpu")
EXTRAS: dict[Framework, str] = {"tensorflow": "tensorflow", "paddle": "paddle"}
_TFLITE_MAGIC = b"TFL3"  # a TFLite flatbuffer's file identifier, at bytes 4..8
_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class ModelSource:
    """A model in another framework's format: what the converter reads (`path`) and, for Paddle, its weights."""

    format: Format
    path: Path  # the SavedModel directory, or the .keras/.h5/.tflite/.pdmodel/.json file
    params: Path | None = None  # a Paddle model's .pdiparams

    @property
    def framework(self) -> Framework:
        return "paddle" if self.format == "paddle" else "tensorflow"

    def describe(self) -> str:
        """How a summary or an error names it: `Keras file digits.keras`."""
        what = {"savedmodel": "SavedModel", "keras": "Keras file", "tflite": "TFLite file", "paddle": "Paddle model"}
        return f"{what[self.format]} {self.path.name}"


class FormatError(ValueError):
    """The `model` input is missing or in no format a converter reads; the message is the one line users see."""

    def __init__(self, path: Path, problem: str, input_name: str = "model"):
        super().__init__(f"input {input_name} ({path.name}): {problem}")


def detect(path: Path | str, input_name: str = "model") -> ModelSource:
    """The format `path` holds; FormatError (one line naming the input and the file) for anything else."""
    path = Path(path)
    if path.is_dir():
        return _detect_dir(path, input_name)
    if not path.exists():
        raise FormatError(path, "no such file or directory", input_name)
    suffix = path.suffix.lower()
    if suffix == ".keras":
        _expect_magic(path, _ZIP_MAGIC, 0, "not a Keras 3 .keras file (a zip archive)", input_name)
        return ModelSource("keras", path)
    if suffix in (".h5", ".hdf5"):
        _expect_magic(path, _HDF5_MAGIC, 0, "not an HDF5 file (a legacy Keras .h5 model)", input_name)
        return ModelSource("keras", path)
    if suffix == ".tflite":
        _expect_magic(path, _TFLITE_MAGIC, 4, "not a TFLite flatbuffer (no TFL3 identifier)", input_name)
        return ModelSource("tflite", path)
    if suffix in PADDLE_MODEL_SUFFIXES:
        params = path.with_suffix(PADDLE_PARAMS_SUFFIX)
        if not params.is_file():
            raise FormatError(
                path,
                f"a PaddlePaddle model needs its weights {params.name} beside it (paddle.jit.save writes both); "
                "or give the directory holding both",
                input_name,
            )
        return ModelSource("paddle", path, params)
    if suffix == PADDLE_PARAMS_SUFFIX:
        raise FormatError(
            path, "the weights of a PaddlePaddle model: give its .pdmodel/.json, or the directory", input_name
        )
    if path.name in ("saved_model.pb", "saved_model.pbtxt"):
        raise FormatError(path, f"give the SavedModel's directory ({path.parent.name}/), not its .pb", input_name)
    if suffix == ".onnx":
        raise FormatError(path, "already ONNX: connect it to onnx.simplify or build.openvino directly", input_name)
    raise FormatError(path, f"unknown model format; expected {EXPECTED}", input_name)


def _detect_dir(path: Path, input_name: str) -> ModelSource:
    if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
        return ModelSource("savedmodel", path)
    models = sorted(p for p in path.iterdir() if p.suffix in PADDLE_MODEL_SUFFIXES and p.is_file())
    paired = [m for m in models if m.with_suffix(PADDLE_PARAMS_SUFFIX).is_file()]
    if len(paired) == 1:
        return ModelSource("paddle", paired[0], paired[0].with_suffix(PADDLE_PARAMS_SUFFIX))
    if len(paired) > 1:
        found = ", ".join(p.name for p in paired)
        raise FormatError(path, f"holds {len(paired)} PaddlePaddle models ({found}); give one model file", input_name)
    pdmodels = [m for m in models if m.suffix == ".pdmodel"]
    if pdmodels:
        params = pdmodels[0].with_suffix(PADDLE_PARAMS_SUFFIX).name
        raise FormatError(path, f"{pdmodels[0].name} has no weights {params} beside it", input_name)
    names = sorted(p.name for p in path.iterdir())
    listing = ", ".join(names[:8]) + (f", and {len(names) - 8} more" if len(names) > 8 else "") if names else "nothing"
    raise FormatError(
        path,
        f"neither a TensorFlow SavedModel (no saved_model.pb) nor a PaddlePaddle inference model (no .pdmodel/.json "
        f"with its .pdiparams); has: {listing}",
        input_name,
    )


def _expect_magic(path: Path, magic: bytes, offset: int, problem: str, input_name: str) -> None:
    with open(path, "rb") as f:
        head = f.read(offset + len(magic))
    if head[offset:] != magic:
        raise FormatError(path, problem, input_name)


def stage_paddle(source: ModelSource, workdir: Path) -> ModelSource:
    """The Paddle model and its weights copied into `workdir` by Python (so the weights are a discovered input
    of the stage when only the model file is its declared input), as the converter and the reference read them."""
    assert source.format == "paddle" and source.params is not None
    workdir.mkdir(parents=True, exist_ok=True)
    model = workdir / source.path.name  # the same names: errors name the user's files
    params = workdir / source.params.name
    shutil.copyfile(source.path, model)
    shutil.copyfile(source.params, params)
    return ModelSource("paddle", model, params)


def tensorflow_version() -> dict[str, str]:
    """The installed TensorFlow distribution (tensorflow or tensorflow-cpu) and its version, for a key."""
    found = {d: installed_version(d) for d in TENSORFLOW_DISTS if installed_version(d) != "missing"}
    return found or {"tensorflow": "missing"}


def framework_versions(frameworks: tuple[Framework, ...]) -> dict[str, str]:
    """The versions of the frameworks a converter reads models of: they decide how a model loads and runs."""
    versions: dict[str, str] = {}
    if "tensorflow" in frameworks:
        versions.update(tensorflow_version())
        versions["keras"] = installed_version("keras")
    if "paddle" in frameworks:
        versions["paddlepaddle"] = installed_version("paddlepaddle")
    return versions


def missing_framework(framework: Framework) -> str | None:
    """Why `framework`'s models cannot be read here (one line with the pip command), or None."""
    if framework == "tensorflow":
        missing = "tensorflow" if "missing" in tensorflow_version().values() else None
    else:
        missing = "paddlepaddle" if installed_version("paddlepaddle") == "missing" else None
    return f"needs {missing}: pip install '.[{EXTRAS[framework]}]'" if missing else None
