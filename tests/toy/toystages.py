"""Tiny stage kinds for engine tests: no heavy libraries, instant to run, easy to count.

Every run appends a line to $TOY_RUNLOG so a test can prove run() was (not) called.
"""

from __future__ import annotations

import os
import time

from pydantic import Field

from pipeline.errors import GateFailed
from pipeline.stage import InputSpec, OutputSpec, Params, Stage, StageContext


def _log_run(ctx: StageContext) -> None:
    path = os.environ.get("TOY_RUNLOG")
    if path:
        with open(path, "a") as f:
            f.write(ctx.stage + "\n")
    times = os.environ.get("TOY_TIMELOG")
    if times:
        with open(times, "a") as f:
            f.write(f"{ctx.stage} {time.time():.3f}\n")


class WriteParams(Params):
    text: str = Field("hello", description="text to write")
    repeat: int = Field(1, ge=1, description="how many times")
    sleep: float = Field(0.0, description="seconds to sleep before writing (concurrency tests)")


class Write(Stage[WriteParams]):
    """Writes params.text repeated into out.txt."""

    kind = "toy.write"
    outputs = {"model": OutputSpec("out.txt")}

    def run(self, ctx: StageContext[WriteParams]) -> dict:
        _log_run(ctx)
        for i in range(10):
            ctx.progress(i + 1, 10, "writing")
            time.sleep(ctx.params.sleep / 10)
        (ctx.outdir / "out.txt").write_text(ctx.params.text * ctx.params.repeat)
        return {"chars": len(ctx.params.text) * ctx.params.repeat}


class UpperParams(Params):
    strip_comments: bool = Field(True, description="drop lines starting with #")


class Upper(Stage[UpperParams]):
    """Upper-cases its input (dropping # comments: so a comment edit upstream is cut off here)."""

    kind = "toy.upper"
    inputs = {"model": InputSpec()}
    outputs = {"model": OutputSpec("upper.txt")}

    def run(self, ctx: StageContext[UpperParams]) -> dict:
        _log_run(ctx)
        text = ctx.path("model").read_text()
        if ctx.params.strip_comments:
            text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
        (ctx.outdir / "upper.txt").write_text(text.upper())
        print("upper done")
        return {}


class Join(Stage):
    """Concatenates two inputs into a directory output (exercises directory artifacts)."""

    kind = "toy.join"
    inputs = {"a": InputSpec(), "b": InputSpec()}
    outputs = {"model": OutputSpec("joined", is_dir=True)}

    def run(self, ctx: StageContext) -> dict:
        _log_run(ctx)
        d = ctx.outdir / "joined"
        (d / "sub").mkdir(parents=True)
        (d / "a.txt").write_text(ctx.path("a").read_text())
        (d / "sub" / "b.txt").write_text(ctx.path("b").read_text())
        return {}


class FailParams(Params):
    gate: bool = Field(False, description="fail as a gate instead of an error")


class Fail(Stage[FailParams]):
    """Always fails after writing a partial output."""

    kind = "toy.fail"
    inputs = {"model": InputSpec(optional=True)}
    outputs = {"model": OutputSpec("never.txt")}

    def run(self, ctx: StageContext[FailParams]) -> dict:
        _log_run(ctx)
        (ctx.outdir / "never.txt").write_text("partial")
        if ctx.params.gate:
            raise GateFailed(["logits: cosine 0.5 < 0.99"])
        raise ValueError("boom on purpose")


class NeedsGpu(Stage):
    """Declares a requirement no test machine meets."""

    kind = "toy.gpu"
    inputs = {"model": InputSpec(optional=True)}
    outputs = {"model": OutputSpec("engine.bin")}

    def unmet(self, params: Params | None = None) -> str | None:
        return "needs an NVIDIA GPU (probed: no /dev/nvidia0): pip install '.[tensorrt]'"

    def run(self, ctx: StageContext) -> dict:
        raise AssertionError("must never run")


