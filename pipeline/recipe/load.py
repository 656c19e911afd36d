"""Recipe loading: YAML -> validated specs -> stages with resolved references.

Every failure is a `RecipeError` naming the file, the line and the field.
Nothing here runs a stage or touches the cache.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, ValidationError

from pipeline.cache.hashing import canonical_json, sha256_bytes
from pipeline.datakind import DataKind, DataSpec
from pipeline.errors import PipelineError, RecipeError, did_you_mean
from pipeline.recipe import matrix
from pipeline.recipe.registry import Registry
from pipeline.recipe.yamlio import LineMap, line_for, load_yaml
from pipeline.schema import NAME_RE, ModelSpec, RecipeSpec
from pipeline.stage import Stage, default_output, member_input, member_of

_PATHISH = re.compile(r"[/\\]|\.[A-Za-z0-9]+$")


@dataclass(frozen=True)
class Ref:
    """A resolved input reference: another stage's output, a dataset, or a file/directory."""

    kind: str  # "stage" | "data" | "path"
    target: str  # stage name, data name, or absolute path
    output: str = ""  # for stage refs

    def __str__(self) -> str:
        if self.kind == "stage":
            return f"{self.target}.{self.output}"
        return f"data.{self.target}" if self.kind == "data" else self.target


@dataclass(frozen=True)
class StageNode:
    name: str
    kind: type[Stage]
    params: BaseModel
    inputs: dict[str, Ref]
    line: int | None


@dataclass(frozen=True)
class DataNode:
    """A `data:` entry: its kind and its spec as validated by that kind."""

    name: str
    kind: type[DataKind]
    spec: DataSpec
    line: int | None


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    spec: RecipeSpec
    stages: dict[str, StageNode]
    datasets: dict[str, DataNode]
    lines: LineMap
    overrides: tuple[str, ...] = ()  # --set items applied on top of the file
    matrices: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # matrix stage -> variants

    @property
    def base_name(self) -> str:
        """The recipe's own name: `name` without a --set variant's `@digest`."""
        return self.name.partition("@")[0]

    @property
    def dir(self) -> Path:
        """Absolute: stages run in other working directories."""
        return self.path.parent.resolve()

    @property
    def model(self) -> ModelSpec | None:
        return self.spec.model

    def line(self, *loc: Any) -> int | None:
        return line_for(self.lines, tuple(loc))

    def stage_names(self, names: Sequence[str]) -> list[str]:
        """Stage names as a command line gives them: a matrix stage's name stands for all its variants."""
        return list(dict.fromkeys(v for n in names for v in self.matrices.get(n, (n,))))


def load_recipe(path: Path | str, overrides: Sequence[str] = (), registry: Registry | None = None) -> Recipe:
    """Load, validate and resolve a recipe; raise RecipeError on the first problem."""
    path = Path(path)
    raw, lines = load_yaml(path)
    if not isinstance(raw, dict):
        raise RecipeError(path, 1, None, "expected a mapping with a `stages:` key")
    # `--set stages.build@fp16.with.x=1` sets one variant: applied once the matrices are expanded.
    on_variants = [item for item in overrides if _names_variant(item)]
    for item in overrides:
        if item not in on_variants:
            _apply_override(raw, item, path)
    overridden = [tuple(item.partition("=")[0].split(".")) for item in overrides]
    for section in ("stages", "data"):
        for name in raw.get(section) or {} if isinstance(raw.get(section), dict) else {}:
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise RecipeError(
                    path,
                    line_for(lines, (section, name)),
                    f"{section}.{name}",
                    "names must match [A-Za-z0-9_-]+ (they become paths)",
                )
    matrices: dict[str, list[matrix.Variant]] = {}
    if "stages" in raw:
        raw["stages"], matrices = matrix.expand(raw["stages"], lines, path)
    for item in on_variants:
        _apply_override(raw, item, path)
    try:
        spec = RecipeSpec.model_validate(raw)
    except ValidationError as exc:
        raise _recipe_error(path, lines, (), exc, raw, overridden) from None
    registry = registry or Registry()
    if spec.plugins:
        registry.load_plugins(spec.plugins, path.parent, path, line_for(lines, ("plugins",)))
    datasets = {name: _data_node(path, lines, spec, name, registry, overridden, raw) for name in spec.data}
    stages = {name: _stage_node(path, lines, spec, name, registry, overridden, raw) for name in spec.stages}
    _inherit_targets(path, stages)
    return Recipe(
        path=path,
        name=_variant_name(spec.name or path.stem, overrides),
        spec=spec,
        stages=stages,
        datasets=datasets,
        lines=lines,
        overrides=tuple(overrides),
        matrices={name: tuple(v.name for v in variants) for name, variants in matrices.items()},
    )


