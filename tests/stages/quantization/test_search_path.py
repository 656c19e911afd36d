"""quantize.search's path and choice on made-up figures: the default first, one knob at a time, float operations in
the ranking's order with steps back, operations tried back in INT8, budgets, and a noise-aware honest choice."""

from __future__ import annotations

import math
import time

import pytest

from stages.quantization.choice import Latency, Scored, Verdict, choose, margin, no_pass_lines
from stages.quantization.patterns import generalize, matches
from stages.quantization.search import Budget, walk
from stages.quantization.settings import DEFAULT, FloatOps, Setting, Space


def _scored(index: int, cosine: float, ms: float, spread: float = 0.01, float_ops: int = 0) -> Scored:
    passed = cosine >= 0.99
    text = f"embedding: cosine {cosine:.3f} {'>=' if passed else '<'} 0.990"
    verdict = Verdict("cosine_min", "embedding", cosine, 0.99, passed, text)
    return Scored(index, f"t{index}", (verdict,), Latency(ms, ms - spread, ms + spread), float_ops)


def test_margin_is_in_units_of_what_the_gate_allows() -> None:
    assert margin("cosine_min", 0.98, 0.99, False) == pytest.approx(-1.0)  # twice the allowed error
    assert margin("cosine_min", 0.995, 0.99, True) == pytest.approx(0.5)
    assert margin("accuracy_drop_max", 0.03, 0.02, False) == pytest.approx(-0.5)
    assert margin("finite", False, True, False) == -math.inf and margin("finite", True, True, True) == math.inf
    assert margin("cosine_min", None, 0.99, False) == -math.inf


def test_the_choice_is_faster_only_beyond_the_noise_and_ties_go_to_fewer_float_ops() -> None:
    slow_pure = _scored(0, 0.995, 1.00, spread=0.05, float_ops=0)
    fast_noisy = _scored(1, 0.995, 0.97, spread=0.05, float_ops=3)  # overlaps: a tie
    assert choose([slow_pure, fast_noisy]) is slow_pure
    fast_clear = _scored(2, 0.995, 0.80, spread=0.05, float_ops=3)  # beyond the noise
    assert choose([slow_pure, fast_noisy, fast_clear]) is fast_clear
    failing_fastest = _scored(3, 0.90, 0.10)
    assert choose([slow_pure, failing_fastest]) is slow_pure  # a failing trial is never the best


def test_no_passing_trial_means_no_best_and_the_nearest_are_listed() -> None:
    trials = [_scored(0, 0.90, 1.0), _scored(1, 0.985, 1.0), _scored(2, 0.95, 1.0)]
    assert choose(trials) is None
    lines = no_pass_lines(trials, count=2)
    assert lines[0] == "no trial of 3 passes every gate; nearest:"
    assert lines[1].startswith("trial 1 (t1): embedding: cosine 0.985 < 0.990 (margin -0.50)")
    assert lines[2].startswith("trial 2 (t2)")


class FakeModel:
    """Cosine falls with every quantized op: `c` costs most, `a` a little, and keeping `b` in float hurts (an
    interaction the ranking misses); SmoothQuant alpha 0.8 helps a little, preset mixed hurts."""

    cost = {"a": 0.002, "b": -0.001, "c": 0.02}

    def __init__(self) -> None:
        self.asked: list[tuple[Setting, str]] = []

    def evaluate(self, setting: Setting, why: str) -> Scored:
        self.asked.append((setting, why))
        floated = set(setting.float_ops.names)
        cosine = 1.0 - sum(c for op, c in self.cost.items() if op not in floated)
        cosine = min(1.0, cosine + (0.002 if setting.smooth_quant_alpha == 0.8 else 0.0))
        if setting.preset == "mixed":
            cosine -= 0.001
        ms = 1.0 + 0.1 * len(floated)
        return _scored(len(self.asked) - 1, cosine, ms, spread=0.01, float_ops=len(floated))

    def rank(self, setting: Setting) -> list[tuple[str, float]]:
        return [("b", 0.0), ("a", -0.1), ("c", -0.2)]  # a ranking that is wrong about b and a


