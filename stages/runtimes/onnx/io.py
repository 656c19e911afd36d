"""ONNX file helpers shared by the ONNX stage kinds: load, save, run, compare.

Every ONNX-producing stage ends with a self-check against its reference, so a
transformation that changes the numbers fails at the stage that broke it, not
three stages later in `validate`. onnx and onnxruntime are imported lazily:
kind modules import this one on the engine's cached path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from stages.runtimes.dtypes import dtype_of_ort, random_array

if TYPE_CHECKING:
    import onnx
    import onnxruntime

    from pipeline.schema import ModelSpec

# Protobuf refuses to serialise a message past 2 GiB; such models need external data.
PROTOBUF_LIMIT = 2**31 - 1
# Intra-op threads of a session opened without an explicit count (a stage's self-check).
SELF_CHECK_THREADS = min(2, os.cpu_count() or 1)
# ONNX Runtime's graph optimization levels, by the name recipes and engine.json use.
GRAPH_OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def load_onnx(path: Path | str) -> "onnx.ModelProto":
    """Load a model with any external data pulled inline."""
    import onnx

    return onnx.load(str(path), load_external_data=True)


def save_onnx(model: "onnx.ModelProto", path: Path | str) -> Path:
    """Write `model` as one self-contained file, byte-for-byte reproducible.

    Deterministic protobuf serialisation plus inline weights: the same graph always
    gives the same bytes, which is what lets the engine cut rebuilds off early.
    """
    size = model.ByteSize()
    if size > PROTOBUF_LIMIT:
        raise ValueError(
            f"model is {size / 2**30:.2f} GiB; single-file ONNX is limited to 2 GiB "
            "(external data is not supported by this stage yet)"
        )
    path = Path(path)
    path.write_bytes(model.SerializeToString(deterministic=True))
    return path


def strip_debug_info(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """Remove doc strings and per-element metadata (in place) and return `model`.

    Exporters record source paths, line numbers and fx node dumps there
    (`pkg.torch.onnx.stack_trace`, ...). They carry no semantics but would make
    the bytes depend on the checkout directory and on comment edits. Model-level
    `metadata_props` are kept: tools put deliberate annotations there.
    """
    model.doc_string = ""
    _strip_graph(model.graph)
    for fn in model.functions:
        fn.doc_string = ""
        del fn.metadata_props[:]
        for info in fn.value_info:
            info.doc_string = ""
            del info.metadata_props[:]
        for node in fn.node:
            _strip_node(node)
    return model


def _strip_graph(graph: "onnx.GraphProto") -> None:
    graph.doc_string = ""
    del graph.metadata_props[:]
    for info in (*graph.input, *graph.output, *graph.value_info):
        info.doc_string = ""
        del info.metadata_props[:]
    for tensor in (*graph.initializer, *(s.values for s in graph.sparse_initializer)):
        tensor.doc_string = ""
        del tensor.metadata_props[:]
    for node in graph.node:
        _strip_node(node)


def _strip_node(node: "onnx.NodeProto") -> None:
    node.doc_string = ""
    del node.metadata_props[:]
    for attr in node.attribute:
        attr.doc_string = ""
        if attr.HasField("g"):
            _strip_graph(attr.g)
        for sub in attr.graphs:
            _strip_graph(sub)
        if attr.HasField("t"):
            attr.t.doc_string = ""
            del attr.t.metadata_props[:]


def session_from_onnx(
    path: Path | str,
    threads: int | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    graph_optimization: str = "all",
    profile_prefix: str | None = None,
) -> "onnxruntime.InferenceSession":
    """The one way this project opens an ONNX Runtime session: the CPU provider unless told, one inter-op thread, quiet.

    `threads` (intra-op) wins when given: the ONNX Runtime runner passes its own
    (`validate`'s `threads`, else every CPU it may use). The default,
    `SELF_CHECK_THREADS` = at most 2, suits the stages' self-checks, which run
    beside other stages on a small shared machine. `providers` and
    `graph_optimization` (a `GRAPH_OPTIMIZATION` key; "all" is ONNX Runtime's
    default) are what a build.onnxruntime engine records for its server. `profile_prefix`: profile every node
    into a JSON trace starting with it (`session.end_profiling()` names the file).
    """
    import onnxruntime as ort

    if graph_optimization not in GRAPH_OPTIMIZATION:
        raise ValueError(f"graph_optimization {graph_optimization!r}: expected one of {', '.join(GRAPH_OPTIMIZATION)}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or SELF_CHECK_THREADS
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION[graph_optimization])
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))


def input_shapes(model: "ModelSpec", point: str = "opt") -> dict[str, tuple[int, ...]]:
    """Concrete input shapes from the recipe's `model:` section, each dim at min, opt or max."""
    return {name: model.shape(name, point) for name in model.tensors}  # type: ignore[arg-type]


def random_inputs(
    session: "onnxruntime.InferenceSession", shapes: Mapping[str, tuple[int, ...]], seed: int
) -> dict[str, np.ndarray]:
    """Seeded random feeds for every input of `session`, in each input's own dtype."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in session.get_inputs():
        if inp.name not in shapes:
            raise ValueError(f"no shape for model input {inp.name!r} (known: {', '.join(shapes) or 'none'})")
        feeds[inp.name] = random_array(rng, shapes[inp.name], dtype_of_ort(inp.type))
    return feeds


def run_onnx(session: "onnxruntime.InferenceSession", feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run `session` and return its outputs by name."""
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feeds))))


