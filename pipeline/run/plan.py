"""Planning: for each stage, cached or not, and why. Runs nothing and builds nothing; what it writes is memo
(digests by stamp, the remote index of what a remote was seen to hold), never a result.

Below a stage that must run, keys are not known until it has run (early
cutoff), so such stages `wait`; the executor asks `decide` again once their
parents have published.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from pipeline.backends.worker import unmet_here
from pipeline.cache import Cache
from pipeline.cache.failures import FailureRecord
from pipeline.cache.records import StageRecord
from pipeline.errors import KindBug, NameNotDefined, RecipeError
from pipeline.keys.compute import KeyContextImpl, compute_key, dataset_digest, dataset_parts, explain
from pipeline.keys.discovered import changes
from pipeline.recipe.load import Recipe, Ref
from pipeline.stage import RecipeValueError, member_of
from pipeline.status import Status

if TYPE_CHECKING:
    from pipeline.remote.store import Remote, RemoteRecord

NEVER_BUILT = "never built"
# The plan's decisions (names kept for importers; the words are `plan --json`'s).
CACHED, PULLED, RUN, WAITS, UNAVAILABLE = Status.CACHED, Status.PULLED, Status.RUN, Status.WAITS, Status.UNAVAILABLE


@dataclass(frozen=True)
class Decision:
    stage: str
    status: Status  # CACHED, PULLED, RUN, WAITS or UNAVAILABLE
    reasons: tuple[str, ...] = ()
    key: str | None = None
    components: dict[str, Any] | None = field(default=None, repr=False)
    record: StageRecord | None = field(default=None, repr=False)  # CACHED or PULLED: what it serves
    previous: StageRecord | None = field(default=None, repr=False)
    remote: RemoteRecord | None = field(default=None, repr=False)  # PULLED: what the remote holds
    failure: FailureRecord | None = field(default=None, repr=False)  # RUN: how this key failed last time
    left_out: tuple[str, ...] = ()  # --skip-unavailable: fan-in members built without (they cannot run here)
    forced: bool = False  # RUN because --force named it: its trials are computed again too

    @property
    def notes(self) -> tuple[str, ...]:
        """What the run says under the stage's row, cached or not."""
        if not self.left_out:
            return ()
        return (f"built without {', '.join(self.left_out)}: cannot run here (--skip-unavailable)",)


