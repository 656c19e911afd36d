"""The dataset-kind contract: what the engine knows about a `data:` entry's kind, and nothing more.

A dataset kind is found by its `kind:` name through the `pipeline.data` entry
points (or a recipe's plugins), as stage kinds are. The engine validates the
entry against the kind's `Spec`, and keys every stage that reads the dataset
by the validated spec, the kind's own code (its module's import closure) and
what `fingerprint` adds: digests of the files it reads and the code it calls.
Stages open the reader with `open`; the engine never does. Kind modules must
stay cheap to import (the planner loads them on every run, cached or not):
numpy and image libraries are imported inside the reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pipeline.schema import ModelSpec, Strict
from pipeline.stage import KeyContext

GROUP = "pipeline.data"


class DataSpec(Strict):
    """Base of a kind's spec: `kind:` names the kind; unknown keys are errors. A kind narrows `kind` to a
    `Literal` of its name(s) and adds its fields, each with a description (they feed the README)."""

    kind: str


class DataKind:
    """Base class of every dataset kind. Subclasses set `kind`, `Spec` and `open`, and `fingerprint` when
    the dataset reads files or runs code named in its spec."""

    kind: ClassVar[str] = ""
    Spec: ClassVar[type[DataSpec]] = DataSpec

    def fingerprint(self, spec: Any, keys: KeyContext) -> dict[str, Any]:
        """Key material beyond the spec: a file's digest (`keys.file_digest`) or a code closure
        (`keys.code_digest`), keyed by the spec field that names it, so a rerun can say
        `data.calib: calib.npz changed`. Raise `RecipeValueError((field,), message)` to blame a field."""
        return {}

    def open(self, name: str, spec: Any, base_dir: Path, model: ModelSpec | None) -> Any:
        """The reader stages iterate (`stages.data.Dataset`); relative paths in `spec` start at `base_dir`."""
        raise NotImplementedError