def _names_variant(item: str) -> bool:
    """Whether a --set item addresses one variant of a matrix stage (`stages.build@fp16.with.x=1`)."""
    parts = item.partition("=")[0].split(".")
    return len(parts) > 1 and parts[0] == "stages" and matrix.SEP in parts[1]


def _inherit_targets(path: Path, stages: dict[str, StageNode]) -> None:
    """A stage that declares no hardware target and reads results built for one (a check of a TensorRT
    engine) takes that target when its kind inherits one (`Stage.with_target`): it is keyed by it and runs
    on a node of it, like the build."""
    changed = True
    while changed:  # a chain of such stages takes the target down the chain
        changed = False
        for name, node in stages.items():
            kind = node.kind()
            if kind.target(node.params) is not None:
                continue
            found = {}
            for ref in node.inputs.values():
                producer = stages[ref.target] if ref.kind == "stage" else None
                target = producer.kind().target(producer.params) if producer is not None else None
                if target is not None:
                    found[target.accelerator] = target
            if not found:
                continue
            params = kind.with_target(node.params, next(iter(found.values())))
            if params is None:  # the kind takes no target from its inputs (a package of engines for many GPUs)
                continue
            if len(found) > 1:
                raise RecipeError(
                    path, node.line, f"stages.{name}", f"reads results for {', '.join(sorted(found))}: set its target"
                )
            stages[name] = dataclasses.replace(node, params=params)
            changed = True


def _variant_name(name: str, overrides: Sequence[str]) -> str:
    """A run with --set builds a variant of the recipe: its views and latest refs live under
    `<name>@<digest of the overrides>`, so a smoke build never replaces the recipe's own outputs."""
    if not overrides:
        return name
    final = dict(item.partition("=")[::2] for item in overrides)  # a later --set of the same key wins
    return f"{name}@{sha256_bytes(canonical_json(sorted(final.items())).encode())[:8]}"


def _data_node(
    path: Path,
    lines: LineMap,
    spec: RecipeSpec,
    name: str,
    registry: Registry,
    overridden: Sequence[tuple[str, ...]],
    raw: dict[str, Any],
) -> DataNode:
    entry = spec.data[name]
    at = ("data", name)
    kind_name = entry.get("kind")
    if not isinstance(kind_name, str):
        what = "required key missing" if kind_name is None else f"expected a dataset kind name, got {kind_name!r}"
        loc = at if kind_name is None else at + ("kind",)
        raise RecipeError(path, line_for(lines, loc), ".".join(map(str, at + ("kind",))), what)
    try:
        kind = registry.datasets.get(kind_name)
    except PipelineError:
        kinds = registry.datasets.names()
        raise RecipeError(
            path,
            line_for(lines, at + ("kind",)),
            f"data.{name}.kind",
            f"unknown kind {kind_name!r}{did_you_mean(kind_name, kinds)} (kinds: {', '.join(kinds)})",
        ) from None
    try:
        validated = kind.Spec.model_validate(entry)
    except ValidationError as exc:
        raise _recipe_error(path, lines, at, exc, raw, overridden) from None
    return DataNode(name=name, kind=kind, spec=validated, line=line_for(lines, at))


