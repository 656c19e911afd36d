"""The recipe as a networkx DAG: stages are nodes, artifact references are edges.

networkx builds and checks the DAG (cycles, the ancestors of a target, a
deterministic order, Mermaid and DOT). The planner and executor need only what
it concludes: the stages to run, in order, and each one's parents (`StageGraph`).
Importing networkx costs about 0.1 s, a third of a fully cached run, so that
conclusion is remembered per recipe *structure* (stage names, references,
targets): a rerun whose structure is unchanged, the common case, reuses it
without importing networkx. The remembered order is only a hint, checked
against the recipe before use.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from pipeline.errors import RecipeError, UsageError, did_you_mean
from pipeline.recipe.load import Recipe

if TYPE_CHECKING:
    import networkx as nx


class CycleError(RecipeError):
    def __init__(self, recipe: Recipe, cycle: list[str]):
        self.cycle = cycle
        path = " -> ".join(cycle + [cycle[0]])
        super().__init__(recipe.path, recipe.stages[cycle[0]].line, f"stages.{cycle[0]}", f"cycle: {path}")


@dataclass(frozen=True)
class StageGraph:
    """The selected stages in a deterministic topological order, and each stage's parents."""

    order: tuple[str, ...]
    parents: Mapping[str, tuple[str, ...]]
    memo: Path | None = None  # where to remember `order`; None when it came from there

    def remember(self) -> None:
        """Write the memo; called once the recipe is known good (planned), so that a recipe error
        still writes nothing."""
        if self.memo is not None:
            _write_order(self.memo, self.order)


def parents_of(recipe: Recipe, name: str) -> tuple[str, ...]:
    """The stages whose outputs `name` reads, each once, in input order."""
    return tuple(dict.fromkeys(ref.target for ref in recipe.stages[name].inputs.values() if ref.kind == "stage"))


def stage_graph(recipe: Recipe, targets: Iterable[str] = (), memo_dir: Path | None = None) -> StageGraph:
    """The stages that build `targets` (all if none), ordered; remembered in `memo_dir` by structure
    (see `StageGraph.remember`)."""
    targets = sorted(set(recipe.stage_names(list(targets))))  # a matrix stage names all its variants
    for t in targets:
        if t not in recipe.stages:
            known = list(recipe.stages) + list(recipe.matrices)
            raise UsageError(f"no stage {t!r} in the recipe{did_you_mean(t, known)}")
    memo = memo_dir / f"graph-{_structure_digest(recipe, targets)}.json" if memo_dir else None
    remembered = _read_order(memo)
    if remembered is not None and _is_valid_order(recipe, remembered, targets):
        return StageGraph(remembered, {n: parents_of(recipe, n) for n in remembered})
    order = tuple(order_of(select(build_graph(recipe), targets)))
    return StageGraph(order, {n: parents_of(recipe, n) for n in order}, memo)


# -- networkx -------------------------------------------------------------------
def build_graph(recipe: Recipe) -> "nx.DiGraph":
    """Nodes in recipe order; an edge parent -> child per input; cycles are rejected."""
    import networkx as nx

    g: nx.DiGraph[str] = nx.DiGraph()
    for name in recipe.stages:
        g.add_node(name)
    for name, node in recipe.stages.items():
        for input_name, ref in node.inputs.items():
            if ref.kind == "stage":
                if g.has_edge(ref.target, name):
                    g.edges[ref.target, name]["inputs"].append(input_name)
                else:
                    g.add_edge(ref.target, name, inputs=[input_name])
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return g
    raise CycleError(recipe, [u for u, _ in cycle])


def select(g: "nx.DiGraph", targets: Iterable[str]) -> "nx.DiGraph":
    """The subgraph that builds `targets` (stages of `g`, checked by `stage_graph`): them and their
    ancestors (all stages if none named)."""
    import networkx as nx

    targets = list(targets)
    if not targets:
        return g
    keep: set[str] = set()
    for t in targets:
        keep |= nx.ancestors(g, t) | {t}
    return g.subgraph([n for n in g if n in keep]).copy()


def order_of(g: "nx.DiGraph") -> list[str]:
    """A deterministic topological order (ties broken by recipe order)."""
    import networkx as nx

    position = {n: i for i, n in enumerate(g)}
    return list(nx.lexicographical_topological_sort(g, key=lambda n: position[n]))


def to_mermaid(g: "nx.DiGraph", recipe: Recipe) -> str:
    lines = ["flowchart LR"]
    for n in g:
        lines.append(f'    {n}["{n}<br/>{recipe.stages[n].kind.kind}"]')
    for u, v, data in g.edges(data=True):
        lines.append(f"    {u} -->|{','.join(data['inputs'])}| {v}")
    return "\n".join(lines)


def to_dot(g: "nx.DiGraph", recipe: Recipe) -> str:
    lines = [f'digraph "{recipe.name}" {{', "    rankdir=LR;", "    node [shape=box];"]
    for n in g:
        lines.append(f'    "{n}" [label="{n}\\n{recipe.stages[n].kind.kind}"];')
    for u, v, data in g.edges(data=True):
        lines.append(f'    "{u}" -> "{v}" [label="{",".join(data["inputs"])}"];')
    lines.append("}")
    return "\n".join(lines)


# -- the remembered order -------------------------------------------------------
def _structure_digest(recipe: Recipe, targets: list[str]) -> str:
    """Everything the order depends on: stage names in recipe order, their stage references, the
    targets, and this module's source (a change to how the order is made invalidates it)."""
    structure = [
        [name, [[i, r.target] for i, r in node.inputs.items() if r.kind == "stage"]]
        for name, node in recipe.stages.items()
    ]
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(json.dumps([structure, targets]).encode())
    return h.hexdigest()[:32]


def _is_valid_order(recipe: Recipe, order: tuple[str, ...], targets: list[str]) -> bool:
    """Use a remembered order only if it still selects exactly what networkx would (all stages, or the
    targets and their ancestors: every other stage in it is a parent of one in it) in a topological
    order (distinct recipe stages, each after its parents). A damaged memo is a miss."""
    seen: set[str] = set()
    parents_seen: set[str] = set()
    for name in order:
        if name not in recipe.stages or name in seen:
            return False
        parents = parents_of(recipe, name)
        if any(p not in seen for p in parents):
            return False
        seen.add(name)
        parents_seen.update(parents)
    if targets:
        return set(targets) <= seen and seen <= set(targets) | parents_seen
    return len(seen) == len(recipe.stages)


def _read_order(path: Path | None) -> tuple[str, ...] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, list) and all(isinstance(n, str) for n in data):
        return tuple(data)
    return None


def _write_order(path: Path, order: tuple[str, ...]) -> None:
    """Atomically; a memo that cannot be written costs speed next time."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(list(order)), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