class CallParams(Params):
    fn: str = Field(description="module:function returning the text to write")


class Call(Stage[CallParams]):
    """Writes what a user function returns; the function's source enters the key (like a model factory)."""

    kind = "toy.call"
    outputs = {"model": OutputSpec("called.txt")}

    def fingerprint(self, params, model, keys) -> dict:
        return {"code": keys.code_digest(params.fn)}

    def run(self, ctx: StageContext[CallParams]) -> dict:
        import importlib

        _log_run(ctx)
        module, _, fn = ctx.params.fn.partition(":")
        text = getattr(importlib.import_module(module), fn)()
        (ctx.outdir / "called.txt").write_text(text)
        return {}


class DataSummary(Stage):
    """Writes its dataset's name and kind (exercises data inputs and their digests)."""

    kind = "toy.data"
    inputs = {"data": InputSpec(kind="data")}
    outputs = {"model": OutputSpec("data.txt")}

    def run(self, ctx: StageContext) -> dict:
        _log_run(ctx)
        data = ctx.dataset("data")
        (ctx.outdir / "data.txt").write_text(f"{data.name} {data.spec['kind']} {data.base_dir.is_absolute()}")
        return {}


class CountSamples(Stage):
    """Reads its dataset through `stages.data.open_dataset` (as the real kinds do): sample count and sum."""

    kind = "toy.count"
    inputs = {"data": InputSpec(kind="data")}
    outputs = {"model": OutputSpec("count.txt")}

    def run(self, ctx: StageContext) -> dict:
        from stages.data import open_dataset

        _log_run(ctx)
        count, total = 0, 0.0
        for inputs, _ in open_dataset(ctx.dataset("data"), ctx.model).batches(2):
            count += len(inputs["x"])
            total += float(inputs["x"].sum())
        (ctx.outdir / "count.txt").write_text(f"{count} {total:g}")
        return {"samples": count}


class TimedParams(Params):
    seconds: float = Field(1.0, description="how long to 'measure'")


class Timed(Stage[TimedParams]):
    """Stands in for a benchmark: holds the CPU alone (exclusive) for `seconds`."""

    kind = "toy.timed"
    exclusive = True
    outputs = {"model": OutputSpec("timing.txt")}

    def run(self, ctx: StageContext[TimedParams]) -> dict:
        _log_run(ctx)
        time.sleep(ctx.params.seconds)
        (ctx.outdir / "timing.txt").write_text(f"{time.time():.3f}")
        return {}


class ReportParams(Params):
    title: str = Field("Toy report", description="the report's title (its # heading)")


class Report(Stage[ReportParams]):
    """Writes a Markdown report on its input (headings, a fenced block holding `# not a heading`) and a
    plain-text twin (exercises `pipeline summary`)."""

    kind = "toy.report"
    inputs = {"model": InputSpec()}
    outputs = {"report": OutputSpec("report.txt"), "markdown": OutputSpec("report.md")}

    def run(self, ctx: StageContext[ReportParams]) -> dict:
        _log_run(ctx)
        text = ctx.path("model").read_text()
        (ctx.outdir / "report.txt").write_text(f"{len(text)} chars\n")
        (ctx.outdir / "report.md").write_text(
            f"# {ctx.params.title}\n\nThe input has {len(text)} characters.\n\n"
            "## Input\n\n```text\n# not a heading\n" + text.rstrip("\n") + "\n```\n\nDone.\n"
        )
        return {}


class CheckParams(Params):
    warn: list[str] = Field(default_factory=list, description="warnings to raise (StageContext.warn)")
    fail: bool = Field(False, description="fail the gate after writing the reports")
    factor: int = Field(1, description="a parameter that changes the result")