def _stage_node(
    path: Path,
    lines: LineMap,
    spec: RecipeSpec,
    name: str,
    registry: Registry,
    overridden: Sequence[tuple[str, ...]],
    raw: dict[str, Any],
) -> StageNode:
    stage = spec.stages[name]
    at = ("stages", name)
    try:
        kind = registry.get(stage.uses)
    except PipelineError as exc:
        raise RecipeError(path, line_for(lines, at + ("uses",)), f"stages.{name}.uses", str(exc)) from None
    try:
        params = kind.Params.model_validate(stage.with_)
    except ValidationError as exc:
        raise _recipe_error(path, lines, at + ("with",), exc, raw, overridden) from None
    if kind.uses_model() and spec.model is None:
        raise RecipeError(
            path, line_for(lines, at), f"stages.{name}", f"kind {kind.kind} needs the recipe's `model:` section"
        )
    refs = stage.references()
    for input_name in refs:
        if input_name not in kind.inputs:
            loc = at + (("from",) if stage.from_ is not None and input_name == "model" else ("inputs", input_name))
            known = ", ".join(kind.inputs) or "none"
            raise RecipeError(
                path,
                line_for(lines, loc),
                ".".join(map(str, loc)),
                f"kind {kind.kind} has no input {input_name!r} (inputs: {known})",
            )
    for input_name, declared in kind.inputs.items():
        if input_name not in refs and not declared.optional:
            raise RecipeError(
                path, line_for(lines, at), f"stages.{name}.inputs", f"kind {kind.kind} needs input {input_name!r}"
            )
    inputs: dict[str, Ref] = {}
    for input_name, ref in refs.items():
        loc = at + (("from",) if stage.from_ is not None and input_name == "model" else ("inputs", input_name))
        declared = kind.inputs[input_name]
        if not declared.many:
            if isinstance(ref, list):
                raise RecipeError(
                    path,
                    line_for(lines, loc),
                    ".".join(map(str, loc)),
                    f"input {input_name!r} of {kind.kind} takes one artifact, not a list"
                    + (" (a fan-in, STAGE@*, is for inputs that take many)" if len(ref) > 1 else ""),
                )
            inputs[input_name] = _resolve(path, lines, spec, registry, loc, ref, declared.kind)
            continue
        members = ref if isinstance(ref, list) else [ref]
        if not members:
            raise RecipeError(path, line_for(lines, loc), ".".join(map(str, loc)), "empty list: nothing to read")
        for i, member in enumerate(members):
            where = loc + (i,) if isinstance(ref, list) else loc
            key = member_input(input_name, member)
            if key in inputs:
                raise RecipeError(path, line_for(lines, where), ".".join(map(str, where)), f"{member!r} listed twice")
            inputs[key] = _resolve(path, lines, spec, registry, where, member, declared.kind)
    labels: dict[str, list[str]] = {n: [] for n, declared in kind.inputs.items() if declared.many}
    for key in inputs:
        base = member_of(key)
        if base is not None:
            labels[base].append(key[len(base) + 1 : -1])
    problem = kind().members_problem(params, labels) if labels else None
    if problem is not None:
        loc = at + ("with", *problem[0])
        raise RecipeError(path, line_for(lines, loc), ".".join(map(str, loc)), problem[1])
    return StageNode(name=name, kind=kind, params=params, inputs=inputs, line=line_for(lines, at))