class Planner:
    def __init__(
        self,
        recipe: Recipe,
        cache: Cache,
        force: Iterable[str] = (),
        force_all: bool = False,
        remote: Remote | None = None,
        placement: Callable[[str], str | None] | None = None,
        skip_unavailable: bool = False,
    ):
        """`placement`, for a cluster: given a declared hardware target ("H100"), why no node can run it
        (None when one can); it replaces this machine's own check for such stages. `skip_unavailable`: a fan-in
        is decided without its members that cannot run here (`without`)."""
        self.recipe, self.cache, self.remote = recipe, cache, remote
        self.skip_unavailable = skip_unavailable
        self.placement = placement
        self.force, self.force_all = set(force), force_all
        cache.memo.new_plan()
        self.keys = KeyContextImpl(cache.memo, recipe.dir, exclude=(cache.root,))
        self._stages = {name: node.kind() for name, node in recipe.stages.items()}
        self._fingerprints: dict[str, dict[str, Any]] = {}
        self._data: dict[str, dict[str, Any]] = {}

    def prepare(self, order: Iterable[str]) -> None:
        """Compute what each stage derives from its params (code digests, files) before anything runs.

        A factory that cannot be found or a file that does not exist is a recipe
        error, reported with the stage's line, not a failure halfway through a run.
        """
        for name in order:
            node = self.recipe.stages[name]
            try:
                self._fingerprints[name] = self._stages[name].fingerprint(node.params, self.recipe.model, self.keys)
            except RecipeValueError as exc:
                raise RecipeError(
                    self.recipe.path, self.recipe.line(*exc.field) or node.line, ".".join(exc.field), str(exc)
                ) from None
            except (OSError, ImportError, ValueError, NameNotDefined) as exc:
                field = f"stages.{name}.with" if node.kind.Params.model_fields else f"stages.{name}"
                raise RecipeError(
                    self.recipe.path,
                    self.recipe.line("stages", name, "with") or node.line,
                    field,
                    f"{type(exc).__name__}: {exc}",
                ) from None
            except Exception as exc:  # noqa: BLE001 - anything else is the kind's own bug
                raise KindBug(
                    node.kind.kind, node.kind.__module__, inspect.getsourcefile(node.kind), "fingerprint", exc
                ) from exc
            for ref in node.inputs.values():
                if ref.kind == "data":
                    self.data_parts(ref.target)

    def data_parts(self, name: str) -> dict[str, Any]:
        """What a dataset's digest is made of (memoised): its spec, its kind's code and the digests of the
        files or code it names; a missing file or module is a recipe error naming the dataset."""
        if name not in self._data:
            node = self.recipe.datasets[name]
            try:
                self._data[name] = dataset_parts(node, self.keys)
            except RecipeValueError as exc:
                field = ("data", name, *exc.field)
                raise RecipeError(
                    self.recipe.path, self.recipe.line(*field) or node.line, ".".join(field), str(exc)
                ) from None
            except (OSError, ImportError, ValueError, NameNotDefined) as exc:
                raise RecipeError(self.recipe.path, node.line, f"data.{name}", f"{type(exc).__name__}: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - anything else is the kind's own bug
                raise KindBug(
                    node.kind.kind,
                    node.kind.__module__,
                    inspect.getsourcefile(node.kind),
                    "fingerprint",
                    exc,
                    noun="dataset kind",
                ) from exc
        return self._data[name]

    def unmet(self, name: str) -> str | None:
        """Why the stage cannot run where this run runs it: for a declared target on a cluster, whether a node
        of it exists; else this machine's check (the kind's needs, then whether it is of the target)."""
        params = self.recipe.stages[name].params
        target = self._stages[name].target(params)
        if target is not None and self.placement is not None:
            return self.placement(target.accelerator)
        return unmet_here(self._stages[name], params)

    def without(self, name: str, gone: set[str]) -> tuple[str, ...] | None:
        """Under --skip-unavailable, the parents in `gone` (they cannot run here) that `name` is built without:
        each must reach it only as a member of a many-input that keeps another member. None when it cannot
        be (then it cannot run either)."""
        if not self.skip_unavailable:
            return None
        node = self.recipe.stages[name]
        kept: dict[str, int] = {}
        for key, ref in node.inputs.items():
            base = member_of(key)
            if ref.kind == "stage" and ref.target in gone:
                if base is None:
                    return None
                kept.setdefault(base, 0)
            elif base is not None:
                kept[base] = kept.get(base, 0) + 1
        if not all(kept.values()):
            return None
        return tuple(dict.fromkeys(r.target for r in node.inputs.values() if r.kind == "stage" and r.target in gone))

    def decide(self, name: str, known: dict[str, StageRecord], left_out: tuple[str, ...] = ()) -> Decision:
        """Decide one stage, given the records of its already-built parents (and the fan-in members it is built
        without: `without`); a stage that will run says how its key failed before, if it did
        (pipeline/cache/failures.py: failures are never served)."""
        decision = self._decide(name, known, left_out)
        if left_out:
            why = (*decision.reasons, f"without {', '.join(left_out)} (cannot run here)")
            decision = dataclasses.replace(decision, left_out=left_out, reasons=why)
        if decision.status == RUN and decision.key is not None:
            failure = self.cache.failures.get(decision.key)
            if failure is not None:
                since = tuple(r for r in decision.reasons if r != NEVER_BUILT)
                return dataclasses.replace(decision, reasons=(failure.describe(), *since), failure=failure)
        return decision

    def _decide(self, name: str, known: dict[str, StageRecord], left_out: tuple[str, ...] = ()) -> Decision:
        node = self.recipe.stages[name]
        refs = inputs_without(node.inputs, left_out)
        targeted = self._stages[name].target(node.params) is not None
        if not targeted:  # its key would name this machine: no cache has it where it cannot run
            unmet = self.unmet(name)
            if unmet:
                return Decision(name, UNAVAILABLE, (unmet,))
        inputs: dict[str, str] = {}
        datasets: dict[str, dict[str, Any]] = {}
        waiting = []
        for input_name, ref in refs.items():
            if ref.kind == "stage":
                parent = known.get(ref.target)
                if parent is None:
                    waiting.append(ref.target)
                else:
                    inputs[input_name] = parent.outputs[ref.output].digest
            elif ref.kind == "data":
                datasets[input_name] = self.data_parts(ref.target)
                inputs[input_name] = dataset_digest(datasets[input_name])
            else:
                inputs[input_name] = self.cache.memo.path_digest(self.keys.recipe_dir / ref.target)
        if name not in self._fingerprints:
            self.prepare([name])
        if waiting:
            return self._waiting(name, inputs, datasets, sorted(set(waiting)), left_out)
        result = compute_key(
            node, self.recipe, inputs, self._fingerprints[name], self._stages[name], self.keys, datasets
        )
        # A variant (--set) not built before is explained against the recipe's own last build.
        previous = self.cache.records.latest(self.recipe.name, name) or self.cache.records.latest(
            self.recipe.base_name, name
        )
        record = self.cache.records.get(result.key)
        # A declared target is checked only when the stage must be built: served from a cache, it needs no
        # GPU here, and asking a cluster which targets it offers is not free.
        unmet = None
        if targeted and (name in self.force or self.force_all):
            unmet = self.unmet(name)
            if unmet:
                return Decision(name, UNAVAILABLE, (unmet,), result.key, result.components, None, previous)
        if name in self.force or self.force_all:
            return Decision(name, RUN, ("forced",), result.key, result.components, None, previous, forced=True)
        bad: list[str] = []
        if record is not None and record.pulled_unverified and self.remote and self.remote.verifier:
            bad = ["the cached result was pulled without a trusted signature"]
        elif record is not None:
            problems = {out.path: self.cache.objects.problem(out.digest, out.is_dir) for out in record.outputs.values()}
            bad = [f"output {path} {problem} in cache" for path, problem in problems.items() if problem]
            bad = bad or self._reads_changed(record)
            if not bad:
                return Decision(name, CACHED, (), result.key, result.components, record, previous)
        found = self.remote.lookup(result.key) if self.remote is not None else None
        changed = self._reads_changed(found.record) if found is not None else []
        if changed:  # the remote's was built from other files than these
            bad, found = bad or changed, None
        if found is not None:
            why = f"on the remote ({'signed by ' + found.signer if found.verified else 'unverified'})"
            return Decision(name, PULLED, (why,), result.key, result.components, found.record, previous, found)
        unmet = self.unmet(name) if targeted else None
        if unmet:
            return Decision(name, UNAVAILABLE, (unmet,), result.key, result.components, None, previous)
        if bad:
            return Decision(name, RUN, tuple(bad), result.key, result.components, None, previous)
        if previous is None:
            reasons: tuple[str, ...] = (NEVER_BUILT,)
        else:
            labels = {k: self._label(v) for k, v in refs.items()}
            reasons = tuple(explain(previous.components, result.components, labels))
        return Decision(name, RUN, reasons, result.key, result.components, None, previous)

    def _waiting(
        self, name: str, inputs: dict[str, str], datasets: dict[str, Any], parents: list[str], left_out: tuple[str, ...]
    ) -> Decision:
        """A stage whose parents must run first: its key waits on their outputs (early cutoff), unless what
        it holds of its own (params, code, data, files, toolchain) changed since its last build, which
        makes the rerun certain whatever the parents produce."""
        node = self.recipe.stages[name]
        previous = self.cache.records.latest(self.recipe.name, name) or self.cache.records.latest(
            self.recipe.base_name, name
        )
        reasons: list[str] = []
        if previous is not None:
            before = previous.components.get("inputs", {})
            refs = inputs_without(node.inputs, left_out)
            unknown = {k for k, ref in refs.items() if ref.kind == "stage"}
            # every stage input as it was (what the parents will give is not known yet), in the recipe's order
            assumed = {k: before.get(k, "(new input)") if k in unknown else inputs[k] for k in refs}
            result = compute_key(
                node, self.recipe, assumed, self._fingerprints[name], self._stages[name], self.keys, datasets
            )
            labels = {k: self._label(v) for k, v in refs.items()}
            reasons = [r for r in explain(previous.components, result.components, labels) if r != "key changed"]
        if reasons:
            return Decision(name, RUN, (*reasons, f"after {', '.join(parents)}"), previous=previous)
        return Decision(name, WAITS, (f"waits on {', '.join(parents)}; may be cut off",))

    def _reads_changed(self, record: StageRecord) -> list[str]:
        """Why the files `record`'s code opened by path no longer hold here (pipeline/keys/discovered.py)."""
        return changes(record.discovered, self.recipe.dir, self.cache.memo) if record.discovered else []

    def _label(self, ref: Any) -> str:
        """An input as the recipe wrote it: `export.model`, `data.calib`, or a path relative to the recipe."""
        if ref.kind != "path":
            return str(ref)
        return os.path.relpath(ref.target, self.recipe.dir.resolve()).replace(os.sep, "/")

    def plan(self, order: list[str]) -> list[Decision]:
        """Decide every stage in `order` without running anything."""
        self.prepare(order)
        known: dict[str, StageRecord] = {}
        blocked: set[str] = set()
        out = []
        for name in order:
            parents = {r.target for r in self.recipe.stages[name].inputs.values() if r.kind == "stage"}
            left_out = self.without(name, parents & blocked) if parents & blocked else ()
            if left_out is None:
                d = Decision(
                    name, UNAVAILABLE, (f"needs {', '.join(sorted(parents & blocked))}, which cannot run here",)
                )
            else:
                d = self.decide(name, known, left_out)
            if d.status in (CACHED, PULLED) and d.record is not None:
                known[name] = d.record
            if d.status == UNAVAILABLE:
                blocked.add(name)
            out.append(d)
        return out


def inputs_without(inputs: dict[str, Ref], left_out: tuple[str, ...]) -> dict[str, Ref]:
    """A stage's inputs less those read from the stages `left_out` (fan-in members that cannot run here)."""
    if not left_out:
        return inputs
    return {k: ref for k, ref in inputs.items() if not (ref.kind == "stage" and ref.target in left_out)}
