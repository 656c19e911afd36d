from __future__ import annotations

import pytest

from pipeline.errors import RecipeError
from pipeline.recipe.yamlio import line_for, parse_yaml


def test_lines_are_recorded_for_every_path() -> None:
    data, lines = parse_yaml("a:\n  b: 1\n  c:\n    - x\n    - y\n", "f.yaml")
    assert data == {"a": {"b": 1, "c": ["x", "y"]}}
    assert lines[("a", "b")] == 2 and lines[("a", "c", 1)] == 5
    assert line_for(lines, ("a", "c", 1, "deeper")) == 5
    assert line_for(lines, ("zzz",)) == 1


def test_duplicate_keys_are_errors_naming_both_lines() -> None:
    with pytest.raises(RecipeError) as exc:
        parse_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert str(exc.value) == "f.yaml:3: a: duplicate key (first defined on line 1)"


def test_unsafe_tags_are_rejected() -> None:
    with pytest.raises(RecipeError, match="f.yaml:1"):
        parse_yaml("a: !!python/object/apply:os.system ['true']\n", "f.yaml")


def test_malformed_yaml_names_the_line() -> None:
    with pytest.raises(RecipeError, match=r"f.yaml:3: malformed YAML"):
        parse_yaml("a: 1\nb: [1, 2\nc: 3\n", "f.yaml")


def test_anchors_are_shared_values_and_merge_keys_are_refused_by_line() -> None:
    """A matrix's lists are written once and aliased (`runtime: *runtimes`); a merge key (`<<: *base`) is refused in
    one line rather than as PyYAML's constructor error."""
    data, _ = parse_yaml("a: &l [1, 2]\nb: *l\n", "f.yaml")
    assert data == {"a": [1, 2], "b": [1, 2]} and data["a"] is not data["b"]
    with pytest.raises(RecipeError) as exc:
        parse_yaml("base: &b {x: 1}\nstage:\n  <<: *b\n", "f.yaml")
    assert str(exc.value) == "f.yaml:3: stage: YAML merge keys (<<) are not supported"
