"""The engine is outside every key: no module of the `pipeline` package enters any kind's code closure, so
moving the engine's own files (as the folders-by-role layout did) leaves every key as it was."""

from __future__ import annotations

from pipeline.cache.hashing import DigestMemo
from pipeline.keys.compute import kind_code
from pipeline.recipe.registry import Registry


def test_no_registered_kind_holds_a_module_of_the_engine_in_its_key() -> None:
    registry = Registry()
    kinds = [registry.get(n) for n in registry.names()] + [registry.datasets.get(n) for n in registry.datasets.names()]
    assert len(kinds) >= 15
    memo = DigestMemo(None)
    for kind in kinds:
        modules = kind_code(kind, memo)["modules"]
        assert modules, kind
        engine = sorted(m for m in modules if m == "pipeline" or m.startswith("pipeline."))
        assert engine == [], f"{kind.kind}: {engine}"
