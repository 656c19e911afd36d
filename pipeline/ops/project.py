"""A recipe opened for a command: the recipe, its stage graph (limited to the stages asked for) and the cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from pipeline.cache import RESERVED, Cache, cache_root
from pipeline.errors import RecipeError
from pipeline.recipe.graph import StageGraph, stage_graph
from pipeline.recipe.load import Recipe, load_recipe
from pipeline.run.plan import Decision, Planner
from pipeline.status import Status

if TYPE_CHECKING:
    from pipeline.remote.store import Remote


@dataclass(frozen=True)
class Project:
    recipe: Recipe
    graph: StageGraph
    cache: Cache

    def plan(self, remote: Remote | None = None, skip_unavailable: bool = False) -> list[Decision]:
        """Every selected stage's decision, in order (the graph's cache and the digest memo kept for next time)."""
        planner = Planner(self.recipe, self.cache, remote=remote, skip_unavailable=skip_unavailable)
        decisions = planner.plan(list(self.graph.order))
        self.graph.remember()
        self.cache.memo.flush()
        if skip_unavailable:
            decisions = [d for d in decisions if d.status != Status.UNAVAILABLE]
        return decisions


def open_project(
    recipe_path: Path, overrides: Iterable[str] = (), cache_dir: str | Path | None = None, stages: Iterable[str] = ()
) -> Project:
    """Load the recipe (with `--set` overrides), refuse a name the cache reserves, open the cache, and
    build the graph of `stages` and what they need (every stage when none is named)."""
    recipe = load_recipe(recipe_path, list(overrides))
    if recipe.name in RESERVED:
        where = ("name",) if recipe.spec.name else ()
        raise RecipeError(
            recipe.path,
            recipe.line(*where) if where else None,
            "name" if where else None,
            f"recipe name {recipe.name!r} is reserved for the cache's own folders"
            + ("" if where else " (set `name:` in the recipe)"),
        )
    cache = Cache(cache_root(str(cache_dir) if cache_dir is not None else None))
    return Project(recipe, stage_graph(recipe, list(stages), cache.graphs), cache)
