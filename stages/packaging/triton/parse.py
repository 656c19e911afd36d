"""L0: a config.pbtxt read as Triton reads it, into `inference.ModelConfig` with protobuf's text format.

This is what Model Navigator checks and nothing more: an unknown field, an enum value the proto lacks, a
value of the wrong type or out of range, a singular field given twice. Every later check reads the parsed
message, so a config that does not parse gets this one problem and no other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stages.packaging.triton import proto


@dataclass
class Problems:
    """One-line problems about one file, each `<where>: <field>: <what>`, in the order found."""

    where: str  # "digits_fp32/config.pbtxt"
    lines: list[str]

    def add(self, field: str, what: str) -> None:
        line = f"{self.where}: {field}: {what}" if field else f"{self.where}: {what}"
        if line not in self.lines:
            self.lines.append(line)


def parse_config(text: str, where: str) -> tuple[Any | None, list[str]]:
    """The ModelConfig `text` holds, or None and its one problem: `<where>: line L, column C: <protobuf's
    message>` (the quoted source line protobuf repeats is left out: the position names it)."""
    tf = proto.text_format()
    config = proto.new_config()
    try:
        tf.Parse(text, config)
    except tf.ParseError as exc:
        return None, [f"{where}: {_parse_error(exc, text)}"]
    return config, []


def _parse_error(exc: Any, text: str) -> str:
    message = str(exc)
    line, column = exc.GetLine(), exc.GetColumn()
    head = f"{line}:{column} : "
    if message.startswith(head):
        message = message[len(head) :]
    source = text.splitlines()[line - 1] if line and 0 < line <= len(text.splitlines()) else None
    if source is not None and message.startswith(f"'{source}': "):
        message = message[len(source) + 4 :]
    where = f"line {line}, column {column}: " if line else ""
    return where + " ".join(message.split()).rstrip(".")
