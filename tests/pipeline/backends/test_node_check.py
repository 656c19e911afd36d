"""What the worker checks before it runs a kind where the machine may differ from the driver's (a cluster
node, `Task.expect`): the kind's code and toolchain must be the key's, and the machine must meet the kind's
needs and be of its declared hardware target. Plus the one progress throttle the pipe and the relay share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.backends.worker import Expected, Task, execute, throttled, unlike_the_key, unmet_here
from pipeline.cache.hashing import DigestMemo
from pipeline.keys.compute import kind_code, toolchain_of
from pipeline.stage import OutputSpec, Params, Stage
from pipeline.status import Status


@dataclass(frozen=True)
class _Gpu:
    accelerator: str
    here: str

    def identity(self) -> dict[str, str]:
        return {"gpu": self.accelerator}

    def mismatch(self) -> str | None:
        return None if self.here == self.accelerator else f"this node has {self.here}, not {self.accelerator}"


class _P(Params):
    gpu: str | None = None
    here: str = "L4"
    lib: str = "1.0"


class Kind(Stage[_P]):
    kind = "check.kind"
    outputs = {"out": OutputSpec("out.txt")}

    def toolchain(self, params: _P | None = None) -> dict[str, str]:
        return {"lib": params.lib if params else "?"}

    def hardware(self, params: _P) -> dict[str, str]:
        return {"machine": "this one"}

    def target(self, params: _P) -> _Gpu | None:
        return _Gpu(params.gpu, params.here) if params.gpu else None

    def run(self, ctx):  # noqa: ANN001, ANN201
        ctx.output("out").write_text("ran")


def _expected(params: _P) -> Expected:
    return Expected(code=kind_code(Kind, DigestMemo(None)), toolchain=toolchain_of(Kind(), params))


def test_the_keys_hardware_part_is_the_targets_identity_else_this_machines() -> None:
    assert toolchain_of(Kind(), _P()) == {"lib": "1.0", "machine": "this one"}
    assert toolchain_of(Kind(), _P(gpu="H100")) == {"lib": "1.0", "gpu": "H100"}


def test_a_machine_with_the_keys_code_toolchain_and_target_may_build_and_others_say_why_not() -> None:
    params = _P(gpu="L4")
    assert unlike_the_key(Kind, params, _expected(params)) is None
    other_lib = unlike_the_key(Kind, _P(gpu="L4", lib="2.0"), _expected(params))
    assert other_lib == "its toolchain differs from the key's (lib 1.0 -> 2.0)"
    other_code = Expected(code={"modules": {"check": "0" * 64}}, toolchain=toolchain_of(Kind(), params))
    assert (unlike_the_key(Kind, params, other_code) or "").startswith("its code for kind check.kind differs")
    elsewhere = _P(gpu="H100", here="L4")
    assert unlike_the_key(Kind, elsewhere, _expected(elsewhere)) == "this node has L4, not H100"
    assert unmet_here(Kind(), elsewhere) == "this node has L4, not H100" and unmet_here(Kind(), _P()) is None


def test_the_worker_refuses_before_the_kind_runs(tmp_path: Path) -> None:
    (tmp_path / "ws" / "out").mkdir(parents=True)
    params = _P(gpu="L4")
    task = Task(
        "s", __name__, "Kind", {"gpu": "L4", "lib": "2.0"}, {}, {"out": ("out.txt", False)}, str(tmp_path / "c"),
        str(tmp_path / "ws"), str(tmp_path), None, str(tmp_path / "log"), expect=_expected(params),
    )  # fmt: skip
    outcome = execute(task, lambda *_: None, capture=False)
    assert outcome.status == Status.FAILED
    assert outcome.error == "this machine cannot build it: its toolchain differs from the key's (lib 1.0 -> 2.0)"
    assert not (tmp_path / "ws" / "out" / "out.txt").exists()


def test_progress_is_passed_on_at_most_once_per_interval_and_always_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[float, float | None, str]] = []
    clock = iter([10.0, 10.05, 10.2, 10.21, 10.22])
    monkeypatch.setattr("pipeline.backends.worker.time.monotonic", lambda: next(clock))
    progress = throttled(lambda *a: sent.append(a), every=0.1)
    for step in (1, 2, 3, 4):
        progress(step, 5, "batch")
    progress(5, 5, "batch")
    assert [s[0] for s in sent] == [1, 3, 5]


def test_an_openvino_error_is_one_line_that_keeps_what_went_wrong() -> None:
    from pipeline.errors import one_line

    located = "Exception from src/core/src/model.cpp:42:\nCheck 'rank == 4' failed at src/x.cpp:7:\nwrong rank 3"
    assert one_line(located) == "wrong rank 3"
    assert (
        one_line("Check 'ok' failed at shape_infer.cpp:12:\nbatch 3 does not divide 8") == "batch 3 does not divide 8"
    )
    assert (
        one_line(RuntimeError("Error(s) in loading:\n  missing key w"))
        == "RuntimeError: Error(s) in loading: missing key w"
    )
