"""cuda-python's runtime bindings as the TensorRT runner uses them: the module, result unpacking, raw handles.

Apart from the runner so that its multi-stream lanes (`runtimes.tensorrt.lanes`) use the same calls without
importing the runner. Nothing here imports cuda-python until `_cudart()` is called.
"""

from __future__ import annotations

from typing import Any


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6.1 (the only layout in 13.x)
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6.1 (deprecated in 12.6.1, removed in 13.0)
    return cudart


def _ok(result: Any) -> Any:
    """Unpack a cuda-python `(error, value...)` result, raising on any error (cudaSuccess is 0)."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(getattr(err, "value", err) or 0) != 0:
        raise RuntimeError(f"CUDA error: {getattr(err, 'name', err)}")
    return rest[0] if len(rest) == 1 else (tuple(rest) or None)


def _handle(obj: Any) -> int:
    """The raw handle of a cuda-python object, e.g. the cudaStream_t that `execute_async_v3` takes as an int.

    cuda-bindings 13.0 added `cuda.bindings.utils.get_cuda_native_handle` and deprecated `int(obj)`
    (its release notes); bindings without the helper only have `int(obj)`. (`getPtr()` is the
    address of the handle's storage, not the handle.)
    """
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    try:
        return int(get_cuda_native_handle(obj))
    except TypeError:  # a type the helper does not know
        return int(obj)