def compare_outputs(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], atol: float, rtol: float
) -> dict[str, float]:
    """Max abs difference per output; ValueError naming the first output out of tolerance.

    Passes where |candidate - reference| <= atol + rtol * |reference| everywhere
    (numpy's allclose, with the reference on the right).
    """
    result = {}
    for name, ref in reference.items():
        if name not in candidate:
            raise ValueError(f"output {name}: missing from the candidate (has: {', '.join(candidate) or 'none'})")
        ref, cand = np.asarray(ref), np.asarray(candidate[name])
        if ref.shape != cand.shape:
            raise ValueError(f"output {name}: shape {cand.shape} != reference shape {ref.shape}")
        if ref.dtype.kind in "fc" or cand.dtype.kind in "fc":
            ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
            if np.any(np.isnan(ref64) != np.isnan(cand64)):
                raise ValueError(f"output {name}: NaN in one model but not the other")
            same = (ref64 == cand64) | (np.isnan(ref64) & np.isnan(cand64))  # equal infs and NaNs agree
            with np.errstate(invalid="ignore"):
                diff = np.nan_to_num(np.where(same, 0.0, np.abs(cand64 - ref64)), nan=np.inf)
            bad = diff > atol + rtol * np.abs(np.nan_to_num(ref64))
        else:
            diff = (ref != cand).astype(np.float64)
            bad = diff > 0
        max_abs = float(diff.max()) if diff.size else 0.0
        if np.any(bad):
            at = np.unravel_index(int(np.argmax(np.where(bad, diff, -1.0))), diff.shape)
            raise ValueError(
                f"output {name}: max abs diff {max_abs:.3g} > atol {atol:g} + rtol {rtol:g} * |reference| "
                f"({int(bad.sum())} of {bad.size} elements; worst at {tuple(int(i) for i in at)}: "
                f"reference {ref[at].item():.6g}, candidate {cand[at].item():.6g})"
            )
        result[name] = max_abs
    return result


def check_agreement(
    reference_path: Path | str,
    candidate_path: Path | str,
    inputs: Mapping[str, np.ndarray],
    atol: float,
    rtol: float,
    name_map: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Run both models on `inputs` (keyed by the reference's names) and compare every output.

    `name_map` maps reference input/output names to the candidate's (after a
    rename). Returns the max abs difference per output (reference names);
    raises ValueError naming the output that disagrees.
    """
    name_map = dict(name_map or {})
    reference = run_onnx(session_from_onnx(reference_path), inputs)
    candidate_session = session_from_onnx(candidate_path)
    feeds = {name_map.get(k, k): v for k, v in inputs.items()}
    wanted = {i.name for i in candidate_session.get_inputs()}
    if set(feeds) != wanted:
        raise ValueError(f"inputs {sorted(feeds)} do not match the candidate's inputs {sorted(wanted)}")
    candidate = run_onnx(candidate_session, feeds)
    back = {name_map.get(k, k): k for k in reference}
    return compare_outputs(reference, {back.get(k, k): v for k, v in candidate.items()}, atol, rtol)