def test_the_path_starts_at_the_default_and_keeps_in_float_only_what_helps() -> None:
    fake = FakeModel()
    space = Space.model_validate({"preset": ["performance", "mixed"], "smooth_quant_alpha": [0.8], "overflow_fix": []})
    path = walk(fake.evaluate, fake.rank, space, Budget(20, None), transformer=True)
    settings = [s.setting for s in path.steps]
    assert settings[0] == DEFAULT and path.steps[0].kept
    whys = [s.why for s in path.steps]
    assert whys[1] == "one knob: preset mixed" and not path.steps[1].kept  # worse: stepped back
    assert whys[2] == "one knob: SmoothQuant alpha 0.8" and path.steps[2].kept
    floated = [(s.why.split()[1], s.kept) for s in path.steps if s.why.startswith("keep")]
    assert floated == [("b", False), ("a", True), ("c", True)]  # b made it worse: stepped back
    tried_back = [(s.why.split()[1], s.kept) for s in path.steps if s.why.startswith("try")]
    # c back in INT8 is the setting with a alone, tried already: not again; a is not needed once c is float
    assert tried_back == [("a", True)]
    assert len({s.setting for s in path.steps}) == len(path.steps)  # no setting tried twice
    back = [s for s in path.steps if s.why.startswith("back to the default")]
    assert [s.why for s in back] == ["back to the default SmoothQuant alpha (NNCF's)"] and back[0].kept
    best = choose([s.scored for s in path.steps])
    assert best is not None and path.steps[best.index].setting.float_ops.names == ("c",)


def test_budgets_stop_the_path_and_say_why() -> None:
    fake = FakeModel()
    path = walk(fake.evaluate, fake.rank, Space.model_validate({}), Budget(3, None), transformer=True)
    assert len(path.steps) == 3 and path.stopped == "max_trials 3 reached"
    timed_out = walk(fake.evaluate, fake.rank, Space(), Budget(50, 0.001, started=time.monotonic() - 1), True)
    assert len(timed_out.steps) == 1 and timed_out.stopped == "max_minutes 0.001 reached"  # the default always runs


def test_float_ops_become_types_and_patterns_that_match_exactly_the_chosen() -> None:
    ops = {
        "blocks.0/mlp/fc2/MatMul": "MatMul",
        "blocks.1/mlp/fc2/MatMul": "MatMul",
        "blocks.0/mlp/fc1/MatMul": "MatMul",  # stays in INT8: fc2's 2 must not become wild
        "blocks.0/attn/qkv/MatMul": "MatMul",
        "blocks.1/attn/qkv/MatMul": "MatMul",
        "head/Gemm": "MatMul",
        "stem/Conv": "Convolution",
        "down/Conv": "Convolution",
    }
    chosen = {"blocks.0/mlp/fc2/MatMul", "blocks.1/mlp/fc2/MatMul", "stem/Conv", "down/Conv", "head/Gemm"}
    scope = generalize(chosen, ops)
    assert scope.types == ("Convolution",)
    assert "^blocks\\.\\d+/mlp/fc2/MatMul$" in scope.patterns and "^head/Gemm$" in scope.patterns
    assert matches(scope, ops) == chosen
    # the pattern carries over to a deeper next version of the model
    deeper = {**ops, "blocks.2/mlp/fc2/MatMul": "MatMul"}
    assert "blocks.2/mlp/fc2/MatMul" in matches(scope, deeper)
    # a wild pattern that would catch an op that stayed in INT8 is not used
    partial = generalize({"blocks.0/mlp/fc2/MatMul"}, ops)
    assert partial.patterns == ("^blocks\\.0/mlp/fc2/MatMul$",)


def test_a_setting_names_a_trial_by_everything_it_changes() -> None:
    a = Setting(float_ops=FloatOps(names=("x",)))
    assert a.to_json()["float_ops"]["names"] == ["x"] and a.describe() == "1 float op"
    assert Setting(smooth_quant_alpha=-1.0).describe() == "SmoothQuant off"
    assert DEFAULT.describe() == "quantize.nncf default"
    assert FloatOps().with_name("b").with_name("a").names == ("a", "b")
