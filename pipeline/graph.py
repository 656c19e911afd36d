"""The recipe as a networkx DAG: stages are nodes, artifact references are edges."""
from __future__ import annotations

from typing import Iterable

import networkx as nx

from pipeline.errors import PipelineError, RecipeError, did_you_mean
from pipeline.recipe import Recipe


class CycleError(RecipeError):
    def __init__(self, recipe: Recipe, cycle: list[str]):
        self.cycle = cycle
        path = " -> ".join(cycle + [cycle[0]])
        super().__init__(recipe.path, recipe.stages[cycle[0]].line, f"stages.{cycle[0]}", f"cycle: {path}")


def build_graph(recipe: Recipe) -> nx.DiGraph:
    """Nodes in recipe order; an edge parent -> child per input; cycles are rejected."""
    g = nx.DiGraph()
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


def select(g: nx.DiGraph, targets: Iterable[str]) -> nx.DiGraph:
    """The subgraph that builds `targets`: them and their ancestors (all stages if none named)."""
    targets = list(targets)
    if not targets:
        return g
    keep: set[str] = set()
    for t in targets:
        if t not in g:
            raise PipelineError(f"no stage {t!r} in the recipe{did_you_mean(t, list(g))}")
        keep |= nx.ancestors(g, t) | {t}
    return g.subgraph([n for n in g if n in keep]).copy()


def order(g: nx.DiGraph) -> list[str]:
    """A deterministic topological order (ties broken by recipe order)."""
    position = {n: i for i, n in enumerate(g)}
    return list(nx.lexicographical_topological_sort(g, key=lambda n: position[n]))


def to_mermaid(g: nx.DiGraph, recipe: Recipe) -> str:
    lines = ["flowchart LR"]
    for n in g:
        lines.append(f'    {n}["{n}<br/>{recipe.stages[n].kind.kind}"]')
    for u, v, data in g.edges(data=True):
        lines.append(f"    {u} -->|{','.join(data['inputs'])}| {v}")
    return "\n".join(lines)


def to_dot(g: nx.DiGraph, recipe: Recipe) -> str:
    lines = [f'digraph "{recipe.name}" {{', "    rankdir=LR;", "    node [shape=box];"]
    for n in g:
        lines.append(f'    "{n}" [label="{n}\\n{recipe.stages[n].kind.kind}"];')
    for u, v, data in g.edges(data=True):
        lines.append(f'    "{u}" -> "{v}" [label="{",".join(data["inputs"])}"];')
    lines.append("}")
    return "\n".join(lines)
