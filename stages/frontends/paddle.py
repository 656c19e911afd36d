"""PaddlePaddle's side of a conversion: the inference model run by Paddle Inference, the reference the
converted model is checked against.

It runs in a child interpreter of its own (`python -m stages.frontends.paddle`): paddle's native library
crashes the process (SIGSEGV) when it loads after TensorFlow's, and a pipeline worker is reused across stages,
so one that ran `convert.onnx` on a Keras model would die on the next Paddle check. The feeds and outputs
cross as .npz files in a temporary folder. `paddle.inference` reads both the legacy program (.pdmodel) and the
PIR one (.json) whatever mode paddle was imported in.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pipeline.errors import one_line
from stages.frontends.formats import ModelSource
from stages.frontends.ports import Bound


def run_paddle(source: ModelSource, bound: list[Bound], feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model run by Paddle Inference on the CPU (IR optimisation off: the program as saved), in a child
    interpreter; outputs by fetch name. ValueError (one line) when Paddle cannot load or run it."""
    assert source.params is not None
    with tempfile.TemporaryDirectory(prefix="paddle-run-") as tmp:
        inputs, outputs = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        arrays: dict[str, Any] = {b.port.name: np.ascontiguousarray(feeds[b.name]) for b in bound}
        np.savez(inputs, **arrays)
        done = subprocess.run(
            [sys.executable, "-m", "stages.frontends.paddle", str(source.path), str(source.params), str(inputs)]
            + [str(outputs)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            why = lines[-1] if lines else f"exit code {done.returncode}"
            raise ValueError(f"input model ({source.path.name}): Paddle cannot load or run it: {one_line(why, 300)}")
        with np.load(outputs) as got:
            return {name: got[name] for name in got.files}


def _child(model: str, params: str, inputs: str, outputs: str) -> None:
    """The child's side: load the predictor, feed the inputs by name, save every output by fetch name."""
    from paddle import inference

    config = inference.Config(model, params)
    config.disable_gpu()
    config.disable_glog_info()
    config.switch_ir_optim(False)
    config.set_cpu_math_library_num_threads(1)
    predictor = inference.create_predictor(config)
    with np.load(inputs) as feeds:
        for name in feeds.files:
            handle = predictor.get_input_handle(name)
            handle.reshape(list(feeds[name].shape))
            handle.copy_from_cpu(np.ascontiguousarray(feeds[name]))
    predictor.run()
    np.savez(
        outputs, **{name: predictor.get_output_handle(name).copy_to_cpu() for name in predictor.get_output_names()}
    )


if __name__ == "__main__":
    _child(*sys.argv[1:5])