def _resolve(
    path: Path, lines: LineMap, spec: RecipeSpec, registry: Registry, loc: tuple[Any, ...], ref: str, expected: str
) -> Ref:
    field, line = ".".join(map(str, loc)), line_for(lines, loc)
    if ref.startswith("data."):
        data_name = ref[len("data.") :]
        if data_name not in spec.data:
            raise RecipeError(path, line, field, f"no dataset {data_name!r}{did_you_mean(data_name, list(spec.data))}")
        resolved = Ref("data", data_name)
    else:
        head, _, output = ref.partition(".")
        kind = registry.get(spec.stages[head].uses) if head in spec.stages else None
        output = output or (default_output(kind) if kind else "")
        is_file = (path.parent / ref).exists()
        if kind is not None and output in kind.outputs:
            if is_file:  # never guess: a folder someone made must not silently rewire the graph
                raise RecipeError(
                    path,
                    line,
                    field,
                    f"{ref!r} names both stage {head!r} and a path next to the recipe; "
                    f"write './{ref}' for the path (or rename one)",
                )
            resolved = Ref("stage", head, output)
        elif kind is not None and not is_file:
            raise RecipeError(
                path,
                line,
                field,
                f"stage {head!r} ({kind.kind}) has no output {output!r} (outputs: {', '.join(kind.outputs)})",
            )
        elif _PATHISH.search(ref) or is_file:
            target = (path.parent / ref).resolve()
            if not target.exists():
                raise RecipeError(path, line, field, f"missing file {ref!r} (looked for {target})")
            resolved = Ref("path", str(target))
        else:
            raise RecipeError(path, line, field, f"unknown stage {ref!r}{did_you_mean(ref, list(spec.stages))}")
    if (resolved.kind == "data") != (expected == "data"):
        want = "a dataset (data.NAME)" if expected == "data" else "an artifact (a stage or a path)"
        raise RecipeError(path, line, field, f"expected {want}, got {ref!r}")
    return resolved


def _apply_override(raw: dict[str, Any], item: str, path: Path) -> None:
    """Apply one `--set a.b.c=VALUE` (VALUE parsed as YAML) to the raw recipe."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key:
        raise RecipeError(path, None, "--set", f"expected KEY=VALUE, got {item!r}")
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict):
            raise RecipeError(path, None, "--set", f"{'.'.join(parts[:i])} is not a mapping")
        if part not in node:
            if i == 0 or parts[0] == "stages" and i == 1:
                raise RecipeError(path, None, "--set", f"{key}: no {'.'.join(parts[: i + 1])} in the recipe")
            node[part] = {}
        node = node[part]
    if not isinstance(node, dict):
        raise RecipeError(path, None, "--set", f"{'.'.join(parts[:-1])} is not a mapping")
    try:
        node[parts[-1]] = yaml.safe_load(value) if value else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(path, None, f"--set {key}", f"bad YAML value {value!r}: {problem}") from None


def _recipe_error(
    path: Path,
    lines: LineMap,
    prefix: tuple[Any, ...],
    exc: ValidationError,
    raw: Any = None,
    overridden: Sequence[tuple[str, ...]] = (),
) -> RecipeError:
    """One line naming the file, line and field; a value that came from `--set` is blamed on it."""
    err = exc.errors()[0]
    loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
    loc = tuple("with" if p == "with_" else "from" if p == "from_" else p for p in loc)
    if raw is not None:
        loc = _file_loc(raw, loc)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key missing"
    value = err.get("input")
    if err["type"] not in ("missing", "extra_forbidden", "recipe_value") and not isinstance(value, (dict, list)):
        msg = f"{msg} (got {value!r})"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (+{more} more error{'s' if more > 1 else ''})"
    field = ".".join(str(p) for p in loc) or None
    written = tuple(map(str, loc))
    if len(written) > 1 and written[0] == "stages":  # a --set on a matrix stage reaches each of its variants
        written = (written[0], matrix.base_of(written[1]), *written[2:])
    for key in overridden:
        if tuple(map(str, loc[: len(key)])) == key or written[: len(key)] == key:
            return RecipeError(path, None, f"--set {'.'.join(key)}", f"{field}: {msg}" if len(loc) > len(key) else msg)
    return RecipeError(path, line_for(lines, loc), field, msg)


def _file_loc(raw: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union tags from `loc` so it names keys as written in the file."""
    out, node = [], raw
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part not in node and i < len(loc) - 1:
            continue  # a discriminator tag such as `synthetic`, not a key
        if i and not isinstance(node, (dict, list)):
            break  # below a scalar as written (a model's internal field, such as a surgery op's `arg`)
        out.append(part)
        node = (
            node.get(part)
            if isinstance(node, dict)
            else node[part]
            if isinstance(node, list) and isinstance(part, int) and part < len(node)
            else None
        )
    return tuple(out)
