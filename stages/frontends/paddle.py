"""PaddlePaddle's side of a conversion: the inference model run by Paddle Inference, the reference the
converted model is checked against. `paddle.inference` reads both the legacy program (.pdmodel) and the PIR
one (.json) whatever mode paddle was imported in, so a worker that imported paddle earlier needs nothing reset."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from pipeline.errors import one_line
from stages.frontends.formats import ModelSource
from stages.frontends.ports import Bound


def run_paddle(source: ModelSource, bound: list[Bound], feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model run by Paddle Inference on the CPU (IR optimisation off: the program as saved); outputs by
    fetch name."""
    from paddle import inference

    assert source.params is not None
    config = inference.Config(str(source.path), str(source.params))
    config.disable_gpu()
    config.disable_glog_info()
    config.switch_ir_optim(False)
    config.set_cpu_math_library_num_threads(1)
    try:
        predictor = inference.create_predictor(config)
    except Exception as exc:  # Paddle raises its own error types for a file it cannot read
        raise ValueError(
            f"input model ({source.path.name}): Paddle cannot load it: {one_line(str(exc), 300)}"
        ) from None
    for b in bound:
        handle = predictor.get_input_handle(b.port.name)
        handle.reshape(list(feeds[b.name].shape))
        handle.copy_from_cpu(np.ascontiguousarray(feeds[b.name]))
    predictor.run()
    return {name: predictor.get_output_handle(name).copy_to_cpu() for name in predictor.get_output_names()}
