"""config.json against OVMS's own JSON schema (`config.schema.json`, a copy of the server's MODELS_CONFIG_SCHEMA).

OVMS validates the whole file before it loads any model and refuses it on the first violation (an unknown key
anywhere it forbids one, a wrong type, a malformed version policy), so a package is checked against the same
schema before it is written. The first error is reported as one line with its JSON path
(`config.json: model_config_list[0].config.nireq: 'x' is not of type 'integer'`). jsonschema is imported
inside the functions.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Iterable

from pipeline.errors import one_line

SCHEMA_PATH = Path(__file__).with_name("config.schema.json")
# What the schema mirrors, for reports (kept in the schema's $id).
SOURCE = "openvinotoolkit/model_server v2026.3 src/schema.cpp"


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_problem(config: Any, where: str = "config.json") -> str | None:
    """The first way `config` breaks OVMS's schema, as one line naming `where` and the JSON path; None if none."""
    from jsonschema.exceptions import best_match, by_relevance

    errors = list(_validator().iter_errors(config))
    if not errors:
        return None
    # An unexpected key says more than the `maxProperties` that the same key also breaks.
    first = best_match(errors, key=by_relevance(strong=frozenset({"additionalProperties"})))
    message = _message(first)
    more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{where}: {json_path(first.absolute_path) or '(top level)'}: {message}{more}"


def json_path(parts: Iterable[Any]) -> str:
    """["model_config_list", 0, "config", "nireq"] -> "model_config_list[0].config.nireq"."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(error: Any) -> str:
    """jsonschema's message, with the forms a oneOf allows named instead of "is not valid under any of the given
    schemas" (the version policy, a shape or layout), and the instance shortened to keep one line."""
    if error.validator in ("oneOf", "anyOf"):
        forms = [_form(alt) for alt in error.validator_value]
        return f"{_short(error.instance)} is none of the forms OVMS accepts ({' | '.join(forms)})"
    return one_line(error.message, 300)


def _form(schema: dict[str, Any]) -> str:
    if "required" in schema and len(schema["required"]) == 1 and "type" not in schema:
        return "{" + f'"{schema["required"][0]}": ...' + "}"
    kind = schema.get("type", "any")
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"an object of {schema['additionalProperties'].get('type', 'any')}s"
    return f"a {kind}" if isinstance(kind, str) else " or ".join(kind)


def _short(instance: Any, limit: int = 80) -> str:
    text = json.dumps(instance, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."
