"""One quantize.search run: the data, the float model and its reference, and each trial as a cached result.

`SearchRun.open` reads everything once (datasets checked first, `val` split,
the float reference remembered); `trial`, `ranking` and `float_latency` are the
cached results (`ctx.trials`), each a function of its identity and the stage's
key; `search` walks the space (`quantization.search`), chooses
(`quantization.choice`), re-quantizes the choice with its float operations as
patterns, confirms it on the held-out samples and returns a `SearchResult`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.quantization.choice import Latency, Scored, Verdict, choose, no_pass_lines
from stages.quantization.search import Budget, Step, walk
from stages.quantization.settings import DEFAULT, FloatOps, Setting

if TYPE_CHECKING:
    import openvino as ov

    from pipeline.stage import StageContext, Trial
    from stages.quantization.judge import Judge
    from stages.quantization.search_report import SearchReport
    from stages.quantize_search import QuantizeSearchParams

IR = "model"  # a trial's IR directory, inside the trial
RANKING = "ranking.json"  # a ranking's figures per reverted group, inside its trial


@dataclass
class SearchResult:
    """What the search found: every trial, the choice (or none), and why the stage fails (empty: it passes)."""

    run: SearchRun
    steps: list[Step]
    stopped: str
    chosen: Step | None
    final: Step | None  # the choice re-quantized with its float operations as patterns
    holdout: dict[str, tuple[Verdict, ...]]  # "default" / "chosen" -> the gates on the held-out samples
    float_latency: Latency
    failures: list[str]
    chosen_model: Path | None

    def report(self) -> SearchReport:
        from stages.quantization.search_report import SearchReport

        return SearchReport(self)


@dataclass
class SearchRun:
    ctx: StageContext[QuantizeSearchParams]
    core: ov.Core
    nncf: Any
    judge: Judge
    feed: Any  # the calibration Feed
    timing_feeds: dict[str, Any]
    transformer: bool
    model_type_why: str
    ops: dict[str, str] = field(default_factory=dict)  # quantizable op name -> type (from the default trial)
    trials: dict[Setting, Trial] = field(default_factory=dict)
    count: int = 0  # trials asked for so far: the next one's index on the path
    rankings: list[dict[str, Any]] = field(default_factory=list)  # each sensitivity ranking, as the path read it

    @classmethod
    def open(cls, ctx: StageContext[QuantizeSearchParams]) -> SearchRun:
        from stages import data
        from stages.quantization.calibration import Feed, fit_static_batch, no_samples
        from stages.quantization.judge import Gates, Judge, RememberingRunner, split
        from stages.quantization.nncf_setup import import_nncf, resolve_model_type
        from stages.runtimes.openvino import io as ovio
        from stages.runtimes.openvino.runner import OpenVinoRunner
        from stages.validation import numerics as N
        from stages.validation import samples as SG

        p, model = ctx.params, ctx.model
        if model is None or not model.tensors:
            raise ValueError("quantize.search needs model.tensors (and dims) in the recipe: they shape `val`")
        calib = data.open_dataset(ctx.dataset("data"), model)
        val = data.open_dataset(ctx.dataset("val"), model)
        if calib.count == 0:
            raise no_samples(calib)
        for ds in (calib, val):
            if data.warn_if_synthetic(ds):
                ctx.warn(f"{ds.label}: {data.warn_if_synthetic(ds)}")
        nncf = import_nncf()
        import openvino as ov

        core = ov.Core()
        float_model = ovio.model_from_artifact(core, ctx.path("model"))
        inputs, _ = ovio.io_names(float_model)
        samples = min(p.subset_size, calib.count) if calib.count is not None else p.subset_size
        feed = Feed(calib, p.batch_size, fit_static_batch(float_model, p.batch_size, samples), inputs, ctx.progress)
        reference = OpenVinoRunner(ctx.path("model"), precision="f32", threads=p.threads, model=float_model)
        groups = SG.load_groups(val, model, p.max_samples)
        splits = split(groups, p.holdout_every)
        mask = N.mask_name(p.mask_input, list(model.tensors))
        gates = Gates(p.gates, dict(p.per_output), p.labels_output)
        _check_labels(gates, val)
        judge = Judge(model, RememberingRunner(reference), splits, gates, mask, p.dense_threshold)
        largest = max(groups, key=len)
        batch = p.throughput_batch if p.objective == "throughput" else 1
        timing_feeds = SG.tile({k: v[:1] for k, v in largest.inputs.items()}, batch)
        kind = resolve_model_type("auto", float_model)
        return cls(ctx, core, nncf, judge, feed, timing_feeds, kind.used == "transformer", kind.why)

    # -- the cached results ---------------------------------------------------------------------------------
    def trial(self, setting: Setting, why: str) -> Scored:
        """The setting's trial on the search split: quantized, compiled, judged and timed (or from the cache)."""
        index, self.count = self.count, self.count + 1
        trial = self.ctx.trials.run(
            f"trial {index}: {setting.describe()}",
            {"setting": setting.to_json(), "split": "search"},
            lambda out: self._make_trial(setting, out),
        )
        self.trials[setting] = trial
        if setting == DEFAULT:  # always first: every quantizable operation, named as the float model names it
            self.ops = dict(trial.summary["quantized_ops"])
            if not trial.summary["int8_ops"]:
                raise ValueError("NNCF quantized nothing in this model with its default setting: nothing to search")
        total = max(self.ctx.params.max_trials, index + 1)
        self.ctx.progress(index + 1, total, f"trial {index}: {setting.describe()}")
        return self._scored(index, setting, trial)

    def _scored(self, index: int, setting: Setting, trial: Trial) -> Scored:
        from stages.quantization.judge import tail_margin

        judged = trial.summary["judged"]
        verdicts = self.judge.verdicts(judged)
        latency = Latency(**{k: float(v) for k, v in trial.summary["latency"].items()})
        quantized = int(trial.summary["int8_ops"]) > 0
        tail = tail_margin(judged, verdicts, self.ctx.params.space.tail)
        return Scored(index, setting.describe(), verdicts, latency, int(trial.summary["float_ops"]), quantized, tail)

    def _make_trial(self, setting: Setting, out: Path) -> dict[str, Any]:
        from stages.quantization.calibration import inputs_of
        from stages.quantization.groups import groups
        from stages.quantization.judge import latency
        from stages.quantization.patterns import matches
        from stages.quantization.settings import nncf_arguments
        from stages.runtimes.openvino import io as ovio
        from stages.runtimes.openvino.runner import OpenVinoRunner

        p = self.ctx.params
        float_model = ovio.model_from_artifact(self.core, self.ctx.path("model"))
        started = time.perf_counter()
        arguments = nncf_arguments(self.nncf, setting, self._transformer(setting))
        dataset = self.nncf.Dataset(self.feed, inputs_of)
        quantized = self.nncf.quantize(float_model, dataset, subset_size=len(self.feed), **arguments)
        seconds = time.perf_counter() - started
        ovio.save_ir(quantized, out / IR, compress_to_fp16=False)
        fresh = ovio.model_from_artifact(self.core, self.ctx.path("model"))
        ops = {g.name: g.type for g in groups(quantized, fresh)}
        kept = matches(setting.float_ops, self._quantizable(setting) or ops)
        runner = OpenVinoRunner(out / IR, precision=p.inference_precision, threads=p.threads)
        judged = self.judge.entries(runner, "search", _quiet)
        timed = latency(runner, self.timing_feeds, p.objective, p.repeats, p.min_seconds)
        return {
            "setting": setting.to_json(),
            "judged": judged,
            "latency": timed.to_json(),
            "int8_ops": ovio.count_ops(quantized),
            "quantized_ops": ops,
            "float_ops": len(kept),
            "float_op_names": sorted(kept),
            "quantize_seconds": round(seconds, 3),
        }

    def _quantizable(self, setting: Setting) -> dict[str, str]:
        """The operations `setting` quantizes before any is kept in float (name -> type): its own trial without
        float ops when there is one (another model type quantizes other ops), else the default's."""
        base = self.trials.get(replace(setting, float_ops=FloatOps()))
        return dict(base.summary["quantized_ops"]) if base is not None else dict(self.ops)

    def _transformer(self, setting: Setting) -> bool:
        return self.transformer if setting.model_type == "auto" else setting.model_type == "transformer"

    def ranking(self, setting: Setting) -> list[tuple[str, float]]:
        """Each quantizer group of `setting`'s trial reverted alone, by the tail margin it reaches. The
        cached result keeps each revert's figures, not its margins: the gates are read now (they are not in
        the trial's key)."""
        import json

        trial = self.trials[setting]
        ranked = self.ctx.trials.run(
            f"sensitivity ranking of {setting.describe()}",
            {"ranking_of": setting.to_json(), "split": "search"},
            lambda out: self._make_ranking(trial, out),
        )
        from stages.quantization.judge import tail_margin

        rows = []
        for group in json.loads((ranked.path / RANKING).read_text()):
            verdicts = self.judge.verdicts(group["judged"])
            score = tail_margin(group["judged"], verdicts, self.ctx.params.space.tail)
            rows.append((group["name"], max(score, -1e9)))
        rows.sort(key=lambda r: (-r[1], r[0]))
        self.rankings.append({"of": setting.describe(), "tail_margins": {n: round(m, 4) for n, m in rows}})
        return rows

    def _make_ranking(self, trial: Trial, out: Path) -> dict[str, Any]:
        import json

        from stages.quantization.groups import groups, reverted
        from stages.runtimes.openvino import io as ovio
        from stages.runtimes.openvino.runner import OpenVinoRunner

        p = self.ctx.params
        quantized = self.core.read_model(str(ovio.ir_xml(trial.path / IR)))
        float_model = ovio.model_from_artifact(self.core, self.ctx.path("model"))
        found = groups(quantized, float_model)
        rows: list[dict[str, Any]] = []
        for i, group in enumerate(found):
            self.ctx.progress(i, len(found), f"ranking {group.name}")
            model = reverted(quantized, float_model, group)
            runner = OpenVinoRunner(trial.path / IR, p.inference_precision, p.threads, model=model)
            judged = self.judge.entries(runner, "search", _quiet)
            rows.append({"name": group.name, "type": group.type, "judged": judged})
        (out / RANKING).write_text(json.dumps(rows, sort_keys=True))
        return {"groups": len(rows)}

    def float_latency(self) -> Latency:
        """The float model's engine at the same precision and objective: what INT8 is measured against."""
        from stages.quantization.judge import latency
        from stages.runtimes.openvino import io as ovio
        from stages.runtimes.openvino.runner import OpenVinoRunner

        p = self.ctx.params

        def make(out: Path) -> dict[str, Any]:
            model = ovio.model_from_artifact(self.core, self.ctx.path("model"))
            runner = OpenVinoRunner(self.ctx.path("model"), p.inference_precision, p.threads, model=model)
            return {"latency": latency(runner, self.timing_feeds, p.objective, p.repeats, p.min_seconds).to_json()}

        done = self.ctx.trials.run("float model", {"float": True}, make)
        return Latency(**{k: float(v) for k, v in done.summary["latency"].items()})

    def holdout(self, setting: Setting) -> tuple[Verdict, ...]:
        """The gates on the held-out samples, for the model `setting`'s trial made."""
        from stages.runtimes.openvino.runner import OpenVinoRunner

        trial = self.trials[setting]
        if not self.judge.splits.holdout:
            return ()

        def make(out: Path) -> dict[str, Any]:
            p = self.ctx.params
            runner = OpenVinoRunner(trial.path / IR, precision=p.inference_precision, threads=p.threads)
            return {"judged": self.judge.entries(runner, "holdout", _quiet)}

        done = self.ctx.trials.run(
            f"held-out check of {setting.describe()}", {"setting": setting.to_json(), "split": "holdout"}, make
        )
        return self.judge.verdicts(done.summary["judged"])

    # -- the search ---------------------------------------------------------------------------------------
    def search(self, started: float) -> SearchResult:
        from stages.quantization.patterns import generalize

        p = self.ctx.params
        path = walk(self.trial, self.ranking, p.space, Budget(p.max_trials, p.max_minutes, started), self.transformer)
        base = self.float_latency()
        steps = list(path.steps)
        best = choose([s.scored for s in steps])
        holdout = {"default": self.holdout(DEFAULT)}
        if best is None:
            lines = no_pass_lines([s.scored for s in steps])
            return SearchResult(self, steps, path.stopped, None, None, holdout, base, lines, None)
        chosen = steps[best.index]
        final = chosen
        names = self.trials[chosen.setting].summary["float_op_names"]
        if names:  # the float operations as types and patterns, quantized once more: what ships
            scope = generalize(names, self._quantizable(chosen.setting))
            setting = replace(chosen.setting, float_ops=scope)
            scored = self.trial(setting, "the choice with its float operations as patterns")
            final = Step(setting, scored, "the choice with its float operations as patterns", kept=scored.passed)
            steps.append(final)
            if not scored.passed:
                self.ctx.warn("the choice's float operations written as patterns fail a gate; shipping exact names")
                final = chosen
        if base.faster_than(final.scored.latency):
            self.ctx.warn(
                f"the chosen INT8 engine is slower than the float engine here ({final.scored.latency.ms:.3f} ms "
                f"against {base.ms:.3f} ms): INT8 buys nothing on this CPU for this model"
            )
        holdout["chosen"] = self.holdout(final.setting)
        if not self.judge.splits.holdout:
            self.ctx.warn("no sample of val was held out: the choice is confirmed on nothing it was not chosen by")
        failures = [
            f"the choice (trial {final.scored.index}) fails on the held-out samples: {v.text}"
            for v in holdout["chosen"]
            if not v.passed
        ]
        model = self.trials[final.setting].path / IR
        return SearchResult(self, steps, path.stopped, chosen, final, holdout, base, failures, model)


def _quiet(done: int, total: int, desc: str) -> None:
    return None


def _check_labels(gates: Any, val: Any) -> None:
    """An accuracy gate on data without labels is a recipe error now, not a failed search an hour later."""
    named = set(gates.gates or {}) | {g for per in gates.per_output.values() for g, v in per.items() if v is not None}
    wanted = sorted(g for g in named if g.startswith("accuracy"))
    if wanted and not val.has_labels:
        raise ValueError(f"gates {', '.join(wanted)} need labels, and {val.label} has none")
