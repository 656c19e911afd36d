"""YAML loading that keeps line numbers and rejects duplicate keys.

The node tree is composed with the (C, when present) safe loader, then walked
into plain Python values while recording the line of every path, so schema
errors can point at `recipe.yaml:14`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from pipeline.errors import RecipeError

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
LineMap = dict[tuple[Any, ...], int]
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    """Parse `path` into plain values and a map from key path to 1-based line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(path, None, None, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(path, None, None, f"cannot read: {exc}") from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path | str) -> tuple[Any, LineMap]:
    try:
        node = yaml.compose(text, Loader=Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise RecipeError(path, line, None, f"malformed YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise RecipeError(path, None, None, f"malformed YAML: {exc}") from None
    lines: LineMap = {}
    if node is None:
        return None, lines
    constructor = SafeConstructor()

    def walk(n: Any, at: tuple[Any, ...]) -> Any:
        lines[at] = n.start_mark.line + 1
        if isinstance(n, (MappingNode, SequenceNode)) and n.tag not in _PLAIN_TAGS:
            raise RecipeError(path, n.start_mark.line + 1, _dotted(at), f"unsupported YAML tag {n.tag}")
        if isinstance(n, MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                if not isinstance(key_node, ScalarNode):
                    raise RecipeError(
                        path, key_node.start_mark.line + 1, _dotted(at), "mapping keys must be plain scalars"
                    )
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise RecipeError(
                        path, key_node.start_mark.line + 1, _dotted(at), "YAML merge keys (<<) are not supported"
                    )
                key = constructor.construct_object(key_node)
                if key == "<<":
                    raise RecipeError(
                        path, key_node.start_mark.line + 1, _dotted(at), "YAML merge keys (<<) are not supported"
                    )
                if key in out:
                    first = lines.get(at + (key,))
                    raise RecipeError(
                        path,
                        key_node.start_mark.line + 1,
                        _dotted(at + (key,)),
                        f"duplicate key (first defined on line {first})",
                    )
                out[key] = walk(value_node, at + (key,))
            return out
        if isinstance(n, SequenceNode):
            return [walk(item, at + (i,)) for i, item in enumerate(n.value)]
        try:
            return constructor.construct_object(n)
        except yaml.YAMLError as exc:
            raise RecipeError(path, n.start_mark.line + 1, _dotted(at), f"bad value: {exc}") from None

    return walk(node, ()), lines


def _dotted(at: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in at) or "<top>"


def line_for(lines: LineMap, loc: tuple[Any, ...]) -> int | None:
    """The line of the longest prefix of `loc` that the file defines."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None
