"""Stage kinds for the Ray cluster tests, loaded as a recipe plugin: they report where they ran.

`ray.probe` writes the node it ran on (id, accelerator label, pid, working directory). With `target`
it is hardware-bound: the CLI keys it by the target, the cluster places it by label, and on the
node it refuses unless the node's label matches. `meet` is a rendezvous folder: the stage says it has
started there and waits until `expect` stages have, so a pass proves they ran at the same time.
`hold` is a folder where the first attempt parks (saying where it is) until the test kills its node.
`steps` reports that many steps of progress, one a second.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from pipeline.stage import OutputSpec, Params, Stage

LABEL = "ray.io/accelerator-type"


def node() -> tuple[str, str | None]:
    """(node id, accelerator label) of the Ray node this process runs on; ("", None) off a cluster."""
    import ray

    if not ray.is_initialized():
        return "", None
    ctx = ray.get_runtime_context()
    return ctx.get_node_id(), ctx.get_node_labels().get(LABEL)


class ProbeParams(Params):
    target: str | None = Field(None, description="the accelerator type the result is for")
    tag: str = Field("", description="tells stages apart")
    meet: str | None = Field(None, description="rendezvous folder")
    expect: int = Field(1, description="stages to meet there")
    hold: str | None = Field(None, description="folder where the first attempt parks")
    steps: int = Field(0, description="steps of progress to report, one a second")
    read: str | None = Field(None, description="a file beside the recipe to read by path (a discovered input)")


@dataclass(frozen=True)
class NodeGpu:
    """A hardware target for the test cluster: the GPU a node's label names."""

    accelerator: str

    def identity(self) -> dict[str, str]:
        return {"target": self.accelerator}

    def mismatch(self) -> str | None:
        here = node()[1]
        return None if here == self.accelerator else f"needs a {self.accelerator} (this node: {here or 'none'})"


class Probe(Stage[ProbeParams]):
    """Writes where it ran."""

    kind = "ray.probe"
    outputs = {"where": OutputSpec("where.json")}

    def target(self, params: ProbeParams) -> NodeGpu | None:
        return NodeGpu(params.target) if params.target is not None else None

    def run(self, ctx) -> dict:  # noqa: ANN001
        p = ctx.params
        node_id, label = node()
        if p.hold is not None:
            folder = Path(p.hold)
            if not any(folder.iterdir()):  # the first attempt: park here until the node is killed
                (folder / node_id).write_text(str(os.getpid()))
                time.sleep(300)
        if p.meet is not None:
            folder = Path(p.meet)
            (folder / p.tag).write_text(node_id)
            deadline = time.monotonic() + 120
            while len(list(folder.iterdir())) < p.expect:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{p.tag} waited alone: the other stages never ran beside it")
                time.sleep(0.1)
        for step in range(1, p.steps + 1):
            time.sleep(1.0)
            ctx.progress(step, p.steps, f"probing, step {step} of {p.steps}")
        where = {"node": node_id, "label": label, "pid": os.getpid(), "cwd": os.getcwd(), "tag": p.tag}
        if p.read is not None:
            where["read"] = (ctx.recipe_dir / p.read).read_text()
        (ctx.outdir / "where.json").write_text(json.dumps(where))
        return {}
