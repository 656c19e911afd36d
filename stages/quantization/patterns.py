"""The operations a search kept in float, written as NNCF IgnoredScope patterns that carry to the next model.

Exact names tie a result to one export. Patterns do not: an op type every one of
whose operations stayed in float is written as that type; a name whose numbers
are made wild where that helps (`blocks.3/mlp/fc2` -> `blocks\\.\\d+/mlp/fc2`) is
written as that pattern when every operation it matches stayed in float; the rest keep
their exact name (escaped and anchored). The patterns match exactly the chosen
operations in this model (`matches` checks it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from stages.quantization.settings import FloatOps

_NUMBER = re.compile(r"\d+")


def generalize(chosen: Iterable[str], ops: Mapping[str, str]) -> FloatOps:
    """Types and patterns matching exactly `chosen` among `ops` (op name -> type, the quantizable ops)."""
    chosen = set(chosen)
    left = set(chosen)
    by_type: dict[str, set[str]] = {}
    for name, kind in ops.items():
        by_type.setdefault(kind, set()).add(name)
    types = sorted(t for t, names in by_type.items() if len(names) > 1 and names <= chosen)
    for t in types:
        left -= by_type[t]
    patterns: list[str] = []
    for name in sorted(left):
        if name not in left:
            continue
        pattern, matched = _widest(name, chosen, ops)
        patterns.append(pattern)
        left -= matched
    result = FloatOps(types=tuple(types), patterns=tuple(sorted(patterns)))
    if matches(result, ops) != chosen:
        raise ValueError(f"the float-op patterns {result.to_json()} do not match exactly {sorted(chosen)}")
    return result


def matches(scope: FloatOps, ops: Mapping[str, str]) -> set[str]:
    """The operations of `ops` that `scope` keeps in float (as NNCF reads an IgnoredScope)."""
    found = {n for n in scope.names if n in ops}
    found |= {n for n, t in ops.items() if t in scope.types}
    found |= {n for n in ops for p in scope.patterns if re.fullmatch(p, n)}
    return found


def _widest(name: str, chosen: set[str], ops: Mapping[str, str]) -> tuple[str, set[str]]:
    """`name` as an anchored pattern with each number made wild where that catches more chosen operations and
    no other (`blocks.0/mlp/fc2` -> `blocks\\.\\d+/mlp/fc2` when every block's fc2 stayed in float, fc1 did not)."""
    pieces = _NUMBER.split(name)  # text, number, text, number, ..., text
    numbers = _NUMBER.findall(name)
    wild = [False] * len(numbers)

    def pattern() -> str:
        out = re.escape(pieces[0])
        for i, number in enumerate(numbers):
            out += (r"\d+" if wild[i] else number) + re.escape(pieces[i + 1])
        return "^" + out + "$"

    matched = {name}
    for i in range(len(numbers)):
        wild[i] = True
        trying = {n for n in ops if re.fullmatch(pattern(), n)}
        if trying <= chosen and len(trying) > len(matched):
            matched = trying
        else:
            wild[i] = False
    return pattern(), matched