class Check(Stage[CheckParams]):
    """A validate-like stage: writes report.md and report.json, warns, and may fail its gate."""

    kind = "toy.check"
    inputs = {"model": InputSpec(), "data": InputSpec(kind="data", optional=True)}
    outputs = {"report": OutputSpec("report.json"), "markdown": OutputSpec("report.md")}

    def run(self, ctx: StageContext[CheckParams]) -> dict:
        _log_run(ctx)
        for w in ctx.params.warn:
            ctx.warn(w)
        verdict = "FAIL" if ctx.params.fail else "PASS"
        (ctx.outdir / "report.json").write_text(f'{{"verdict": "{verdict}"}}\n')
        (ctx.outdir / "report.md").write_text(f"# Check\n\nverdict: {verdict} x{ctx.params.factor}\n")
        if ctx.params.fail:
            raise GateFailed(["out: cosine 0.5 < 0.99"])
        return {"factor": ctx.params.factor}


class SearchParams(Params):
    points: list[int] = Field([1, 2, 3], description="the trials, in order: each squares its point (trial-neutral)")
    scale: int = Field(1, description="multiplies every trial's result (in each trial's key)")
    budget: int = Field(10, ge=1, description="at most this many trials (trial-neutral)")
    table: str | None = Field(None, description="a file each trial reads by path: its number is added")


class Search(Stage[SearchParams]):
    """A search over `points`, one cached trial each (each logs `<stage>:trial <point>` to $TOY_RUNLOG when
    it is computed); writes the largest square."""

    kind = "toy.search"
    inputs = {"model": InputSpec(optional=True)}
    outputs = {"model": OutputSpec("best.txt")}
    trial_neutral = ("points", "budget")  # which trials run; each trial's identity holds its point

    def run(self, ctx: StageContext[SearchParams]) -> dict:
        _log_run(ctx)
        best = None
        for point in ctx.params.points[: ctx.params.budget]:
            trial = ctx.trials.run(f"point {point}", {"point": point}, lambda d, p=point: _square(ctx, d, p))
            value = int((trial.path / "value.txt").read_text())
            assert value == trial.summary["value"]
            best = value if best is None else max(best, value)
        (ctx.outdir / "best.txt").write_text(str(best))
        return {"best": best, "trials": len(ctx.trials.done)}


def _square(ctx: StageContext[SearchParams], out: "os.PathLike[str] | str", point: int) -> dict:
    path = os.environ.get("TOY_RUNLOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{ctx.stage}:trial {point}\n")
    value = point * point * ctx.params.scale
    if ctx.params.table:
        with open(os.path.join(ctx.recipe_dir, ctx.params.table)) as f:
            value += int(f.read())
    with open(os.path.join(out, "value.txt"), "w") as f:
        f.write(str(value))
    return {"value": value}


class Gather(Stage):
    """Lists every artifact of its `parts` fan-in (a matrix stage's variants) with their text, in recipe order."""

    kind = "toy.gather"
    inputs = {"parts": InputSpec(many=True), "extra": InputSpec(optional=True)}
    outputs = {"model": OutputSpec("gathered.txt")}

    def run(self, ctx: StageContext) -> dict:
        _log_run(ctx)
        parts = ctx.members("parts")
        lines = [f"{label}: {path.read_text().strip()}" for label, path in parts.items()]
        (ctx.outdir / "gathered.txt").write_text("\n".join(lines) + "\n")
        return {"parts": len(parts)}


class Pid(Stage):
    """Reports the worker process it ran in (its pid), reading an optional input only to follow another stage."""

    kind = "toy.pid"
    inputs = {"after": InputSpec(optional=True)}
    outputs = {"model": OutputSpec("pid.txt")}

    def run(self, ctx: StageContext) -> dict:
        _log_run(ctx)
        (ctx.outdir / "pid.txt").write_text(f"{ctx.stage} {os.getpid()}")  # the stage: no two outputs alike
        return {"pid": os.getpid()}


class PidAlone(Pid):
    """The same, in a worker of its own (`own_process`), as a kind whose libraries break others would ask."""

    kind = "toy.pid_alone"
    own_process = True
